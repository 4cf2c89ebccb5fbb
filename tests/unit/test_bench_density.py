"""The density bench's own parts (bench/density*.py), without servers: the MMS configuration the image
would write, the client playing SageMaker's part in the Zipf run, the arithmetic, the verdicts and its
block of docs/benchmarks.md (kept by bench/report.py like the segments block)."""

from __future__ import annotations

import asyncio
import copy
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bench import density, density_report
from bench.density_client import encode
from bench.density_measure import models_in, slope
from bench.density_servers import (
    CONFIG_TEMPLATE,
    VENDOR,
    max_heap_mib,
    mms_config,
    mms_environment,
    patched_toolkit,
)
from bench.density_zipf import SageMakerSide
from bench.quiet import Quiet, QuietGate, parse_busy_seconds
from bench.report import DENSITY_BLOCK, keep_marked_blocks, marked_blocks, replace_marked_block
from bench.wrk_runs import HttpRequest

MIB = 1024 * 1024

# --------------------------------------------------------------------------- MMS as the image starts it


def test_the_heap_is_the_images_formula_for_the_cpus() -> None:
    # _set_mms_configs: ceil((cpus + 2 cpus) x 6 MiB x 1.2) + 128
    assert max_heap_mib(2) == 172
    assert max_heap_mib(4) == 215


def test_the_config_is_the_images_template_after_a_vmargs_line_java_17_accepts(tmp_path: Path) -> None:
    text = mms_config(2, tmp_path / "plugins")
    first, rest = text.split("\n", 1)
    assert first.startswith("vmargs=")
    assert "-Xms172m -Xmx172m -XX:MaxDirectMemorySize=172m" in first
    assert "UseParNewGC" not in first  # Java 8 only: Java 17 refuses to start with it
    assert rest == CONFIG_TEMPLATE.read_text().replace(
        "plugins_path=/tmp/plugins", f"plugins_path={tmp_path / 'plugins'}"
    )
    assert "default_workers_per_model=$$SAGEMAKER_NUM_MODEL_WORKERS$$" in rest
    assert "decode_input_request=false" in rest


def test_the_environment_resolves_every_placeholder_of_the_template() -> None:
    environment = mms_environment(8080, 2)
    placeholders = set(CONFIG_TEMPLATE.read_text().split("$$")[1::2])
    assert placeholders <= environment.keys()
    assert environment["SAGEMAKER_NUM_MODEL_WORKERS"] == "1"
    assert environment["SAGEMAKER_MULTI_MODEL"] == "true"
    assert environment["SAGEMAKER_MMS_DEFAULT_HANDLER"] == "sagemaker_sklearn_container.handler_service"
    assert environment["SAGEMAKER_BIND_TO_PORT"] == "8080"


def test_the_toolkit_overlay_carries_the_images_decoder_patch(tmp_path: Path) -> None:
    site = tmp_path / "site-packages"
    (site / "sagemaker_inference" / "__pycache__").mkdir(parents=True)
    (site / "sagemaker_inference" / "decoder.py").write_text("original")
    (site / "sagemaker_inference" / "encoder.py").write_text("encoder")
    overlay = patched_toolkit(site, tmp_path / "overlay")
    patched = VENDOR / "patches" / "1.4-2-py312" / "sagemaker_inference" / "decoder.py"
    assert (overlay / "sagemaker_inference" / "decoder.py").read_text() == patched.read_text()
    assert (overlay / "sagemaker_inference" / "encoder.py").read_text() == "encoder"
    assert not (overlay / "sagemaker_inference" / "__pycache__").exists()
    assert (site / "sagemaker_inference" / "decoder.py").read_text() == "original"  # the venv is left alone


# --------------------------------------------------------------------------- arithmetic and the client


def test_pss_per_model_is_the_least_squares_slope_and_models_fit_after_the_empty_server() -> None:
    points = [(k, int(29.6 * MIB + 0.4 * MIB * k) + noise) for k, noise in ((1, 0), (10, 9), (20, -9), (40, 0))]
    assert slope(points) == pytest.approx(0.4 * MIB, rel=1e-3)
    assert models_in(7 * 1024 * MIB, 30 * MIB, 0.5 * MIB) == (7 * 1024 - 30) * 2
    assert models_in(7 * 1024 * MIB, 30 * MIB, float("nan")) == 0
    assert models_in(10 * MIB, 30 * MIB, 1.0) == 0


