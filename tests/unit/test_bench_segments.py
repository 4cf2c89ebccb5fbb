"""The segments scale bench's own parts: the synthetic user file, its targets and its section of docs/benchmarks.md."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.csv as pa_csv
import pytest

from bench import segments_data as data
from bench import segments_scale
from bench.quiet import Quiet, QuietGate
from bench.report import keep_marked_blocks, marked_blocks, replace_marked_block
from bench.segments_report import (
    end_to_end_seconds,
    evaluate_targets,
    extrapolated_seconds,
    render_section,
    write_section,
)
from bench.segments_runs import BareFits, CliRun, model_sync_invocations
from house_prices import schema
from training.dataset import DataSpec, load_dataset

# --------------------------------------------------------------------------- the synthetic file


def test_the_file_passes_validation_with_the_benchs_mapping_and_every_segment_trains(tmp_path: Path) -> None:
    # Given a 12-segment file written the way the bench writes it
    config = data.FileConfig(segments=12, rows=60, seed=7)
    path = data.ensure_file(config, tmp_path)
    # When validated with the column mapping the bench passes to training.jobs
    spec = DataSpec(
        source=str(path),
        segment_column=data.SEGMENT_COLUMN,
        price_column=data.PRICE_COLUMN,
        columns=dict(data.FEATURE_EXPRESSIONS),
    )
    dataset = load_dataset(spec)
    # Then every row is usable (nothing dropped, nothing moved onto the grid) and each segment is named by the rule
    report = dataset.report
    assert report.rows_read == 12 * 60
    assert [s.city for s in dataset.segments] == [f"Metro_{i:04d}" for i in range(1, 13)]
    assert all(s.rows_usable == 60 and not s.dropped and not s.rounded for s in report.segments)
    assert report.warnings == []


def test_the_file_has_user_column_names_interleaved_segments_and_a_price_level_per_segment(tmp_path: Path) -> None:
    config = data.FileConfig(segments=20, rows=200, seed=3)
    table = pa_csv.read_csv(data.ensure_file(config, tmp_path))
    assert tuple(table.column_names) == data.FILE_COLUMNS
    assert not set(table.column_names) & {name.lower() for name in schema.CSV_COLUMNS}
    segments = np.asarray(table.column(data.SEGMENT_COLUMN).to_pylist())
    # Interleaved, as an export would be: the first rows are not all one segment
    assert len(set(segments[:20])) > 5
    prices = np.asarray(table.column(data.PRICE_COLUMN).to_pylist(), dtype=float)
    medians = [np.median(prices[segments == data.segment_value(i)]) for i in range(config.segments)]
    # Segments differ in level (uniform 0.5-3.0 x), so their models differ
    assert max(medians) / min(medians) > 2


def test_a_configuration_is_written_once_and_rewritten_when_it_changes(tmp_path: Path) -> None:
    config = data.FileConfig(segments=3, rows=10)
    path = data.ensure_file(config, tmp_path)
    first = path.read_bytes()
    path.write_text("tampered but its sidecar still matches\n")
    assert data.ensure_file(config, tmp_path).read_text().startswith("tampered")
    # Another seed is another file; the same configuration regenerated is byte-identical
    other = data.ensure_file(data.FileConfig(segments=3, rows=10, seed=1), tmp_path)
    assert other != path
    path.with_suffix(".json").unlink()
    assert data.ensure_file(config, tmp_path).read_bytes() == first


def test_query_houses_are_valid_api_requests_one_per_segment() -> None:
    houses = data.query_houses(data.FileConfig(segments=50, rows=10))
    assert list(houses) == [data.segment_value(i) for i in range(50)]
    for house in houses.values():
        schema.parse_house(house)  # raises InvalidInput on any out-of-range or off-grid value


# --------------------------------------------------------------------------- marked blocks (bench/report.py)


def test_write_report_keeps_another_benchs_block_and_drops_its_own_stale_text() -> None:
    block = "<!-- segments-scale:begin -->\nscale table\n<!-- segments-scale:end -->\n"
    previous = "# Benchmarks\n\nold suite text\n\n" + block
    generated = "# Benchmarks\n\nnew suite text\n"
    merged = keep_marked_blocks(generated, previous)
    assert merged.startswith("# Benchmarks\n\nnew suite text\n")
    assert "old suite text" not in merged
    assert marked_blocks(merged) == {"segments-scale": marked_blocks(previous)["segments-scale"]}
    # A block the generated text already holds is not duplicated
    assert keep_marked_blocks(merged, previous) == merged


def test_replace_marked_block_replaces_in_place_or_appends_with_the_markers() -> None:
    appended = replace_marked_block("# Benchmarks\n\nsuite\n", "segments-scale", "first")
    assert appended.endswith("<!-- segments-scale:begin -->\nfirst\n<!-- segments-scale:end -->\n")
    around = appended + "\n## after\n"
    replaced = replace_marked_block(around, "segments-scale", "second")
    assert "first" not in replaced
    assert replaced.count("<!-- segments-scale:begin -->") == 1
    assert replaced.startswith("# Benchmarks\n\nsuite\n")
    assert replaced.endswith("second\n<!-- segments-scale:end -->\n\n## after\n")
    assert replace_marked_block("", "x", "body") == "<!-- x:begin -->\nbody\n<!-- x:end -->\n"


# --------------------------------------------------------------------------- targets and the section


def _results(segments: int = 1_000, rows: int = 500, train: float = 150.0) -> dict[str, Any]:
    cli = {
        "command": "python -m training.jobs --data f.csv",
        "wall_seconds": 10.0 + 5.0 + train + 20.0,  # 10 s of start-up and bookkeeping
        "cpu_seconds": 300.0,
        "stages": {"validate": 5.0, "train": train, "publish": 20.0},
        "peak_rss_bytes": 700 * 2**20,
    }
    return {
        "date": "2026-12-07 03:00",
        "cpus": 2,
        "python": "3.11.7",
        "wall_seconds": 600.0,
        "load_average_start": (1.0, 1.5, 2.0),
        "load_average_end": (2.0, 2.5, 3.0),
        "end_to_end": {
            "segments": segments,
            "rows": rows,
            "file": "build/bench/segments/data/f.csv",
            "file_bytes": 20 * 2**20,
            "generate_seconds": 1.0,
            "stack_seconds": 8.0,
            "workers": 2,
            "clients": 4,
            "cli": cli,
            "trained": segments,
            "failed": {},
            "skipped": 0,
            "not_live": [],
            "not_live_reasons": {},
            "promotion": {
                "tail_seconds": 60.0,
                "first_live_after_cli_start": 170.0,
                "first_to_last_live_seconds": 80.0,
                "registry_polls": 40,
                "model_sync": {"count": 0},
            },
            "predictions": {
                "requests": segments,
                "seconds": 25.0,
                "non_200": 0,
                "wrong": 0,
                "latency_ms": {"p50": 50.0, "p90": 80.0, "p99": 120.0},
                "examples": [],
            },
        },
        "overhead": {
            "segments": 200,
            "rows": 500,
            "workers": 2,
            "train_rows_per_segment": 300.0,
            "command": "python -m training.jobs --data g.csv",
            "rounds": [
                {
                    "round": n,
                    "order": ["sharded", "bare", "bare-parallel"],
                    "bare_fit_seconds": 20.0,
                    "bare_cpu_seconds": 19.0,
                    "ceiling_seconds": 10.0,
                    "sharded_wall_seconds": 10.0 * ratio,
                    "sharded_train_seconds": 10.0 * ratio - 1.0,
                    "validate_only_wall_seconds": 1.5,
                    "load_average_start": [0.5 * n, 1.0, 1.0],
                    "load_average_end": [0.5 * n + 1, 1.0, 1.0],
                    "sharded_cpu_seconds": 19.0 * ratio,
                    "worker_segment_seconds": 22.0,
                    "bare_parallel_wall_seconds": 11.0,
                    "ratio": ratio,
                    "ratio_to_parallel": 10.0 * ratio / 11.0,
                    "cpu_ratio": ratio,
                }
                for n, ratio in ((1, 1.2), (2, 1.4), (3, 1.1))
            ],
            "median_ratio": 1.2,
            "median_ratio_to_parallel": 1.09,
            "median_cpu_ratio": 1.2,
        },
        "validation": {
            "segments": 1_000,
            "rows": 1_000_000,
            "file_bytes": 42 * 2**20,
            "generate_seconds": 1.0,
            "ok_segments": 1_000,
            "cli": {**cli, "wall_seconds": 6.0, "stages": {"validate": 4.0}, "peak_rss_bytes": 1100 * 2**20},
        },
    }


def test_end_to_end_counts_validate_to_first_prediction_and_extrapolates_fixed_plus_per_segment() -> None:
    e2e = _results()["end_to_end"]
    # CLI wall (185 s, its stages included) + promotion tail 60 + predictions 25; the stack start is not counted
    assert end_to_end_seconds(e2e) == pytest.approx(185 + 60 + 25)
    # 10,000 segments: the 10 s of CLI start-up once, every other counted stage × 10
    assert extrapolated_seconds(e2e) == pytest.approx(10 + 10 * (5 + 150 + 20 + 60 + 25))


def test_targets_are_judged_only_on_their_own_configuration_and_every_unserved_segment_is_an_error() -> None:
    verdicts = {t["name"]: t["met"] for t in evaluate_targets(_results())}
    assert verdicts == {
        "1,000 segments × 500 rows end to end <= 6 min": True,
        "0 errors end to end": True,
        "training overhead <= 1.25 x (bare fits ÷ workers)": True,
        "validation of 1,000,000 rows, 1,000 segments <= 30 s": True,
        "validation of 1,000,000 rows <= 1 GiB RSS": False,
    }
    # Given a smaller run with one segment never live and one non-200 answer
    small = _results(segments=50, rows=200)
    small["end_to_end"]["not_live"] = ["Metro_0007"]
    small["end_to_end"]["predictions"]["non_200"] = 1
    targets = {t["name"]: t for t in evaluate_targets(small)}
    assert targets["1,000 segments × 500 rows end to end <= 6 min"]["met"] is None
    assert targets["0 errors end to end"]["met"] is False
    assert targets["0 errors end to end"]["measured"].startswith("2 ")


def test_the_section_has_targets_stages_commands_and_load_and_replaces_only_its_block(tmp_path: Path) -> None:
    results = _results(train=400.0)
    results["targets"] = evaluate_targets(results)
    docs = tmp_path / "benchmarks.md"
    docs.write_text("# Benchmarks\n\nthe suite's report\n")
    write_section(docs, results)
    text = docs.read_text()
    assert text.startswith("# Benchmarks\n\nthe suite's report\n\n<!-- segments-scale:begin -->\n")
    section = marked_blocks(text)["segments-scale"]
    assert "| 1,000 segments × 500 rows end to end <= 6 min | **not met** |" in section
    assert "| train (2 workers) | 400.0 | 400.0 ms | 4,000 |" in section
    assert "1.00, 1.50, 2.00 at the start, 2.00, 2.50, 3.00 at the end" in section
    assert "python -m training.jobs --data f.csv" in section
    assert "2026-12-07 03:00" in section
    # A second run replaces the block and leaves the rest alone
    faster = copy.deepcopy(results)
    faster["end_to_end"]["cli"]["stages"]["train"] = 100.0
    write_section(docs, faster)
    again = docs.read_text()
    assert again.count("segments-scale:begin") == 1
    assert "| train (2 workers) | 100.0 |" in again
    assert again.startswith("# Benchmarks\n\nthe suite's report\n")
    assert render_section(faster) in again


def test_the_overhead_table_gives_each_rounds_load_and_the_sharded_wall_the_ratio_is_judged_on() -> None:
    results = _results()
    section = render_section({**results, "targets": evaluate_targets(results)})
    # Round 2: sharded wall 14.0 s (the CLI minus --validate-only), train stage 13.0 s, load 1.0 → 2.0
    assert "| 2 | sharded → bare → bare-parallel | 1.0 → 2.0 | 20.0 | 10.0 | 14.0 | 13.0 | 11.0 | 1.40 |" in section
    # A results file from before the CLI-minus-validate-only wall still renders, on its train stage
    for r in results["overhead"]["rounds"]:
        del r["sharded_wall_seconds"], r["load_average_start"], r["load_average_end"]
    assert "| 2 | sharded → bare → bare-parallel | - | 20.0 | 10.0 | 13.0 | 13.0 |" in render_section(results)
    # Measured again alone (--overhead-only): the header says when, and under what load
    results["overhead"].update(date="2026-12-07 05:36", load_average_start=[3.5, 4, 5], load_average_end=[4, 4, 5])
    assert "measured again on 2026-12-07 05:36 (`--overhead-only`" in render_section(results)
    assert "load 3.50, 4.00, 5.00 at its start, 4.00, 4.00, 5.00 at its end" in render_section(results)


def test_model_sync_times_come_from_the_dispatchers_log_in_order(tmp_path: Path) -> None:
    log = tmp_path / "dispatcher.log"
    lines = [f"x local.dispatcher INFO invocation succeeded (attempt 1, {ms} ms): {{}}" for ms in range(10, 110, 10)]
    log.write_text("\n".join([*lines, "x local.dispatcher ERROR invocation failed (attempt 1)"]) + "\n")
    summary = model_sync_invocations(log)
    assert summary["count"] == 10
    assert summary["mean_ms_by_fifth"] == [15.0, 35.0, 55.0, 75.0, 95.0]
    assert summary["sum_seconds"] == pytest.approx(0.55)
    assert model_sync_invocations(tmp_path / "absent.log") == {"count": 0}


# --------------------------------------------------------------------------- the overhead rounds' quiet gate


class _Machine:
    """A clock, /proc/stat's busy time and the bench's own CPU; ``crowd``: the neighbours' cores, one per gated run."""

    def __init__(self, crowd: list[float]) -> None:
        self.now = self.busy = self.own = 0.0
        self.crowd = crowd

    def advance(self, seconds: float, own_cores: float = 0.0) -> None:
        self.now += seconds
        self.own += own_cores * seconds
        self.busy += (self.crowd[0] + own_cores) * seconds

    def ran(self, seconds: float) -> None:
        """The bench's own run of ``seconds`` on both cores; the next gated run meets the next neighbours."""
        self.advance(seconds, own_cores=2.0)
        if len(self.crowd) > 1:
            self.crowd.pop(0)

    def gate(self, quiet: Quiet, pids: Any) -> QuietGate:
        return QuietGate(quiet, pids, busy=lambda: self.busy, own=lambda _: self.own, clock=lambda: self.now,
                         sleep=self.advance)  # fmt: skip


