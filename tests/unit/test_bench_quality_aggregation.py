"""bench/quality_aggregation.py: its pure parts (the plan's counts, the verdict, the cost estimate), at a tiny scale."""

from __future__ import annotations

import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import quality_aggregation as bench
from bench.processes import REPO_ROOT


def test_a_tiny_run_joins_every_joinable_label_and_reports_each_injected_one(tmp_path: Path) -> None:
    # Given 20 cities, 700 predictions and 200 labels written in the AWS layouts
    plan = bench.generate(tmp_path, bench.Scale(cities=20, predictions=700, labels=200))
    assert (plan["objects"], plan["predictions"], plan["duplicates"], plan["unknown"]) == (140, 700, 2, 2)
    # When the real path aggregates them in process
    real = bench.measure(tmp_path, "real")
    verdict = bench.evaluate(plan, real)
    # Then every joinable label is joined to its intended prediction once; duplicates and unknowns reported
    assert verdict["join_rate"] == 1.0
    assert verdict["never_double_counted"]
    assert verdict["right_prediction"]
    assert (verdict["duplicates_reported"], verdict["unknown_reported"]) == (2, 2)
    assert real["captures"]["captures_counted"] == 700
    # And the time inside the stand-ins is a part of the run's
    assert 0 < real["stand_in_seconds"] <= real["wall_seconds"]
    # And the ceiling reads the same predictions and label rows
    ceiling = bench.measure(tmp_path, "ceiling")
    assert (ceiling["predictions"], ceiling["label_rows"]) == (700, plan["labels"])
    # And the docs block shows both runs, the CPU ratio and the stand-ins' share
    results = bench.assemble(bench.Scale(20, 700, 200), plan, (ceiling, real, ceiling), (1.0, 2.0, 3.0), quick=True)
    block = bench.render(results)
    assert f"| {real['cpu_seconds']} | {real['peak_rss_mib']} |" in block
    assert f"real / ceiling **{results['cpu_ratio']}×** CPU" in block
    assert "Load average during the run: 1.0 / 2.0 / 3.0" in block


def test_the_s3_stand_in_lists_a_prefix_as_s3_does_and_counts_each_call(tmp_path: Path) -> None:
    # Given a bucket whose keys share prefixes that are not folders
    keys = ["a/b/1", "a/b/2", "a/bb/1", "a/c/1", "b/1"]
    for key in keys:
        (tmp_path / key).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / key).write_bytes(key.encode())
    s3 = bench.FileS3(tmp_path, list(reversed(keys)))

    def listed(prefix: str) -> list[str]:
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket="x", Prefix=prefix)
        return [item["Key"] for page in pages for item in page["Contents"]]

    # When prefixes are listed, Then each is a range of keys in key order, a folder or not
    assert listed("a/b/") == ["a/b/1", "a/b/2"]
    assert listed("a/b") == ["a/b/1", "a/b/2", "a/bb/1"]
    assert listed("z") == []
    assert s3.get_object(Bucket="x", Key="a/c/1")["Body"].read() == b"a/c/1"
    assert s3.calls == {"list": 3, "get": 1}


def test_the_stand_in_clock_times_calls_and_passes_results_and_errors_through() -> None:
    # Given a stand-in whose methods are timed
    class StandIn:
        def slow(self, seconds: float) -> str:
            time.sleep(seconds)
            return "done"

        def fails(self) -> None:
            raise KeyError("x")

    clock = bench.StandInClock()
    stand_in = StandIn()
    clock.time_methods(stand_in, ("slow", "fails"))
    # When they are called, Then results and errors are the methods' own and their time is counted
    assert stand_in.slow(0.02) == "done"
    with pytest.raises(KeyError):
        stand_in.fails()
    assert 0.02 <= clock.seconds < 1.0


def test_a_measured_process_reports_its_own_peak_rss_not_its_parents(tmp_path: Path) -> None:
    # Given a parent process holding ~200 MiB more than a fresh interpreter needs
    ballast = b"x" * (200 << 20)
    # When a child process reads its peak RSS
    script = (
        "import resource; from bench.quality_aggregation import peak_rss_mib;"
        "print(peak_rss_mib(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"
    )
    output = subprocess.run(
        [sys.executable, "-c", script], check=True, capture_output=True, text=True, cwd=REPO_ROOT
    ).stdout
    own, inherited = (float(value) for value in output.split())
    # Then it is the child's own (VmHWM), while ru_maxrss carries the parent's peak across fork and exec
    parent = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert own < parent - 150 < inherited
    del ballast


def test_the_cost_estimate_prices_the_counted_calls() -> None:
    cost = bench.aws_cost({"label_transaction": 1_000_000, "house_query": 1_000_000, "s3_get": 1_000_000})
    assert cost["dynamodb_wru"] == 10_000_000
    assert cost["dynamodb_rru"] == 500_000
    assert cost["dynamodb_usd"] == round(10e6 * 0.625e-6 + 0.5e6 * 0.125e-6, 2)
    assert cost["s3_usd"] == 0.4