def test_requests_are_encoded_with_their_length() -> None:
    wire = encode(HttpRequest("POST", "/models/a/invoke", {"Content-Type": "text/csv"}, "1,2\n"))
    assert wire == (
        b"POST /models/a/invoke HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/csv\r\nContent-Length: 4\r\n\r\n1,2\n"
    )


def test_a_different_server_leads_each_round() -> None:
    items: list[Any] = ["a", "b", "c"]
    assert [density.rotated(items, r) for r in range(4)] == [
        ["a", "b", "c"],
        ["b", "c", "a"],
        ["c", "a", "b"],
        ["a", "b", "c"],
    ]


# --------------------------------------------------------------------------- the quiet gate


def test_busy_time_is_every_cpu_field_but_idle_and_iowait_with_guest_time_counted_once() -> None:
    # user nice system idle iowait irq softirq steal guest guest_nice (guest is already inside user)
    line = "cpu  100 5 50 1000 20 1 4 10 70 3"
    assert parse_busy_seconds(line, clock_ticks=100) == pytest.approx((100 + 5 + 50 + 1 + 4 + 10) / 100)


class FakeMachine:
    """A clock, /proc/stat's busy time and the bench's own CPU.

    ``crowd[i]``: the cores the neighbours take during run i + 1 and while waiting before it.
    """

    def __init__(self, crowd: list[float]) -> None:
        self.now = self.busy = self.own = 0.0
        self.crowd = crowd
        self.phase = 0

    def advance(self, seconds: float, own_cores: float = 0.0) -> None:
        neighbours = self.crowd[min(self.phase, len(self.crowd) - 1)]
        self.now += seconds
        self.own += own_cores * seconds
        self.busy += (neighbours + own_cores) * seconds

    def gate(self, quiet: Quiet) -> QuietGate:
        return QuietGate(
            quiet,
            list,
            busy=lambda: self.busy,
            own=lambda pids: self.own,
            clock=lambda: self.now,
            sleep=self.advance,
        )

    def run(self) -> int:
        """A 5 s measurement using 1.5 cores of the bench's own; the next phase of the neighbours starts after it."""
        self.advance(5.0, own_cores=1.5)
        self.phase += 1
        return self.phase


def test_a_run_the_neighbours_crowded_is_redone_and_the_quiet_one_kept() -> None:
    # Given neighbours taking 1.2 cores during the first run and 0.1 afterwards
    machine = FakeMachine([1.2, 0.1])
    gate = machine.gate(Quiet(threshold_cores=0.25, retries=2))
    # When a run goes through the gate
    gated = gate.measure(machine.run)
    # Then the second attempt is kept, with its reading; the bench's own 1.5 cores are not the neighbours'
    assert (gated.value, gated.attempts) == (2, 2)
    assert gated.outside_cores == pytest.approx(0.1)
    assert (gate.runs, gate.redone) == (1, 1)
    # Waiting: the whole settle time before the first attempt (crowded), one quiet window before the second;
    # and the redone run
    assert gate.spent_seconds == pytest.approx(10.0 + 0.5 + 5.0)


def test_a_machine_that_stays_crowded_gets_the_least_crowded_attempt_within_the_budget() -> None:
    # Given neighbours that never leave, crowding less on the second attempt
    machine = FakeMachine([1.0, 0.6, 0.9])
    quiet = Quiet(threshold_cores=0.25, retries=2, settle_seconds=1.0, window_seconds=0.5, budget_seconds=1000)
    gate = machine.gate(quiet)
    # When a run goes through the gate
    gated = gate.measure(machine.run)
    # Then every attempt was made and the least crowded one kept
    assert gated.attempts == 3
    assert gated.value == 2
    assert gated.outside_cores == pytest.approx(0.6)
    # And once the budget is spent, a crowded run is taken as it is
    spent = machine.gate(replace(quiet, budget_seconds=0.0))
    assert spent.measure(machine.run).attempts == 1


