"""`python -m ops plan`: the sizing arithmetic (hand-checked), bad input, the figures file, JSON and table output."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest

from ops import plan
from ops.cli import main
from ops.plan import Demand, Figures, PlanError, make_plan

SOURCE = {"source": "test", "date": "2026-12-07"}


def figure(value: float) -> dict[str, Any]:
    return {"value": value, **SOURCE}


def option(key: str, memory_mib: float, cpu_ms: float, extra_row_ms: float = 0.01) -> dict[str, Any]:
    return {
        "key": key,
        "label": f"{key} option",
        "template": f"{key} template",
        "memory_per_model_mib": figure(memory_mib),
        "cpu_ms_per_request": figure(cpu_ms),
        "cpu_ms_per_extra_row": figure(extra_row_ms),
        "load_seconds": figure(0.1),
    }


# Round numbers, so every expectation below can be checked by hand.
DOCUMENT: dict[str, Any] = {
    "planning": {
        "instance_overhead_mib": figure(1024),
        "hours_per_month": figure(730),
        "target_utilisation": figure(0.5),
        "min_instances": figure(2),
    },
    "options": [option("heavy", memory_mib=28, cpu_ms=0.5), option("light", memory_mib=0.5, cpu_ms=0.2)],
    "instance_types": {
        **SOURCE,
        "types": {
            "small": {"vcpus": 2, "memory_gib": 4},  # 3,072 MiB usable
            "big": {"vcpus": 8, "memory_gib": 32},  # 31,744 MiB usable
        },
    },
    "prices": {
        **SOURCE,
        "checked": "test",
        "usd_per_hour": {"here": {"small": 0.1, "big": 0.4}, "elsewhere": {"small": 0.2}},
    },
}


def figures(document: dict[str, Any] | None = None) -> Figures:
    return Figures.parse(document or DOCUMENT)


def sizing(result: plan.Plan, option_key: str, instance_type: str) -> plan.Sizing:
    option_plan = next(o for o in result.options if o.option.key == option_key)
    return next(s for s in option_plan.sizings if s.instance_type == instance_type)


def cheapest(result: plan.Plan, option_key: str) -> plan.Sizing | None:
    return next(o for o in result.options if o.option.key == option_key).cheapest


# --- arithmetic ----------------------------------------------------------------------------------


def test_memory_counts_whole_models_per_instance() -> None:
    # Given 10,000 models of 28 MiB and almost no traffic
    result = make_plan(Demand(models=10_000, rps=1, region="here"), figures())
    # Then small holds floor(3072 / 28) = 109 models, so ceil(10000 / 109) = 92 instances
    small = sizing(result, "heavy", "small")
    assert (small.models_per_instance, small.by_memory, small.instances) == (109, 92, 92)
    assert small.limited_by == "memory"
    # And 92 x $0.1 x 730 h = $6,716.00 a month
    assert small.usd_per_month == 6716.00
    # And big holds floor(31744 / 28) = 1133 models: 9 instances, 9 x 0.4 x 730 = $2,628.00, the cheapest
    big = sizing(result, "heavy", "big")
    assert (big.models_per_instance, big.instances, big.usd_per_month) == (1133, 9, 2628.00)
    assert cheapest(result, "heavy") == big


def test_cpu_is_rps_times_cpu_per_request_over_vcpus_at_the_target_utilisation() -> None:
    # Given 12,000 req/s at 0.5 ms: 6 cores of work; small offers 2 vCPUs x 0.5 = 1 core, big 8 x 0.5 = 4
    result = make_plan(Demand(models=10, rps=12_000, region="here"), figures())
    small, big = sizing(result, "heavy", "small"), sizing(result, "heavy", "big")
    # Then small needs 6 instances and big ceil(6 / 4) = 2, both set by CPU or the floor
    assert (small.by_memory, small.by_cpu, small.instances, small.limited_by) == (1, 6, 6, "cpu")
    assert (big.by_cpu, big.instances, big.limited_by) == (2, 2, "minimum")
    # And a higher target utilisation needs fewer: small at 100 % -> 3
    relaxed = make_plan(Demand(models=10, rps=12_000, region="here", target_utilisation=1.0), figures())
    assert sizing(relaxed, "heavy", "small").instances == 3


def test_rows_per_request_add_cpu_per_extra_row() -> None:
    # Given 101 rows per request: 0.2 ms + 100 x 0.01 ms = 1.2 ms per request for the light option
    result = make_plan(Demand(models=1, rps=5_000, rows_per_request=101, region="here"), figures())
    light = next(o for o in result.options if o.option.key == "light")
    assert light.cpu_ms_per_request == pytest.approx(1.2)
    # Then 5,000 x 1.2 ms = 6 cores: 6 small instances (1 core each at 50 %)
    assert sizing(result, "light", "small").by_cpu == 6
    # And with one row the same load is 1 core: 1 instance by CPU
    one_row = make_plan(Demand(models=1, rps=5_000, region="here"), figures())
    assert sizing(one_row, "light", "small").by_cpu == 1


def test_the_minimum_is_a_floor_and_can_be_lowered() -> None:
    # Given a demand that one instance carries
    result = make_plan(Demand(models=1, rps=0, region="here"), figures())
    # Then the floor (two Availability Zones) sets the count
    assert (sizing(result, "light", "small").instances, sizing(result, "light", "small").limited_by) == (2, "minimum")
    # And --min-instances 1 gives one
    single = make_plan(Demand(models=1, rps=0, region="here", min_instances=1), figures())
    assert sizing(single, "light", "small").instances == 1


def test_float_noise_never_buys_an_instance() -> None:
    # Given figures whose exact answers are whole numbers that floating point misses by 1e-15
    document = copy.deepcopy(DOCUMENT)
    document["options"] = [option("exact", memory_mib=0.07, cpu_ms=0.2)]
    document["instance_types"]["types"] = {"small": {"vcpus": 2, "memory_gib": 8}}  # 7,168 MiB usable
    # When 102,400 models (7168 / 0.07 = 102399.99999999999 in floats) and 21,000 req/s at 70 % on 2 vCPUs
    # (21000 x 0.2 ms / 1.4 = 3.0000000000000004) are planned
    result = make_plan(
        Demand(models=102_400, rps=21_000, region="here", min_instances=1, target_utilisation=0.7), figures(document)
    )
    small = sizing(result, "exact", "small")
    # Then one instance holds the models and three carry the load, not two and four
    assert (small.models_per_instance, small.by_memory, small.by_cpu) == (102_400, 1, 3)


def test_what_cannot_be_done_is_none() -> None:
    # Given models larger than the small instance's usable memory, and a region without a big price
    document = copy.deepcopy(DOCUMENT)
    document["options"] = [option("huge", memory_mib=4096, cpu_ms=0.2)]
    result = make_plan(Demand(models=3, rps=1, region="elsewhere"), figures(document))
    small, big = sizing(result, "huge", "small"), sizing(result, "huge", "big")
    # Then small is impossible (no model fits) and big has a count but no price
    assert (small.models_per_instance, small.by_memory, small.instances, small.usd_per_month) == (0, None, None, None)
    assert (big.models_per_instance, big.instances, big.usd_per_hour, big.usd_per_month) == (7, 2, None, None)
    # And nothing can be priced, so there is no cheapest
    assert cheapest(result, "huge") is None


def test_cheapest_prefers_fewer_instances_on_a_tie() -> None:
    # Given two types at the same monthly cost: 4 x $0.1 = 1 x $0.4 per hour
    document = copy.deepcopy(DOCUMENT)
    document["instance_types"]["types"] = {
        "a-small": {"vcpus": 2, "memory_gib": 4},
        "z-big": {"vcpus": 8, "memory_gib": 32},
    }
    document["prices"]["usd_per_hour"] = {"here": {"a-small": 0.1, "z-big": 0.4}}
    result = make_plan(Demand(models=1, rps=7_000, region="here", min_instances=1), figures(document))
    assert [(s.instance_type, s.instances) for s in next(o for o in result.options).sizings] == [
        ("a-small", 4),
        ("z-big", 1),
    ]
    # Then the single instance wins (fewer things to fail), though the name sorts later
    assert cheapest(result, "heavy").instance_type == "z-big"  # type: ignore[union-attr]


# --- the project's figures -----------------------------------------------------------------------


def test_the_project_figures_load_with_sources_and_cover_every_priced_region() -> None:
    # Given ops/serving_figures.json
    loaded = Figures.load()
    raw = json.loads(plan.FIGURES_FILE.read_text())
    # Then it holds the density bench's measured figures for both options (bench/density.py, make bench)
    by_key = {o.key: o for o in loaded.options}
    assert set(by_key) == {"managed", "dense"}
    assert (by_key["managed"].memory_per_model_mib.value, by_key["managed"].cpu_ms_per_request.value) == (27.7, 0.545)
    assert by_key["managed"].load_seconds.value == 0.229
    assert (by_key["dense"].memory_per_model_mib.value, by_key["dense"].cpu_ms_per_request.value) == (0.402, 0.15)
    # And every figure says where it comes from and when
    for item in raw["options"]:
        for name in ("memory_per_model_mib", "cpu_ms_per_request", "cpu_ms_per_extra_row", "load_seconds"):
            assert item[name]["source"], name
            assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", item[name]["date"]), name
    assert "aws.amazon.com/sagemaker/pricing" in loaded.price_source
    # And us-east-1 plus other regions price every instance type the brief names
    names = {t.name for t in loaded.instance_types}
    assert {"ml.m5.large", "ml.m5.xlarge", "ml.c5.large", "ml.c5.xlarge", "ml.m5.2xlarge"} <= names
    assert "us-east-1" in loaded.prices
    assert len(loaded.prices) >= 3
    for region, prices in loaded.prices.items():
        assert set(prices) == names, region
    assert loaded.prices["us-east-1"]["ml.m5.large"] == 0.115


def test_the_project_figures_reproduce_the_measured_density() -> None:
    # Given an ml.m5.large less 1 GiB (7,168 MiB), as in docs/benchmarks.md's density table
    result = make_plan(Demand(models=10_000, rps=50), Figures.load())
    # Then MMS keeps 7168 / 27.7 = 258 models per instance and the dense container 7168 / 0.402 = 17,830
    assert sizing(result, "managed", "ml.m5.large").models_per_instance == 258
    assert sizing(result, "dense", "ml.m5.large").models_per_instance == 17_830
    # And 10,000 models need 39 instances on the managed image, 1 (2 with the floor) with the dense container
    assert sizing(result, "managed", "ml.m5.large").by_memory == 39
    assert sizing(result, "dense", "ml.m5.large").instances == 2


def test_a_broken_figures_file_is_one_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "figures.json"
    path.write_text(json.dumps({"planning": {}}))
    with pytest.raises(PlanError, match=r"figures\.json is malformed: KeyError"):
        Figures.load(path)
    path.write_text("{not json")
    with pytest.raises(PlanError, match=r"figures\.json is malformed: JSONDecodeError"):
        Figures.load(path)
    with pytest.raises(PlanError, match="cannot read"):
        Figures.load(tmp_path / "missing.json")
    zero = copy.deepcopy(DOCUMENT)
    zero["options"][0]["memory_per_model_mib"]["value"] = 0
    with pytest.raises(PlanError, match="memory_per_model_mib must be > 0"):
        figures(zero)


# --- input ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("demand", "message"),
    [
        (Demand(models=-1, rps=1, region="here"), "--models must be >= 0, got -1"),
        (Demand(models=1, rps=-0.5, region="here"), "--rps must be a finite number >= 0, got -0.5"),
        (Demand(models=1, rps=float("inf"), region="here"), "--rps must be a finite number >= 0, got inf"),
        (Demand(models=1, rps=1, rows_per_request=0, region="here"), "--rows-per-request must be >= 1, got 0"),
        (Demand(models=1, rps=1, min_instances=0, region="here"), "--min-instances must be >= 1, got 0"),
        (Demand(models=1, rps=1, target_utilisation=0, region="here"), r"--target-utilisation must be in \(0, 1\]"),
        (Demand(models=1, rps=1, region="mars-1"), "no prices for region 'mars-1'; known: elsewhere, here"),
    ],
)
def test_bad_input_is_one_line_naming_the_flag(demand: Demand, message: str) -> None:
    with pytest.raises(PlanError, match=message) as raised:
        make_plan(demand, figures())
    assert "\n" not in str(raised.value)


# --- the command ---------------------------------------------------------------------------------


@pytest.fixture
def narrow_pipe(monkeypatch: pytest.MonkeyPatch) -> None:
    """stdout as rich sees a pipe: 80 columns, no colour."""
    monkeypatch.setenv("COLUMNS", "80")
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("where", ["before", "after"])
def test_json_has_demand_assumptions_and_every_option(where: str, capsys: pytest.CaptureFixture[str]) -> None:
    # Given --json before or after the command
    args = ["plan", "--models", "1000", "--rps", "50", "--rows-per-request", "3"]
    code = main(["--json", *args] if where == "before" else [*args, "--json"])
    document = json.loads(capsys.readouterr().out)
    # Then the answer is JSON with the inputs, the assumptions and each option's sizings and sources
    assert code == 0
    assert document["demand"] == {
        "models": 1000,
        "rps": 50.0,
        "rows_per_request": 3,
        "region": "us-east-1",
        "min_instances": 2,
        "target_utilisation": 0.5,
    }
    assert set(document["assumptions"]) == {"instance_overhead_mib", "hours_per_month", "prices"}
    assert [o["option"] for o in document["options"]] == ["managed", "dense"]
    for option_plan in document["options"]:
        assert set(option_plan) == {
            "option",
            "label",
            "template",
            "memory_per_model_mib",
            "cpu_ms_per_request",
            "load_seconds",
            "cheapest",
            "instance_types",
            "sources",
        }
        assert len(option_plan["instance_types"]) == 5
        assert option_plan["cheapest"] in option_plan["instance_types"]
        assert set(option_plan["sources"]["memory_per_model_mib"]) == {"value", "source", "date"}
    # And 3 rows per request cost the managed image 0.545 + 2 x 0.0083 ms
    assert document["options"][0]["cpu_ms_per_request"] == pytest.approx(0.5616)


def test_table_fits_a_pipe_without_cutting_ids(narrow_pipe: None, capsys: pytest.CaptureFixture[str]) -> None:
    # Given the command's table written to a pipe
    assert main(["plan", "--models", "10000", "--rps", "50"]) == 0
    out = capsys.readouterr().out
    # Then every instance type and option appears whole, on table lines that fit 80 columns
    rows = [line for line in out.splitlines() if re.search(r"\bml\.[a-z0-9]+\.[a-z0-9]+\b", line)]
    assert len(rows) == 10 + 2  # five types x two options, plus the cheapest of each
    assert all(len(line) <= 80 for line in rows)
    assert "…" not in out
    for name in ("ml.m5.2xlarge", "ml.c5.xlarge", "managed", "dense"):
        assert name in out
    # And the cheapest per option is the hand-checked one: 9 x $0.461 x 730 h and 2 x $0.102 x 730 h
    summary = out.split("Cheapest per option", 1)[1]
    assert re.search(r"managed\s+ml\.m5\.2xlarge\s+9\s+memory\s+3,028\.77", summary)
    assert re.search(r"dense\s+ml\.c5\.large\s+2\s+minimum\s+148\.92", summary)


def test_table_says_none_where_nothing_fits(
    narrow_pipe: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    document = copy.deepcopy(DOCUMENT)
    document["options"] = [option("huge", memory_mib=4096, cpu_ms=0.2)]
    path = tmp_path / "figures.json"
    path.write_text(json.dumps(document))
    assert main(["plan", "--models", "3", "--rps", "1", "--region", "elsewhere", "--figures", str(path)]) == 0
    out = capsys.readouterr().out
    small = next(line for line in out.splitlines() if line.strip().startswith("small"))
    # vCPU, GiB, models per instance, by memory, by CPU, instances, $/month
    assert small.split() == ["small", "2", "4", "0", "none", "1", "none", "none"]
    summary = out.split("Cheapest per option", 1)[1]
    assert re.search(r"huge\s+none\s+none\s+none\s+none", summary)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--models", "-5", "--rps", "1"], "error: --models must be >= 0, got -5"),
        (["--models", "5", "--rps", "-1"], "error: --rps must be a finite number >= 0, got -1.0"),
        (["--models", "5", "--rps", "1", "--region", "eu-west-9"], "error: no prices for region 'eu-west-9'"),
    ],
)
def test_bad_input_is_one_line_on_stderr_and_exit_1(
    narrow_pipe: None, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["plan", *argv]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip().startswith(message)
    assert len(captured.err.strip().splitlines()) == 1


def test_bad_input_as_json_names_the_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--json", "plan", "--models", "5", "--rps", "1", "--region", "eu-west-9"]) == 1
    error = json.loads(capsys.readouterr().err)
    assert error["error"] == "PlanError"
    assert error["message"].startswith("no prices for region 'eu-west-9'; known: us-east-1")


def test_plan_needs_no_stack_and_calls_no_aws(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given no .local/stack.json, no resource variables, and boto3 unusable
    import boto3

    def no_aws(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("plan must not call AWS")

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(boto3, "client", no_aws)
    monkeypatch.setenv("MODEL_PREFIX", "bad prefix")  # would fail resource resolution
    # Then plan still answers
    assert main(["--json", "plan", "--models", "1", "--rps", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["demand"]["models"] == 1
