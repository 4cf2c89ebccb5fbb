"""The segments scale targets judged on one ``segments_scale.py`` run, and its section of docs/benchmarks.md.

Pure functions of the results dict (the same dict the bench writes as JSON), so a section can be
re-rendered from a saved results file and is unit-tested without running anything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.report import replace_marked_block

BLOCK_NAME = "segments-scale"
EXTRAPOLATE_TO = 10_000
END_TO_END_TARGET = (1_000, 500, 6 * 60.0)  # segments, rows, seconds
VALIDATION_TARGET = (1_000_000, 1_000, 30.0, 1024**3)  # rows, segments, seconds, RSS bytes
OVERHEAD_TARGET = 1.25
MiB = 1024 * 1024
# What profiling found behind a target when a run misses it (py-spy, and a moto microbenchmark): the section
# shows a reason only for a target its run missed; the figures of the run are in the tables. Keyed by the start
# of the target's name.
WHY_MISSED = {
    "1,000 segments × 500 rows end to end": (
        "model-sync is the critical path (its Σ per event is in the end-to-end section). The local "
        "dispatcher handles one event at a time "
        "and each event mostly waits on moto, whose TransactWriteItems deep-copies the whole registry table "
        "for its rollback (moto 5.2.5 `DynamoDBBackend.transact_write_items`): in process, one "
        "`ModelRegistry.promote` costs 3 ms on an empty table, ~135 ms at 200 cities, ~300 ms at 600 and "
        "~700 ms at 1,000, against ~25 ms at 1,000 with that copy skipped. At 200 segments (py-spy of the "
        "dispatcher), the promotion transaction was already 25 % of model-sync's time, S3 HEAD, copy and the "
        "validation rows 43 %, the registry's other reads and writes 21 %, the endpoint pre-warm 5 %. On AWS "
        "a transaction copies no table."
    ),
    "training overhead": (
        "the CPU the CLI adds (the CPU column, sharded / bare; 1.31-1.41 x before the zygote) is scikit-learn's "
        "import once per run (≈1.2 s, mostly overlapping validation) instead of once per worker; per segment, "
        "next to a ≈85 ms fit, ≈10 ms of pack_forest, model.tar.gz (gzip level 1), validation and test "
        "metrics and the drift reference (cProfile of that part: pack_forest 34 %, zlib 17 %, packed predict "
        "and format validation 15 %); the split CSVs, ≈0.5 s per 200 segments on the CLI's writer thread. On "
        "two idle cores that is ≈1.2 x, little margin under the target; the wall-clock ratio also assumes two "
        "idle cores: the same bare fits run in two processes at once show what the cores gave each round, and "
        "the neighbours column what the machine's other tenants took during each kept run."
    ),
}


# --------------------------------------------------------------------------- arithmetic


def stage_rows(e2e: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The end-to-end run as consecutive stages; ``fixed`` ones do not grow with the segment count.

    The CLI's start-up and bookkeeping is its wall time minus its own stages (imports, manifest, report).
    """
    cli = e2e["cli"]
    stages = cli["stages"]
    return [
        {"stage": "local stack start (not counted: already running in production)", "seconds": e2e["stack_seconds"],
         "fixed": True, "counted": False},
        {"stage": "training.jobs start-up and bookkeeping", "seconds": cli["wall_seconds"] - sum(stages.values()),
         "fixed": True, "counted": True},
        {"stage": "validate (read, map, check, split)", "seconds": stages.get("validate", 0.0), "fixed": False,
         "counted": True},
        {"stage": f"train ({e2e['workers']} workers)", "seconds": stages.get("train", 0.0), "fixed": False,
         "counted": True},
        {"stage": "publish (split CSVs + model.tar.gz to S3)", "seconds": stages.get("publish", 0.0), "fixed": False,
         "counted": True},
        {"stage": "promotion after the last upload (model-sync)", "seconds": e2e["promotion"]["tail_seconds"],
         "fixed": False, "counted": True},
        {"stage": f"first prediction of every segment ({e2e['clients']} clients)",
         "seconds": e2e["predictions"]["seconds"], "fixed": False, "counted": True},
    ]  # fmt: skip