def test_each_round_gets_its_own_budget() -> None:
    # Given a crowded spell that spends the first round's budget
    machine = FakeMachine([1.0] * 6 + [0.1])
    gate = machine.gate(Quiet(threshold_cores=0.25, retries=2, settle_seconds=1.0, budget_seconds=6.0))
    assert gate.measure(machine.run).attempts == 2  # waits of 1 s before each attempt and the 5 s redone run
    assert gate.measure(machine.run).attempts == 1  # nothing left: taken as it is
    # When the next round starts
    gate.start_round()
    # Then its runs are redone again while crowded
    assert gate.measure(machine.run).attempts == 2
    assert gate.redone == 2


class FakeContainer:
    """The contract's answers for a budget of ``capacity`` models (a connection to it, in the client's shape)."""

    def __init__(self, capacity: int, price: float = 5.0) -> None:
        self.capacity = capacity
        self.price = price
        self.loaded: set[str] = set()
        self.calls: list[tuple[str, str]] = []

    async def call(self, method: str, path: str, body: bytes = b"", content_type: str = "") -> tuple[int, bytes]:
        self.calls.append((method, path))
        if method == "POST" and path == "/models":
            name = json.loads(body)["model_name"]
            if name in self.loaded:
                return 409, b"{}"
            if len(self.loaded) >= self.capacity:
                return 507, b"{}"
            self.loaded.add(name)
            return 200, b"{}"
        name = path.split("/")[2]
        if method == "DELETE":
            if name not in self.loaded:
                return 404, b"{}"
            self.loaded.remove(name)
            return 200, b"{}"
        return (200, json.dumps([self.price]).encode()) if name in self.loaded else (404, b"{}")


def test_the_client_loads_on_a_miss_and_unloads_the_least_recently_used_on_507() -> None:
    container = FakeContainer(capacity=2)
    names = ["m0", "m1", "m2"]
    side = SageMakerSide(names, ["/u0", "/u1", "/u2"], [b"x"] * 3, [5.0] * 3)

    async def traffic() -> None:
        for model in (0, 1, 0, 2, 1):
            await side.request(container, model)  # type: ignore[arg-type]

    asyncio.run(traffic())
    counts = side.counts
    assert (counts.requests, counts.ok, counts.errors, counts.wrong) == (5, 5, 0, 0)
    # m0, m1 loaded; m2 needs room: m1 (least recently used) goes; m1 again: m0 goes.
    assert (counts.misses, counts.loads, counts.insufficient, counts.unloads) == (4, 4, 2, 2)
    assert ("DELETE", "/models/m1") in container.calls
    assert container.loaded == {"m2", "m1"}


def test_a_wrong_price_or_an_unexpected_status_is_an_error() -> None:
    container = FakeContainer(capacity=1, price=6.0)
    side = SageMakerSide(["m0"], ["/u0"], [b"x"], [5.0])
    asyncio.run(side.request(container, 0))  # type: ignore[arg-type]
    assert (side.counts.ok, side.counts.wrong) == (0, 1)

    class Failing(FakeContainer):
        async def call(self, method: str, path: str, body: bytes = b"", content_type: str = "") -> tuple[int, bytes]:
            return (500, b"{}") if method == "POST" and path == "/models" else (404, b"{}")

    side = SageMakerSide(["m0"], ["/u0"], [b"x"], [5.0])
    asyncio.run(side.request(Failing(capacity=1), 0))  # type: ignore[arg-type]
    assert side.counts.errors == 1
    assert side.counts.statuses == {500: 1}


# --------------------------------------------------------------------------- verdicts and the block


def server(label: str, *, memory: dict[str, Any] | None, cpu: float, rps8: float, rps50: float) -> dict[str, Any]:
    return {
        "label": label,
        "workers": 1,
        "processes": 3,
        "memory": memory,
        "cpu_ms_per_request": cpu,
        "cpu_rounds_ms": [cpu],
        "wrk": {
            "8": {"rps": rps8, "p50_ms": 1.0, "p99_ms": 5.0, "rounds": [rps8]},
            "50": {"rps": rps50, "p50_ms": 5.0, "p99_ms": 20.0, "rounds": [rps50]},
        },
        "answers_checked": {"before": 100, "after": 100},
    }


def memory(per_model: float, fits: int, load_p50: float) -> dict[str, Any]:
    return {
        "pss_empty_mib": 40.0,
        "pss_per_model_mib": per_model,
        "models_per_budget": fits,
        "load_ms": {"p50": load_p50, "p90": load_p50 * 2, "max": load_p50 * 3, "count": 40},
    }