def test_every_side_of_an_overhead_round_is_gated_and_a_crowded_sharded_run_is_redone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given neighbours that take 1.5 cores during the first sharded run (validate-only + CLI) and 0.1 after
    machine = _Machine([1.5, 0.1])
    cli_walls = iter([1.0, 20.0, 1.0, 11.0])  # validate-only, CLI; the same again on the redone attempt

    def run_cli(argv: list[str], env: Any, log_path: Path) -> CliRun:
        wall = next(cli_walls)
        if "--validate-only" in argv:
            machine.advance(wall, own_cores=1.0)
        else:
            machine.ran(wall)
        report = {"stages": {"train": wall - 1}, "segments": [{"city": "Metro_0001", "outcome": "trained"}]}
        return CliRun(argv, 0, wall, 2 * wall, 0, report, str(log_path))

    def bare(rows: Any) -> BareFits:
        machine.ran(8.0)
        return BareFits(16.0, 16.0)

    def parallel(rows: Any, workers: int) -> float:
        machine.ran(8.5)
        return 8.5

    monkeypatch.setattr(segments_scale, "QuietGate", machine.gate)
    monkeypatch.setattr(segments_scale, "run_cli", run_cli)
    monkeypatch.setattr(segments_scale, "bare_fits", bare)
    monkeypatch.setattr(segments_scale, "bare_fit_wall_parallel", parallel)
    monkeypatch.setattr(segments_scale, "train_rows", lambda work, cities: {c: np.zeros((3, 11)) for c in cities})
    monkeypatch.setattr(segments_scale, "shard_segment_seconds", lambda work: 18.0)
    monkeypatch.setattr(segments_scale.data, "ensure_file", lambda config, directory: tmp_path / "f.csv")
    options = segments_scale.Options(rounds=1, workers=2, work_dir=tmp_path / "work")
    # When one overhead round runs
    overhead = segments_scale.training_overhead(options)
    # Then the crowded sharded pair was redone and the quiet attempt kept: (11 - 1) s against 16 s ÷ 2 workers
    (measured,) = overhead["rounds"]
    assert measured["attempts"] == {"sharded": 2, "bare": 1, "bare-parallel": 1}
    assert measured["outside_cores"]["sharded"] == pytest.approx(0.1)
    assert measured["sharded_wall_seconds"] == pytest.approx(10.0)
    assert measured["ratio"] == pytest.approx(10.0 / 8.0)
    assert (overhead["quiet"]["runs"], overhead["quiet"]["redone"]) == (3, 1)
    # And the report says so: each side's neighbours, the runs made, and how many were redone
    section = render_section({**_results(), "overhead": overhead, "targets": []})
    assert "| 0.10 (2 runs) / 0.10 / 0.10 |" in section
    target = next(t for t in evaluate_targets({"overhead": overhead}) if t["name"].startswith("training overhead"))
    assert "1 of 4 runs redone" in target["measured"]
