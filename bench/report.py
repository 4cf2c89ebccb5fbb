"""The `make bench` targets (the endpoint and the HTTP API) judged on one run's results, and docs/benchmarks.md
with its charts."""

from __future__ import annotations

import math
import os
import platform
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

MiB = 1024 * 1024
# A section another bench writes into docs/benchmarks.md: ``<!-- NAME:begin -->`` … ``<!-- NAME:end -->``.
# write_report regenerates the rest of the file and keeps these blocks, so each bench owns its own.
_MARKED_BLOCK = re.compile(r"^<!-- (?P<name>[a-z0-9-]+):begin -->$.*?^<!-- (?P=name):end -->$", re.M | re.S)
# bench/density.py's block (the dense container against the managed image's MMS), kept like any other.
DENSITY_BLOCK = "density"


def marked_blocks(text: str) -> dict[str, str]:
    """Every marked block of ``text`` by name, markers included."""
    return {match["name"]: match[0] for match in _MARKED_BLOCK.finditer(text)}


def replace_marked_block(text: str, name: str, body: str) -> str:
    """``text`` with block ``name`` holding ``body``: replaced where it is, else appended at the end."""
    block = f"<!-- {name}:begin -->\n{body.strip()}\n<!-- {name}:end -->"
    current = marked_blocks(text).get(name)
    if current is not None:
        return text.replace(current, block, 1)
    return (text.rstrip() + "\n\n" if text.strip() else "") + block + "\n"


def keep_marked_blocks(generated: str, previous: str) -> str:
    """``generated`` plus each marked block of ``previous`` it lacks, in their order, at the end."""
    kept = marked_blocks(generated)
    text = generated
    for name, block in marked_blocks(previous).items():
        if name not in kept:
            text = text.rstrip() + "\n\n" + block + "\n"
    return text


def _row(results: Mapping[str, Any], prefix: str) -> dict[str, Any] | None:
    rows = results.get("throughput", {}).get("rows", [])
    return next((row for row in rows if row["name"].startswith(prefix)), None)


def _target(name: str, met: bool | None, measured: str) -> dict[str, Any]:
    return {"name": name, "met": met, "measured": measured}