RESULTS: dict[str, Any] = {
    "date": "2026-12-07 10:00",
    "machine": {"cpus": 2},
    "load_average": {"start": [3.5, 3.0, 2.9], "end": [4.0, 3.5, 3.0]},
    "duration_seconds": 600.0,
    "config": {
        "quick": False,
        "rounds": 1,
        "cpu_requests": 4000,
        "workers": 2,
        "stages": [1, 10, 20, 30, 40],
        "seconds": 5.0,
        "warm_models": 10,
    },
    "mms_java_command": "java -cp <repo>/mms/frontend/* com.amazonaws.ml.mms.ModelServer",
    "server_commands": {"mms": "<repo>/bin/mxnet-model-server --start --foreground"},
    "container_default": "container-2w",
    "ceiling_default": "ceiling-2p",
    "servers": {
        "mms": server("MMS", memory=memory(28.0, 250, 300.0), cpu=0.6, rps8=1000, rps50=1000),
        "container-2w": server("dense, 2 workers", memory=memory(0.45, 15_900, 4.0), cpu=0.15, rps8=3000, rps50=4000),
        "ceiling-2p": server("ceiling, 2 processes", memory=None, cpu=0.05, rps8=10_000, rps50=9_000),
    },
    "ratios": {
        "x_ceiling": {"mms": {"8": 0.1, "50": 0.11}, "container-2w": {"8": 0.3, "50": 0.55}},
        "cpu_vs_mms": 0.25,
        "rps_vs_mms_c8": 3.0,
        "rps_vs_mms_c50": 4.0,
    },
    "zipf": {
        "models": 10_000,
        "distinct_models_requested": 6_000,
        "connections": 8,
        "exponent": 1.1,
        "seconds": 60.0,
        "budget_bytes": 512 * MIB,
        "requests": 40_000,
        "errors": 0,
        "wrong": 0,
        "misses": 9_000,
        "loads": 9_000,
        "insufficient_memory": 8_000,
        "unloads": 8_000,
        "conflicts": 3,
        "rps": 700.0,
        "latency_ms": {"p50": 3.0, "p90": 9.0, "p99": 20.0},
        "boot_pss_mib": 45.0,
        "peak_pss_mib": 560.0,
        "pss_limit_mib": 621.0,
        "boot_rss_mib": 80.0,
        "peak_rss_mib": 900.0,
        "limit_mib": 656.0,
        "samples": 120,
        "samples_over_rss_limit": 80,
    },
    "hooks": {"local_invoke_endpoint": None, "sagemaker_side_zipf": None},
    "notes": ["a note"],
    "commands": [".venv/bin/python bench/density.py"],
}


def test_each_run_shows_what_the_neighbours_took_when_the_results_have_it() -> None:
    # Given results with the gate's readings for one server and none for the others (an older results file)
    results = copy.deepcopy(RESULTS)
    results["servers"]["mms"]["wrk"]["8"]["outside_cores"] = [0.12]
    results["servers"]["mms"]["wrk"]["50"]["outside_cores"] = [0.03]
    results["servers"]["mms"]["cpu_rounds_outside_cores"] = [0.4]
    results["quiet_gate"] = {
        "threshold_cores": 0.25,
        "retries": 2,
        "settle_seconds": 10.0,
        "budget_seconds": 120.0,
        "spent_seconds": 42.0,
        "runs": 10,
        "redone": 3,
    }
    # When the section is rendered
    text = density_report.render(results, density_report.evaluate_targets(results))
    # Then the readings are in brackets beside their runs, and the gate's account is given
    assert "| MMS | 8 | 1,000 (0.12) |" in text
    assert "| MMS | CPU ms/request | 0.600 (0.40) |" in text
    assert "| dense, 2 workers | 8 | 3,000 |" in text
    assert "3 of 13 runs redone, 42 s spent waiting and redoing" in text
    assert "other tenants took ≤ 0.12 cores during these runs" in text


def test_targets_are_met_not_met_or_not_measured_from_the_same_run() -> None:
    rows = {row["target"].split(":")[0].split(" ≥")[0]: row for row in density_report.evaluate_targets(RESULTS)}
    results = [row["result"] for row in density_report.evaluate_targets(RESULTS)]
    assert results == [
        "met",
        "met",
        "met",
        "met",
        "**not met**",
        "in bench/density_local.py",
        "met",
        "in bench/density_local.py",
    ]
    assert "0.450 MiB per model, 15,900 models" in rows["≥ 10,000 models of 100 trees in a 7 GiB budget"]["measured"]
    assert "0.30 × at c8, 0.55 × at c50" in rows["invoke path"]["measured"]


