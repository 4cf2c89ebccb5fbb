"""The density bench's verdicts and its section of docs/benchmarks.md (between the ``density`` markers).

Pure functions of the results document ``bench/density.py`` writes, so they are tested without servers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.report import DENSITY_BLOCK, replace_marked_block

BLOCK = DENSITY_BLOCK
MMS = "mms"
CONTAINER_TARGETS = {"pss_per_model_mib": 0.6, "models": 10_000, "cpu_ratio": 1 / 3, "rps_ratio": 2.5}
LOAD_P50_MS = 5.0
CEILING_RATIO = 0.5
INVOKE_ENDPOINT_RATIO = 0.25
ZIPF_MODELS = 10_000


# The local SageMaker side in front of the container is its own server tree with its own rounds.
DENSITY_LOCAL = (
    "`bench/density_local.py --part throughput` and `--part zipf` measure the SageMaker side + container "
    "(figures and commands: docs/endpoint.md, Dense serving)"
)


def verdict(ok: bool | None) -> str:
    if ok is None:
        return "measured"
    return "met" if ok else "**not met**"


def _fmt(value: float | None, digits: int = 2, suffix: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:,.{digits}f}{suffix}"


def evaluate_targets(results: Mapping[str, Any]) -> list[dict[str, str]]:
    """The density targets, each met / not met / measured (no verdict possible) / not measured, with the figures."""
    servers = results["servers"]
    default = results["container_default"]
    ceiling = results["ceiling_default"]
    dense, mms = servers[default], servers[MMS]
    ratios = results["ratios"]
    rows: list[dict[str, str]] = []

    memory = dense["memory"]
    per_model, fits = memory["pss_per_model_mib"], memory["models_per_budget"]
    rows.append(
        {
            "target": "≥ 10,000 models of 100 trees in a 7 GiB budget: PSS ≤ 0.6 MiB per loaded model",
            "result": verdict(per_model <= CONTAINER_TARGETS["pss_per_model_mib"] and fits >= ZIPF_MODELS),
            "measured": f"{dense['label']}: {per_model:.3f} MiB per model, {fits:,} models in 7 GiB "
            f"(MMS: {mms['memory']['pss_per_model_mib']:.1f} MiB, {mms['memory']['models_per_budget']:,})",
        }
    )
    cpu = ratios["cpu_vs_mms"]
    rows.append(
        {
            "target": "CPU per request ≤ 1/3 of MMS's",
            "result": verdict(cpu <= CONTAINER_TARGETS["cpu_ratio"]),
            "measured": f"{cpu:.2f} × MMS: {dense['cpu_ms_per_request']:.3f} ms vs {mms['cpu_ms_per_request']:.3f} ms "
            f"({results['config']['cpu_requests']:,} requests at c8, median of rounds)",
        }
    )
    rps = ratios["rps_vs_mms_c8"]
    outside = [*dense["wrk"]["8"].get("outside_cores", []), *mms["wrk"]["8"].get("outside_cores", [])]
    rows.append(
        {
            "target": "req/s ≥ 2.5 × MMS at c8, same cores",
            "result": verdict(rps >= CONTAINER_TARGETS["rps_ratio"]),
            "measured": f"{rps:.2f} × MMS: {dense['wrk']['8']['rps']:,.0f} vs {mms['wrk']['8']['rps']:,.0f} req/s"
            + (f" (other tenants took ≤ {max(outside):.2f} cores during these runs)" if outside else ""),
        }
    )
    load_p50 = dense["memory"]["load_ms"]["p50"]
    rows.append(
        {
            "target": "`POST /models` p50 ≤ 5 ms (model on disk)",
            "result": verdict(load_p50 <= LOAD_P50_MS),
            "measured": f"{load_p50:.1f} ms (MMS: {mms['memory']['load_ms']['p50']:.0f} ms)",
        }
    )
    x8, x50 = ratios["x_ceiling"][default]["8"], ratios["x_ceiling"][default]["50"]
    rows.append(
        {
            "target": "invoke path ≥ 0.5 × the bare-Starlette ceiling, as many workers as cores",
            "result": verdict(min(x8, x50) >= CEILING_RATIO),
            "measured": f"{dense['label']} vs {servers[ceiling]['label']}: {x8:.2f} × at c8, {x50:.2f} × at c50",
        }
    )
    rows.append(
        {
            "target": f"local InvokeEndpoint path (SageMaker side + container) ≥ {INVOKE_ENDPOINT_RATIO} × the ceiling",
            "result": "in bench/density_local.py",
            "measured": f"not in this run: {DENSITY_LOCAL}",
        }
    )
    zipf = results.get("zipf")
    if zipf is None:
        rows.append({"target": "10,000-model Zipf run, container alone", "result": "not measured", "measured": "–"})
    else:
        within = zipf["peak_pss_mib"] <= zipf["pss_limit_mib"]
        complete = zipf["models"] >= ZIPF_MODELS
        rows.append(
            {
                "target": "10,000-model Zipf run, container alone: 0 errors, memory ≤ boot + budget + 64 MiB",
                "result": verdict(zipf["errors"] == 0 and within) if complete else verdict(None),
                "measured": f"{zipf['models']:,} models, {zipf['errors']} errors in {zipf['requests']:,} requests; "
                f"peak PSS {zipf['peak_pss_mib']:.0f} MiB vs {zipf['pss_limit_mib']:.0f} MiB "
                f"(summed RSS {zipf['peak_rss_mib']:.0f} MiB vs {zipf['limit_mib']:.0f} MiB)",
            }
        )
    rows.append(
        {
            "target": "10,000-model Zipf run through the local SageMaker side + container",
            "result": "in bench/density_local.py",
            "measured": f"not in this run: {DENSITY_LOCAL}",
        }
    )
    return rows


def server_table(results: Mapping[str, Any]) -> list[str]:
    ratios = results["ratios"]["x_ceiling"]
    lines = [
        "| server | processes | PSS empty | PSS per model | models in 7 GiB | `POST /models` p50 (p90) "
        "| CPU per request | c8 req/s | c8 p99 | c50 req/s | c50 p99 | × ceiling c8 / c50 | answers checked |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, server in results["servers"].items():
        memory = server.get("memory")
        c8, c50 = server["wrk"]["8"], server["wrk"]["50"]
        x = ratios.get(key)
        label = f"**{server['label']}**" if key == results["container_default"] else server["label"]
        lines.append(
            "| "
            + " | ".join(
                [
                    label,
                    str(server["processes"]),
                    _fmt(memory["pss_empty_mib"], 1, " MiB") if memory else "–",
                    _fmt(memory["pss_per_model_mib"], 3, " MiB") if memory else "–",
                    f"{memory['models_per_budget']:,}" if memory else "–",
                    f"{memory['load_ms']['p50']:.1f} ({memory['load_ms']['p90']:.1f}) ms" if memory else "–",
                    _fmt(server["cpu_ms_per_request"], 3, " ms"),
                    _fmt(c8["rps"], 0),
                    _fmt(c8["p99_ms"], 1, " ms"),
                    _fmt(c50["rps"], 0),
                    _fmt(c50["p99_ms"], 1, " ms"),
                    f"{x['8']:.2f} / {x['50']:.2f}" if x else "–",
                    f"{server['answers_checked']['before']} + {server['answers_checked']['after']}",
                ]
            )
            + " |"
        )
    return lines


def rounds_table(results: Mapping[str, Any]) -> list[str]:
    rounds = results["config"]["rounds"]
    lines = [
        "| server | connections | " + " | ".join(f"round {i + 1}" for i in range(rounds)) + " |",
        "|---|---|" + "---|" * rounds,
    ]
    for server in results["servers"].values():
        for connections in ("8", "50"):
            values = server["wrk"][connections]["rounds"]
            # Older results files have no neighbours' reading.
            outside = server["wrk"][connections].get("outside_cores") or [None] * len(values)
            cells = [f"{v:,.0f}" + ("" if o is None else f" ({o:.2f})") for v, o in zip(values, outside, strict=True)]
            lines.append(f"| {server['label']} | {connections} | " + " | ".join(cells) + " |")
        cpu = server["cpu_rounds_ms"]
        outside = server.get("cpu_rounds_outside_cores") or [None] * len(cpu)
        cells = [f"{v:.3f}" + ("" if o is None else f" ({o:.2f})") for v, o in zip(cpu, outside, strict=True)]
        lines.append(f"| {server['label']} | CPU ms/request | " + " | ".join(cells) + " |")
    return lines


def zipf_lines(zipf: Mapping[str, Any] | None) -> list[str]:
    if zipf is None:
        return ["Not run (`--no-zipf`)."]
    return [
        f"{zipf['models']:,} models ({zipf['distinct_models_requested']:,} of them requested), "
        f"Zipf({zipf['exponent']}) over {zipf['connections']} connections for {zipf['seconds']:.0f} s, memory budget "
        f"{zipf['budget_bytes'] / 2**20:,.0f} MiB: {zipf['requests']:,} requests, {zipf['errors']} errors "
        f"({zipf['wrong']} wrong answers), {zipf['misses']:,} misses, {zipf['loads']:,} loads, "
        f"{zipf['insufficient_memory']:,} × 507 and {zipf['unloads']:,} unloads, {zipf['conflicts']:,} × 409; "
        f"{zipf['rps']:,.0f} req/s, latency p50 {zipf['latency_ms']['p50']:.1f} ms, "
        f"p99 {zipf['latency_ms']['p99']:.1f} ms (a miss includes its load, and any unload).",
        f"Memory of the process tree (boot → peak): PSS {zipf['boot_pss_mib']:.0f} → {zipf['peak_pss_mib']:.0f} MiB "
        f"(limit boot + budget + 64 MiB = {zipf['pss_limit_mib']:.0f}); RSS summed over the processes "
        f"{zipf['boot_rss_mib']:.0f} → {zipf['peak_rss_mib']:.0f} MiB (limit {zipf['limit_mib']:.0f}; "
        f"{zipf['samples_over_rss_limit']} of {zipf['samples']} samples over). Summed RSS counts a forest's pages once "
        "per worker that mapped it; PSS counts every page once, as the container's cgroup charges it, so the "
        "verdict is on PSS.",
    ]


def gate_lines(results: Mapping[str, Any]) -> list[str]:
    """What the quiet gate (bench/density_measure.py) did, when the run had one."""
    gate = results.get("quiet_gate")
    if not gate:
        return []
    return [
        "In brackets: the cores the machine's other tenants took during that run (`/proc/stat` busy time less "
        "the servers', the bench's and wrk's). Each run (wrk, and the CPU rounds) waited up to "
        f"{gate['settle_seconds']:g} s for them to take ≤ {gate['threshold_cores']:g} cores and was redone up to "
        f"{gate['retries']} times when they took more during it, keeping the least crowded attempt, for every "
        f"server alike, within {gate['budget_seconds']:g} s per round: {gate['redone']} of "
        f"{gate['runs'] + gate['redone']} runs redone, {gate['spent_seconds']:.0f} s spent waiting and redoing. "
        "A crowded run measures the scheduler more than the server: at c8 every server then waits for its time "
        "slices, and all of them converge on the same req/s.",
        "",
    ]


def render(results: Mapping[str, Any], targets: Sequence[Mapping[str, str]]) -> str:
    load = results["load_average"]
    quick = " **Quick smoke run: short rounds, few models; not for comparison.**" if results["config"]["quick"] else ""
    lines = [
        "## Density: the dense container vs the managed image's MMS",
        "",
        f"Generated by `bench/density.py` on {results['date']} — {results['machine']['cpus']} CPUs, "
        f"load average {load['start'][0]:.1f} / {load['start'][1]:.1f} / {load['start'][2]:.1f} (1/5/15 min) at the "
        f"start, {load['end'][0]:.1f} / {load['end'][1]:.1f} / {load['end'][2]:.1f} at the end; run took "
        f"{results['duration_seconds'] / 60:.1f} min. The machine is shared: read the ratios, which come from the "
        f"same interleaved rounds.{quick}",
        "",
        "### Targets",
        "",
        "| target | result | measured |",
        "|---|---|---|",
        *[f"| {row['target']} | {row['result']} | {row['measured']} |" for row in targets],
        "",
        "### Per server",
        "",
        *server_table(results),
        "",
        *[f"- {note}" for note in results["notes"]],
        "",
        "Interleaved rounds (req/s with wrk, then CPU per request over a fixed request count):",
        "",
        *rounds_table(results),
        "",
        *gate_lines(results),
        "### 10,000 models, Zipf traffic, through the container alone",
        "",
        *zipf_lines(results.get("zipf")),
        "",
        "### Commands",
        "",
        "```bash",
        *results["commands"],
        "# the servers, as the bench started them ({port}: a free port):",
        *[f"#   {key}: {command}" for key, command in results.get("server_commands", {}).items()],
        "```",
    ]
    return "\n".join(lines) + "\n"


def write_section(results: Mapping[str, Any], targets: Sequence[Mapping[str, str]], docs: Path) -> Path:
    """Put the section between the ``density`` markers of ``docs`` (created, or appended, if missing)."""
    text = docs.read_text() if docs.is_file() else ""
    docs.parent.mkdir(parents=True, exist_ok=True)
    docs.write_text(replace_marked_block(text, BLOCK, render(results, targets)))
    return docs