def evaluate_targets(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Each measurable target of the endpoint and the HTTP API with met / not met (None: not measured in this run)."""
    targets = []
    ceiling, api = _row(results, "ceiling"), _row(results, "HTTP API")
    # The endpoint's best single-row configuration (one process, or two worker processes sharing models).
    single_row = [
        row
        for row in results.get("throughput", {}).get("rows", [])
        if row["name"] in ("this endpoint", "this endpoint, 2 worker processes")
    ]
    endpoint = max(single_row, key=lambda row: row["rps"]) if single_row else None
    mlservers = [row for row in results.get("throughput", {}).get("rows", []) if row["name"].startswith("MLServer")]
    if ceiling and endpoint:
        targets.append(
            _target(
                "1. warm single-row InvokeEndpoint >= 0.5 x the ceiling",
                endpoint["ratio_to_ceiling"] >= 0.5,
                f"{endpoint['name']}: {endpoint['rps']:,.0f} req/s = {endpoint['ratio_to_ceiling']:.3f} x the "
                f"ceiling ({ceiling['rps']:,.0f})",
            )
        )
        targets.append(
            _target(
                "1. p99 <= 25 ms at 50 connections",
                endpoint["p99_ms"] <= 25,
                f"p99 {endpoint['p99_ms']:.1f} ms (p50 {endpoint['p50_ms']:.1f} ms)",
            )
        )
        if mlservers:
            best = max(mlservers, key=lambda row: row["rps"])
            ratio = endpoint["rps"] / best["rps"]
            targets.append(
                _target(
                    "1. >= 25 x MLServer's best",
                    ratio >= 25,
                    f"{ratio:.1f} x {best['name']} ({best['rps']:,.0f} req/s)",
                )
            )
        else:
            targets.append(_target("1. >= 25 x MLServer's best", None, "MLServer not measured"))
    scale = results.get("scale")
    if scale:
        targets.append(
            _target(
                f"2. zero errors over {scale['models']:,} models",
                scale["errors"] == 0,
                f"{scale['errors']} errors (or wrong answers) in {scale['requests']:,} requests",
            )
        )
        over = [s for s in scale["samples"] if s[1] > scale["rss_limit"]]
        targets.append(
            _target(
                "2. RSS <= boot + budget + 64 MiB at every sample",
                not over,
                f"peak {scale['peak_rss'] / MiB:.0f} MiB vs limit {scale['rss_limit'] / MiB:.0f} MiB "
                f"(boot {scale['boot_rss'] / MiB:.0f} + budget {scale['budget_bytes'] / MiB:.0f} + 64); "
                f"{len(over)} of {len(scale['samples'])} samples over",
            )
        )
        targets.append(
            _target(
                f"2. >= 500 req/s sustained at {scale['connections']} connections",
                scale["rps"] >= 500,
                f"{scale['rps']:,.0f} req/s mean, slowest second {scale['rps_min_per_second']:,.0f}",
            )
        )
        miss = scale.get("server_miss_wait_ms") or {}
        first = scale["first_touch_ms"]
        miss_p50 = miss.get("p50", first["p50"])
        targets.append(
            _target(
                "2. miss p50 <= 10 ms",
                None if math.isnan(miss_p50) else miss_p50 <= 10,
                f"server-side load wait p50 {miss.get('p50', float('nan')):.1f} ms over {miss.get('count', 0):.0f} "
                f"misses; client first request per model p50 {first['p50']:.1f} ms (n={first['count']})",
            )
        )
    if ceiling and api:
        targets.append(
            _target(
                "4. single-house HTTP API throughput >= 0.08 x the ceiling",
                api["ratio_to_ceiling"] >= 0.08,
                f"{api['rps']:,.0f} req/s = {api['ratio_to_ceiling']:.3f} x the ceiling",
            )
        )
    return targets


# --------------------------------------------------------------------------- charts


def _charts(results: Mapping[str, Any], out_dir: Path) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    charts: dict[str, str] = {}
    rows = [row for row in results.get("throughput", {}).get("rows", []) if row["group"] == "single-row"]
    if rows:
        names = [row["name"] for row in rows]
        fig, ax = plt.subplots(figsize=(9, 0.55 * len(rows) + 1.2))
        values = [row["rps"] for row in rows]
        colors = ["#999999" if "Starlette, uvicorn" in n or n.startswith("ceiling") else "#1f77b4" for n in names]
        colors = ["#d62728" if n == "this endpoint" else c for n, c in zip(names, colors, strict=True)]
        ax.barh(names[::-1], values[::-1], color=colors[::-1])
        for y, row in enumerate(rows[::-1]):
            ax.text(row["rps"], y, f" {row['rps']:,.0f} ({row['ratio_to_ceiling']:.2f}x)", va="center", fontsize=8)
        ax.set_xlabel("requests/s (median of rounds; ratio to the ceiling)")
        ax.set_title("Throughput, wrk -t1 -c50, one CSV row per request, 10 warm models")
        ax.set_xlim(0, max(values) * 1.3)
        fig.tight_layout()
        fig.savefig(out_dir / "throughput.png", dpi=110)
        plt.close(fig)
        charts["throughput"] = "throughput.png"

        fig, ax = plt.subplots(figsize=(9, 0.55 * len(rows) + 1.2))
        for index, row in enumerate(rows[::-1]):
            ax.plot([row["p50_ms"], row["p90_ms"], row["p99_ms"]], [index] * 3, color="#1f77b4", lw=1)
            for key, marker in (("p50_ms", "o"), ("p90_ms", "s"), ("p99_ms", "^")):
                ax.plot(
                    row[key], index, marker=marker, color="#1f77b4" if row["name"] != "this endpoint" else "#d62728"
                )
        ax.set_yticks(range(len(rows)), [row["name"] for row in rows[::-1]])
        ax.set_xscale("log")
        ax.set_xlabel("latency ms (log): o p50, ■ p90, ▲ p99")
        ax.set_title("Latency percentiles at 50 connections")
        fig.tight_layout()
        fig.savefig(out_dir / "latency.png", dpi=110)
        plt.close(fig)
        charts["latency"] = "latency.png"
    scale = results.get("scale")
    if scale and scale["samples"]:
        seconds = [s[0] for s in scale["samples"]]
        fig, ax = plt.subplots(figsize=(9, 4))
        ax.plot(seconds, [s[1] / MiB for s in scale["samples"]], label="RSS (process tree)")
        ax.plot(seconds, [s[2] / MiB for s in scale["samples"]], label="PSS (process tree)", alpha=0.7)
        ax.axhline(scale["boot_rss"] / MiB, color="#999999", ls=":", label="RSS at boot")
        ax.axhline(scale["rss_limit"] / MiB, color="#d62728", ls="--", label="boot + budget + 64 MiB")
        ax.set_xlabel("seconds since traffic started")
        ax.set_ylabel("MiB")
        ax.set_title(
            f"Scale run: {scale['models']:,} models, Zipf traffic, {scale['budget_bytes'] / MiB:.0f} MiB budget, "
            f"{scale['connections']} connections"
        )
        ax.legend(loc="lower right", fontsize=8)
        fig.tight_layout()
        fig.savefig(out_dir / "rss.png", dpi=110)
        plt.close(fig)
        charts["rss"] = "rss.png"
    return charts


# --------------------------------------------------------------------------- markdown


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


# What profiling found behind each target this machine misses; the figures are in the tables above.
WHY_MISSED = {
    "1. warm single-row InvokeEndpoint": (
        "per request the endpoint spends ~38 µs in the packed forest's one-row predict (numpy: a handful of calls "
        "over ~21,000 nodes, `bench/forest_predict.py`; ~65 µs before format version 2, when the comparison below was "
        "measured) on top of the HTTP stack the ceiling also pays (~50 µs); with "
        "a predict_fn that returns zeros the same endpoint reaches 0.54-0.59 x, so the model evaluation, not the "
        "server, is the remaining gap (docs/endpoint.md)."
    ),
    "1. >= 25 x MLServer": (
        "follows from the line above: MLServer's inline + adaptive batching reaches ~850-950 req/s here, so 25 x "
        "would need ~21,000 req/s, above the bare-Starlette ceiling itself on this 2-core machine."
    ),
    "2. >= 500 req/s": (
        "the scale run is one endpoint process sharing 2 cores with moto (S3) and the load generator; ~30 % of "
        "requests are misses, each a download from moto plus unpack plus model_fn, all CPU on the same cores."
    ),
    "2. miss p50": (
        "a miss is download + extract + model_fn; download from moto alone is ~8 ms idle (cold-load table) but "
        "~37 ms when moto competes for the 2 cores with the endpoint and the client during the scale run."
    ),
    "4. single-house HTTP API": (
        "the router's sandbox spends ~3 ms of CPU per invocation under this load on the shared 2 cores (from /proc "
        "CPU times; the same handler alone, warm: 1.2-1.6 ms, about two thirds of it botocore's invoke_endpoint, "
        "`bench/router_invocation.py`), plus the local HTTP API and the endpoint, so two cores cap the path near "
        "500-800 req/s whatever the bridge does (the bridge alone reaches 0.33 x, `bench/http_api_throughput.py`); "
        "on AWS, API Gateway and Lambda run on their own machines."
    ),
}


def write_report(results: Mapping[str, Any], path: Path) -> Path:
    chart_dir = path.with_suffix("")
    charts = _charts(results, chart_dir)
    rel = os.path.relpath(chart_dir, path.parent)
    opts = results["options"]
    lines = [
        "# Benchmarks",
        "",
        f"Generated by `make bench` (`bench/suite.py`) on {time.strftime('%Y-%m-%d %H:%M')} — "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, run took {results['wall_seconds'] / 60:.1f} min. "
        "The machine is shared and noisy (1-minute load average "
        f"{results['load_average_start'][0]:.1f} at the start, {results['load_average_end'][0]:.1f} at the end, "
        "other engineers' jobs included): read the ratios, which come from the same rounds.",
        "",
        f"Model artifact members: `{results.get('format', '?')}` (10 notebook cities trained by `training.jobs`, "
        "promoted by model-sync). Peers load joblib models fitted here on the same data with the same hyperparameters.",
        "",
        "## Targets: the endpoint and the HTTP API (docs/endpoint.md)",
        "",
    ]
    lines += _table(
        ["target", "result", "measured"],
        [
            [t["name"], "met" if t["met"] else "**not met**" if t["met"] is False else "n/a", t["measured"]]
            for t in results.get("targets", [])
        ],
    )
    missed = [t["name"] for t in results.get("targets", []) if t["met"] is False]
    reasons = [f"- {name}: {WHY_MISSED[key]}" for name in missed for key in WHY_MISSED if name.startswith(key)]
    if reasons:
        lines += ["", "### Why the missed targets are missed (profiled; best reached is in the table)", "", *reasons]
    throughput = results.get("throughput")
    if throughput:
        single = [row for row in throughput["rows"] if row["group"] == "single-row"]
        lines += [
            "",
            "## Throughput: servers side by side",
            "",
            f"`wrk -t1 -c50`, {opts['rounds']} round-robin rounds of {float(opts['seconds']):g} s per configuration "
            "(each after a 1 s warm-up), one CSV row (or one house) per request over the 10 warm city models; "
            "median of the rounds. Ratio: median of the per-round ratios to the ceiling measured in the same round. "
            "Every distinct request's answer was checked against the expected price before and after the load. "
            "CPU: share of one core used by wrk and by the server's process tree during the measurement.",
            "",
        ]
        lines += _table(
            [
                "server",
                "req/s",
                "× ceiling",
                "p50 ms",
                "p90 ms",
                "p99 ms",
                "errors",
                "wrk CPU",
                "server CPU",
                "RSS MiB",
                "answers checked",
            ],
            [
                [
                    row["name"] if row["name"] != "this endpoint" else "**this endpoint**",
                    f"{row['rps']:,.0f}",
                    f"{row['ratio_to_ceiling']:.3f}",
                    f"{row['p50_ms']:.1f}",
                    f"{row['p90_ms']:.1f}",
                    f"{row['p99_ms']:.1f}",
                    str(row["errors"]),
                    f"{row['wrk_cpu']:.0%}",
                    f"{row['server_cpu']:.0%}",
                    (
                        f"{row['memory']['rss'] / MiB:.0f} ({row['memory']['processes']} proc"
                        + (": the whole local stack)" if row["name"].startswith("HTTP API") else ")")
                        if row.get("memory")
                        else "–"
                    ),
                    f"{row['checked_answers']['before']['checked']} + {row['checked_answers']['after']['checked']}",
                ]
                for row in single
            ],
        )
        if "throughput" in charts:
            lines += ["", f"![throughput]({rel}/{charts['throughput']})", "", f"![latency]({rel}/{charts['latency']})"]
        wrk_max = max(row["wrk_cpu"] for row in single)
        lines += [
            "",
            f"**Is wrk the bottleneck?** wrk used at most {wrk_max:.0%} of its core in any configuration; "
            + (
                "it never saturated, so the servers set the pace."
                if wrk_max < 0.9
                else "where it neared a full core, that configuration's figure is a lower bound of the server's "
                "capacity."
            )
            + " On this 2-core machine wrk and the server share the CPUs, so a server that wants more than one "
            "core (several workers) competes with wrk.",
            "",
            "### Rows per second (this endpoint)",
            "",
        ]
        endpoint_rows = [row for row in throughput["rows"] if row["name"].startswith("this endpoint")]
        lines += _table(
            ["rows/request", "req/s", "rows/s", "p50 ms", "p99 ms"],
            [
                [
                    str(row["rows_per_request"]),
                    f"{row['rps']:,.0f}",
                    f"{row['rows_per_second']:,.0f}",
                    f"{row['p50_ms']:.1f}",
                    f"{row['p99_ms']:.1f}",
                ]
                for row in endpoint_rows
            ],
        )
        lines += ["", "Per-round req/s (the rounds ran interleaved):", ""]
        lines += _table(
            ["configuration", *[f"round {i + 1}" for i in range(int(opts["rounds"]))]],
            [[row["name"], *[f"{rps:,.0f}" for rps in row["rounds"]]] for row in throughput["rows"]],
        )
    cold = results.get("cold")
    if cold:
        client = cold["client_ms"]
        lines += [
            "",
            f"## Cold loads: {cold['models']} models",
            "",
            f"A fresh `python -m endpoint`; one request to each of {cold['models']} models it has never seen "
            "(distinct keys, copies of the 10 artifacts), one at a time. Client side: "
            f"p50 {client['p50']:.1f} ms, p90 {client['p90']:.1f} ms, p99 {client['p99']:.1f} ms, "
            f"max {client['max']:.1f} ms. "
            "How the loads split, from the endpoint's Prometheus /metrics (histogram quantiles are interpolated "
            "within buckets):",
            "",
        ]
        lines += _table(
            ["phase (metric)", "count", "mean ms", "p50 ms", "p99 ms"],
            [
                [name, f"{p['count']:.0f}", f"{p['mean_ms']:.1f}", f"{p['p50_ms']:.1f}", f"{p['p99_ms']:.1f}"]
                for name, p in cold["phases"].items()
            ]
            or [["(the endpoint exposes no load histograms)", "", "", "", ""]],
        )
    scale = results.get("scale")
    if scale:
        miss = scale.get("server_miss_wait_ms") or {}
        lines += [
            "",
            f"## Scale: {scale['models']:,} models, Zipf({opts['zipf_exponent']}), "
            f"{scale['budget_bytes'] / MiB:.0f} MiB budget",
            "",
            f"`python -m endpoint --max-memory-bytes {scale['budget_bytes']}` over {scale['models']:,} models "
            "(copies of the 10 trained artifacts under distinct keys), "
            f"{scale['connections']} keep-alive connections for {scale['seconds']:.0f} s, every answer checked.",
            "",
        ]
        lines += _table(
            ["measure", "value"],
            [
                ["requests / errors (incl. wrong answers)", f"{scale['requests']:,} / {scale['errors']}"],
                ["req/s (mean / slowest second)", f"{scale['rps']:,.0f} / {scale['rps_min_per_second']:,.0f}"],
                [
                    "latency p50 / p90 / p99 ms",
                    " / ".join(f"{scale['latency_ms'][k]:.1f}" for k in ("p50", "p90", "p99")),
                ],
                ["hit ratio (ModelCacheHit)", "–" if scale["hit_ratio"] is None else f"{scale['hit_ratio']:.1%}"],
                [
                    "miss: server load wait p50 / p99 ms",
                    f"{miss.get('p50', float('nan')):.1f} / {miss.get('p99', float('nan')):.1f} "
                    f"({miss.get('count', 0):.0f} waits)",
                ],
                [
                    "miss: client, first request per model p50 / p99 ms",
                    f"{scale['first_touch_ms']['p50']:.1f} / {scale['first_touch_ms']['p99']:.1f} "
                    f"({scale['first_touch_ms']['count']:,} models)",
                ],
                [
                    "RSS boot / peak / limit MiB",
                    f"{scale['boot_rss'] / MiB:.0f} / {scale['peak_rss'] / MiB:.0f} / {scale['rss_limit'] / MiB:.0f}",
                ],
                ["disk cache at the end", f"{scale['disk_cache_bytes'] / MiB:.0f} MiB"],
                [
                    "CPU: load generator / server (share of one core)",
                    f"{scale['client_cpu']:.0%} / {scale['server_cpu']:.0%}",
                ],
            ],
        )
        if scale["load_phases"]:
            lines += ["", "Load phases during the scale run:", ""]
            lines += _table(
                ["phase (metric)", "count", "mean ms", "p50 ms", "p99 ms"],
                [
                    [name, f"{p['count']:.0f}", f"{p['mean_ms']:.1f}", f"{p['p50_ms']:.1f}", f"{p['p99_ms']:.1f}"]
                    for name, p in scale["load_phases"].items()
                ],
            )
        if "rss" in charts:
            lines += ["", f"![RSS over time]({rel}/{charts['rss']})"]
    legacy = results.get("legacy")
    if legacy:
        lines += ["", "## Single-client latency (the older bench scripts)", ""]
        for item in legacy:
            lines += [
                f"### {item['title']}",
                "",
                f"`{item['command']}` — exit {item['exit']} ({item['seconds']:.0f} s)",
                "",
                "```",
                item["output"],
                "```",
                "",
            ]
    if results.get("skipped"):
        lines += ["", "## Not measured in this run", ""] + [f"- {item}" for item in results["skipped"]]
    path.parent.mkdir(parents=True, exist_ok=True)
    previous = path.read_text() if path.is_file() else ""
    path.write_text(keep_marked_blocks("\n".join(lines).rstrip() + "\n", previous))
    return path