def test_a_zipf_run_over_fewer_models_or_with_errors_gets_no_pass() -> None:
    quick = copy.deepcopy(RESULTS)
    quick["zipf"]["models"] = 300
    assert density_report.evaluate_targets(quick)[6]["result"] == "measured"
    failed = copy.deepcopy(RESULTS)
    failed["zipf"]["errors"] = 2
    assert density_report.evaluate_targets(failed)[6]["result"] == "**not met**"
    over = copy.deepcopy(RESULTS)
    over["zipf"]["peak_pss_mib"] = 700.0
    assert density_report.evaluate_targets(over)[6]["result"] == "**not met**"


def test_the_section_replaces_only_its_own_block_and_survives_the_suites_rewrite(tmp_path: Path) -> None:
    docs = tmp_path / "benchmarks.md"
    segments = "<!-- segments-scale:begin -->\nscale table\n<!-- segments-scale:end -->"
    docs.write_text(f"# Benchmarks\n\nsuite text\n\n{segments}\n")
    targets = density_report.evaluate_targets(RESULTS)
    density_report.write_section(RESULTS, targets, docs)
    first = docs.read_text()
    blocks = marked_blocks(first)
    assert set(blocks) == {"segments-scale", DENSITY_BLOCK}
    assert "| **dense, 2 workers** | 3 | 40.0 MiB | 0.450 MiB | 15,900 | 4.0 (8.0) ms |" in blocks[DENSITY_BLOCK]
    assert "2026-12-07 10:00" in blocks[DENSITY_BLOCK]
    assert "3.5 / 3.0 / 2.9" in blocks[DENSITY_BLOCK]
    assert first.startswith("# Benchmarks\n\nsuite text\n")

    # A second run replaces the block in place
    again = copy.deepcopy(RESULTS)
    again["date"] = "2026-12-08 11:00"
    density_report.write_section(again, targets, docs)
    second = docs.read_text()
    assert second.count(f"<!-- {DENSITY_BLOCK}:begin -->") == 1
    assert "2026-12-08 11:00" in second
    assert "2026-12-07 10:00" not in second
    assert marked_blocks(second)["segments-scale"] == segments

    # make bench's suite regenerates the file (bench/report.py write_report): both blocks stay, unchanged
    regenerated = keep_marked_blocks("# Benchmarks\n\nnew suite text\n", second)
    assert marked_blocks(regenerated) == marked_blocks(second)
    assert "\n\nsuite text" not in regenerated
    assert replace_marked_block(regenerated, DENSITY_BLOCK, "x").count("scale table") == 1


def test_quick_runs_write_beside_the_build_not_over_the_docs() -> None:
    options = density.parse_args(["--quick"])
    assert options.quick
    assert options.rounds == 1
    assert options.stages == (1, 5, 10)
    assert "build/bench/quick" in str(options.docs)
    assert "build/bench/quick" in str(options.json_path)
    assert options.zipf is not None
    assert options.zipf.models == 300
    full = density.parse_args([])
    assert full.docs.name == "benchmarks.md"
    assert full.docs.parent.name == "docs"
    assert full.stages == (1, 10, 20, 30, 40)
    assert full.zipf is not None
    assert full.zipf.models == 10_000
    with pytest.raises(SystemExit):
        density.parse_args(["--stages", "1", "5", "--warm", "10"])


def test_the_section_can_be_rewritten_from_a_results_file_without_measuring(tmp_path: Path) -> None:
    results = tmp_path / "density.json"
    results.write_text(json.dumps(RESULTS))
    docs = tmp_path / "benchmarks.md"
    assert density.main(["--from-json", str(results), "--docs", str(docs)]) == 0
    section = marked_blocks(docs.read_text())[DENSITY_BLOCK]
    assert "| CPU per request ≤ 1/3 of MMS's | met |" in section
    assert "com.amazonaws.ml.mms.ModelServer" in section
    assert "#   mms: <repo>/bin/mxnet-model-server --start --foreground" in section