def end_to_end_seconds(e2e: Mapping[str, Any]) -> float:
    return sum(row["seconds"] for row in stage_rows(e2e) if row["counted"])


def extrapolated_seconds(e2e: Mapping[str, Any], segments: int = EXTRAPOLATE_TO) -> float:
    """Fixed costs once plus each growing stage's per-segment cost × ``segments``."""
    scale = segments / e2e["segments"]
    return sum(row["seconds"] * (1 if row["fixed"] else scale) for row in stage_rows(e2e) if row["counted"])


def end_to_end_errors(e2e: Mapping[str, Any]) -> int:
    """Every segment that did not end served: failed or skipped by training, never live, or a bad answer."""
    predictions = e2e["predictions"]
    return (
        len(e2e["failed"])
        + int(e2e["skipped"])
        + len(e2e["not_live"])
        + int(predictions["non_200"])
        + int(predictions["wrong"])
    )


def _target(name: str, met: bool | None, measured: str) -> dict[str, Any]:
    return {"name": name, "met": met, "measured": measured}


def evaluate_targets(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The segments scale targets, met / not met (None: this run measured another configuration)."""
    targets = []
    e2e = results.get("end_to_end")
    if e2e:
        segments, rows, limit = END_TO_END_TARGET
        total = end_to_end_seconds(e2e)
        same = (e2e["segments"], e2e["rows"]) == (segments, rows)
        targets.append(
            _target(
                f"{segments:,} segments × {rows} rows end to end <= {limit / 60:.0f} min",
                total <= limit if same else None,
                f"{total:.0f} s ({total / 60:.1f} min) for {e2e['segments']:,} × {e2e['rows']}; "
                f"{EXTRAPOLATE_TO:,} segments extrapolated: {extrapolated_seconds(e2e) / 60:.0f} min",
            )
        )
        errors = end_to_end_errors(e2e)
        predictions = e2e["predictions"]
        targets.append(
            _target(
                "0 errors end to end",
                errors == 0,
                f"{errors} ({len(e2e['failed'])} failed, {e2e['skipped']} skipped, {len(e2e['not_live'])} not live, "
                f"{predictions['non_200']} non-200, {predictions['wrong']} wrong of {predictions['requests']:,} "
                "first predictions)",
            )
        )
    overhead = results.get("overhead")
    if overhead:
        ratio = overhead["median_ratio"]
        per_round = ", ".join(f"{r['ratio']:.2f}" for r in overhead["rounds"])
        targets.append(
            _target(
                f"training overhead <= {OVERHEAD_TARGET} x (bare fits ÷ workers)",
                ratio <= OVERHEAD_TARGET,
                f"median {ratio:.2f} over {len(overhead['rounds'])} interleaved rounds "
                f"({per_round}); "
                f"{overhead['segments']} segments × {overhead['rows']} rows, {overhead['workers']} workers; "
                f"{overhead['median_ratio_to_parallel']:.2f} x the same fits run in {overhead['workers']} processes, "
                f"CPU {overhead['median_cpu_ratio']:.2f} x{_quiet_note(overhead)}",
            )
        )
    validation = results.get("validation")
    if validation:
        rows, segments, seconds, rss = VALIDATION_TARGET
        same = (validation["rows"], validation["segments"]) == (rows, segments)
        wall, peak = validation["cli"]["wall_seconds"], validation["cli"]["peak_rss_bytes"]
        shape = f"{validation['rows']:,} rows, {validation['segments']:,} segments"
        targets.append(
            _target(
                f"validation of {rows:,} rows, {segments:,} segments <= {seconds:.0f} s",
                wall <= seconds if same else None,
                f"{wall:.1f} s ({shape})",
            )
        )
        targets.append(
            _target(
                f"validation of {rows:,} rows <= {rss / 1024**3:.0f} GiB RSS",
                peak <= rss if same else None,
                f"peak RSS {peak / MiB:,.0f} MiB ({shape})",
            )
        )
    return targets


# --------------------------------------------------------------------------- markdown


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _verdict(met: bool | None) -> str:
    return "met" if met else "**not met**" if met is False else "n/a (other configuration)"


def _end_to_end_lines(e2e: Mapping[str, Any]) -> list[str]:
    n = e2e["segments"]
    scale = EXTRAPOLATE_TO / n
    rows = []
    for row in stage_rows(e2e):
        seconds = row["seconds"]
        rows.append(
            [
                row["stage"],
                f"{seconds:.1f}",
                "fixed" if row["fixed"] else f"{seconds / n * 1000:.1f} ms",
                f"{seconds * (1 if row['fixed'] else scale):,.0f}" if row["counted"] else "–",
            ]
        )
    rows.append(
        [
            "**total: validate → first prediction of every segment**",
            f"**{end_to_end_seconds(e2e):.1f}**",
            f"{(end_to_end_seconds(e2e)) / n * 1000:.1f} ms",
            f"**{extrapolated_seconds(e2e):,.0f}**",
        ]
    )
    promotion, predictions, cli = e2e["promotion"], e2e["predictions"], e2e["cli"]
    spread = promotion["first_to_last_live_seconds"]
    latency = predictions["latency_ms"]
    lines = [
        f"### End to end: {n:,} segments × {e2e['rows']} rows",
        "",
        f"`{e2e['file']}` ({e2e['file_bytes'] / MiB:.1f} MiB, written in {e2e['generate_seconds']:.1f} s, not "
        "counted) on a fresh local stack. Stage times of validate, train and publish are the CLI's own "
        "(`--json` `stages`); promotion ends when model-sync's queue holds nothing, queued or in flight "
        "(checked every second); when segments went live comes from the registry, polled every 5 s.",
        "",
        *_table(["stage", "seconds", "per segment", f"{EXTRAPOLATE_TO:,} segments, s (extrapolated)"], rows),
        "",
        f"- model-sync promoted the first segment {promotion['first_live_after_cli_start'] or 0:.1f} s after the "
        "CLI started and the last one "
        + (
            f"{spread:.1f} s later ({n / spread:.1f} segments/s while uploads and promotions overlap)"
            if spread
            else "–"
        )
        + ".",
        *_model_sync_lines(promotion.get("model_sync", {})),
        f"- first predictions: {predictions['requests']:,} requests, p50 {latency['p50']:.0f} ms, "
        f"p90 {latency['p90']:.0f} ms, p99 {latency['p99']:.0f} ms; {predictions['non_200']} non-200, "
        f"{predictions['wrong']} wrong version or price.",
        f"- training.jobs peak RSS (its process and workers, the largest): {cli['peak_rss_bytes'] / MiB:,.0f} MiB.",
    ]
    if e2e["not_live"] or e2e["failed"] or predictions["examples"]:
        problems = [*e2e["not_live_reasons"].items(), *list(e2e["failed"].items())[:5]]
        lines += [f"- not served: {city}: {reason}" for city, reason in problems]
        lines += [f"- bad answer: {example}" for example in predictions["examples"]]
    return lines


def _model_sync_lines(model_sync: Mapping[str, Any]) -> list[str]:
    if not model_sync.get("count"):
        return []
    fifths = " → ".join(f"{ms:.0f}" for ms in model_sync["mean_ms_by_fifth"])
    return [
        f"- model-sync, per event (the local dispatcher runs one at a time): mean {model_sync['mean_ms']:.0f} ms, "
        f"p50 {model_sync['p50_ms']:.0f}, p90 {model_sync['p90_ms']:.0f}, p99 {model_sync['p99_ms']:.0f}; "
        f"Σ {model_sync['sum_seconds']:.0f} s over {model_sync['count']:,} events; mean by fifth of the run "
        f"{fifths} ms."
        + (
            " An event costs more as the registry fills up, so the linear extrapolation in the table is a lower "
            "bound "
            "on this local stack."
            if model_sync["mean_ms_by_fifth"][-1] > 2 * model_sync["mean_ms_by_fifth"][0]
            else ""
        )
    ]


def _sharded_wall(r: Mapping[str, Any]) -> float:
    # Results written before the CLI-minus-validate-only wall was measured carry only the train stage.
    return float(r.get("sharded_wall_seconds", r["sharded_train_seconds"]))


def _load(r: Mapping[str, Any]) -> str:
    if "load_average_start" not in r:
        return "-"
    return f"{r['load_average_start'][0]:.1f} → {r['load_average_end'][0]:.1f}"


def _quiet_note(overhead: Mapping[str, Any]) -> str:
    """How the overhead rounds were gated: runs redone because other tenants crowded them (none before the gate)."""
    quiet = overhead.get("quiet")
    if not quiet:
        return ""
    return (
        f"; {quiet['redone']} of {quiet['runs'] + quiet['redone']} runs redone (crowded: the rest of the machine "
        f"took > {quiet['threshold_cores']:.2f} cores)"
    )


def _neighbours(r: Mapping[str, Any]) -> str:
    """What the rest of the machine took during each side's kept run, in cores (and the runs made, if redone)."""
    if "outside_cores" not in r:
        return "-"
    sides = ("sharded", "bare", "bare-parallel")
    runs = r.get("attempts", {})
    return " / ".join(
        f"{r['outside_cores'][side]:.2f}" + (f" ({runs[side]} runs)" if runs.get(side, 1) > 1 else "") for side in sides
    )


def _overhead_lines(overhead: Mapping[str, Any]) -> list[str]:
    workers = overhead["workers"]
    rows = [
        [
            str(r["round"]),
            " → ".join(r["order"]),
            _load(r),
            f"{r['bare_fit_seconds']:.1f}",
            f"{r['ceiling_seconds']:.1f}",
            f"{_sharded_wall(r):.1f}",
            f"{r['sharded_train_seconds']:.1f}",
            f"{r['worker_segment_seconds'] / workers:.1f}",
            f"{r['ratio']:.2f}",
            f"{r['bare_parallel_wall_seconds']:.1f}",
            f"{r['ratio_to_parallel']:.2f}",
            f"{r['sharded_cpu_seconds']:.1f} / {r['bare_cpu_seconds']:.1f} = {r['cpu_ratio']:.2f}",
            _neighbours(r),
        ]
        for r in overhead["rounds"]
    ]
    measured = f" Measured {overhead['date']} (`--overhead-only`)." if "date" in overhead else ""
    return [
        f"### Training overhead: {overhead['segments']} segments × {overhead['rows']} rows, {workers} workers",
        "",
        "Bare: `RandomForestRegressor(n_estimators=100, min_samples_leaf=3, random_state=42, n_jobs=1).fit` "
        f"on exactly the rows the CLI trained each segment on (read back from its train channel, "
        f"{overhead['train_rows_per_segment']:.0f} rows per segment), one after another in one process, summed "
        f"and ÷ {workers}. Sharded: the wall of the CLI run as a user runs it minus the wall of a "
        "`--validate-only` run of the same file just before it: all that training adds to the run (the "
        "workers' zygote and its scikit-learn import, even where it overlaps validation; shard files; fit + "
        "pack + metrics + model.tar.gz per segment in forked worker processes; split CSVs; results table; "
        "manifest). Train stage: the CLI's own `stages.train`, for reference. Worker Σ: the per-segment "
        "seconds the workers report, ÷ workers. The target's ratio is sharded ÷ (bare Σ ÷ "
        f"{workers}), which assumes {workers} idle cores; the same fits run in {workers} forked processes at "
        "once (wall) show what the cores gave this round. CPU: the CLI's user + system seconds (process, "
        "zygote and workers) minus the `--validate-only` run's, over the bare fits' CPU: the work the CLI "
        "adds, whatever the other tenants of the machine do. Load: the 1-minute load average at the start and "
        "end of the round (other engineers' tests share the machine). Rounds alternate which side runs "
        f"first.{_gate_text(overhead)}{measured}",
        "",
        *_table(
            [
                "round",
                "order",
                "load",
                "bare Σ fit s",
                "÷ workers s",
                "sharded wall s",
                "train stage s",
                "worker Σ ÷ workers s",
                "ratio (target)",
                f"bare in {workers} processes s",
                "ratio to that",
                "CPU s: sharded / bare = ratio",
                "neighbours, cores: sharded / bare / in processes",
            ],
            rows,
        ),
    ]


def _gate_text(overhead: Mapping[str, Any]) -> str:
    quiet = overhead.get("quiet")
    if not quiet:
        return ""
    return (
        " Each side's run is gated as the density bench's wrk runs are (`bench/quiet.py`): before it, up to "
        f"{quiet['settle_seconds']:.0f} s of waiting for a quiet half-second; during it, the CPU the rest of the "
        "machine used (`/proc/stat` busy time minus the bench's own processes); a run during which that "
        f"exceeded {quiet['threshold_cores']:.2f} cores is redone up to {quiet['retries']} times within "
        f"{quiet['budget_seconds']:.0f} s per round, keeping the least crowded attempt (the pair validate-only "
        f"+ CLI is one run). Neighbours: that reading for each side's kept run. This run: {quiet['redone']} "
        f"runs redone, {quiet['spent_seconds']:.0f} s spent waiting and redoing."
    )


def _validation_lines(validation: Mapping[str, Any]) -> list[str]:
    cli = validation["cli"]
    return [
        f"### Validation: {validation['rows']:,} rows, {validation['segments']:,} segments",
        "",
        *_table(
            ["file MiB", "segments ok", "wall s (process)", "validate stage s (CLI)", "peak RSS MiB"],
            [
                [
                    f"{validation['file_bytes'] / MiB:.0f}",
                    f"{validation['ok_segments']:,}",
                    f"{cli['wall_seconds']:.1f}",
                    f"{cli['stages'].get('validate', float('nan')):.1f}",
                    f"{cli['peak_rss_bytes'] / MiB:,.0f}",
                ]
            ],
        ),
    ]


def _remeasured(overhead: Mapping[str, Any] | None) -> str:
    if not overhead or "date" not in overhead:
        return ""
    start, end = overhead["load_average_start"], overhead["load_average_end"]
    return (
        f" The training overhead was measured again on {overhead['date']} (`--overhead-only`, the other "
        f"sections kept from the run above): load {', '.join(f'{v:.2f}' for v in start)} at its start, "
        f"{', '.join(f'{v:.2f}' for v in end)} at its end."
    )


def render_section(results: Mapping[str, Any]) -> str:
    start, end = results["load_average_start"], results["load_average_end"]
    lines = [
        "## Segments at scale",
        "",
        f"Generated by `bench/segments_scale.py` on {results['date']} — {results['cpus']} CPUs, Python "
        f"{results['python']}, run took {results['wall_seconds'] / 60:.1f} min. Load average (1, 5, 15 min) "
        f"{', '.join(f'{v:.2f}' for v in start)} at the start, {', '.join(f'{v:.2f}' for v in end)} at the end; "
        "the machine is shared, so compare the ratios of the same rounds." + _remeasured(results.get("overhead")),
        "",
        *_table(
            ["target", "result", "measured"],
            [[t["name"], _verdict(t["met"]), t["measured"]] for t in results.get("targets", [])],
        ),
    ]
    missed = [t["name"] for t in results.get("targets", []) if t["met"] is False]
    reasons = [f"- {name}: {why}" for name in missed for key, why in WHY_MISSED.items() if name.startswith(key)]
    if reasons:
        lines += ["", "Why the missed targets are missed (profiled):", "", *reasons]
    for key, render in (("end_to_end", _end_to_end_lines), ("overhead", _overhead_lines)):
        if results.get(key):
            lines += ["", *render(results[key])]
    if results.get("validation"):
        lines += ["", *_validation_lines(results["validation"])]
    commands = [results.get("bench_command", "python bench/segments_scale.py")]
    commands += [results[key]["cli"]["command"] for key in ("validation", "end_to_end") if results.get(key)]
    if results.get("overhead"):
        commands += [results["overhead"].get("bench_command", ""), results["overhead"]["command"]]
        commands = [command for command in commands if command]
    lines += ["", "Commands:", "", "```", *commands, "```"]
    return "\n".join(lines)


def write_section(path: Path, results: Mapping[str, Any]) -> Path:
    """Write the section between this bench's markers in ``path`` (appended, with the markers, if absent)."""
    previous = path.read_text() if path.is_file() else ""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(replace_marked_block(previous, BLOCK_NAME, render_section(results)))
    return path
