"""Segments at scale: a user's file with many segments, validated, trained, published, promoted and served once.

Three measurements, each on a synthetic file in the bring-your-own-data format (``segments_data.py``):

* **end to end** (``--segments`` × ``--rows``, default 1,000 × 500) on a fresh local stack (the way
  ``make demo`` starts it): ``python -m training.jobs --data … --workers <CPUs> --publish`` (validate,
  train, publish; stage times from its ``--json`` report), model-sync promoting every segment (the
  registry polled until all are live), then the first prediction of every segment through the local HTTP
  API from a few concurrent clients. Per-segment cost of each stage and the 10,000-segment
  extrapolation (fixed costs + per segment × 10,000). Target: ≤ 6 min on this 2-core machine, 0 errors.
* **training overhead**, interleaved rounds (the machine is shared and noisy): the CLI's wall minus a
  ``--validate-only`` run's (same round), vs the bare ceiling, ``RandomForestRegressor.fit`` on exactly
  the rows the CLI trained each segment on, summed and divided by the workers. Target ≤ 1.25.
* **validation** of a 1,000,000-row, 1,000-segment CSV (``--validate-only``): wall time and the peak
  RSS of the CLI process. Targets ≤ 30 s, ≤ 1 GiB.

Writes ``--json`` (build/bench/segments_scale.json) and its section of ``--docs`` (docs/benchmarks.md,
between ``<!-- segments-scale:begin -->`` and ``<!-- segments-scale:end -->``). Exit status: 0 when
the run completed (targets met or not: misses are reported), 1 when the run itself broke.

    .venv/bin/python bench/segments_scale.py                      # the full run (several minutes, both cores)
    .venv/bin/python bench/segments_scale.py --quick --docs /tmp/b.md   # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from bench import segments_data as data
from bench.processes import REPO_ROOT, BenchBroken
from bench.quiet import Gated, Quiet, QuietGate, add_quiet_arguments, quiet_from_arguments
from bench.segments_report import evaluate_targets, write_section
from bench.segments_runs import (
    CliRun,
    LiveWatcher,
    bare_fit_wall_parallel,
    bare_fits,
    cli_environment,
    command_text,
    first_predictions,
    log,
    model_sync_invocations,
    not_live_reasons,
    prediction_summary,
    queue_settled,
    run_cli,
    shard_segment_seconds,
    train_rows,
    training_argv,
)


@dataclass(frozen=True)
class Options:
    segments: int = 1_000
    rows: int = 500
    overhead_segments: int = 200
    overhead_rows: int = 500
    rounds: int = 3
    validation_segments: int = 1_000
    validation_rows: int = 1_000  # per segment: 1,000,000 rows in all
    validation_run: bool = True
    workers: int = os.cpu_count() or 1
    clients: int = 4
    promote_timeout: float = 1800.0
    work_dir: Path = REPO_ROOT / "build" / "bench" / "segments"
    json_path: Path = REPO_ROOT / "build" / "bench" / "segments_scale.json"
    docs: Path = REPO_ROOT / "docs" / "benchmarks.md"
    quick: bool = False
    from_json: Path | None = None
    overhead_only: bool = False
    quiet: Quiet = field(default_factory=Quiet)  # the overhead rounds' gate

    @property
    def data_dir(self) -> Path:
        return self.work_dir / "data"

    @property
    def logs(self) -> Path:
        return self.work_dir / "logs"


def _fresh(directory: Path) -> Path:
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    return directory


def _require(run: CliRun, what: str) -> None:
    if run.returncode != 0 and not run.trained:
        raise BenchBroken(f"{what}: training.jobs exited {run.returncode}; see {run.log_path}")


# --------------------------------------------------------------------------- 1. end to end


def _houses_by_city(run: CliRun, config: data.FileConfig) -> dict[str, dict[str, float]]:
    """Each trained segment's query house, keyed by the city name validation gave its segment value."""
    houses = data.query_houses(config)
    city_of = {s["source_value"]: s["city"] for s in run.report["validation"]["segments"]}
    trained = set(run.trained)
    return {city_of[value]: house for value, house in houses.items() if city_of.get(value) in trained}


def end_to_end(options: Options) -> dict[str, Any]:
    from house_prices.registry import ModelRegistry
    from local.stack import LocalStack, StackConfig

    config = data.FileConfig(options.segments, options.rows)
    started = time.perf_counter()
    path = data.ensure_file(config, options.data_dir)
    generate_seconds = time.perf_counter() - started
    log(f"end to end: {config.segments:,} segments × {config.rows} rows ({path.name}); starting a fresh stack")
    # Like `make demo`: nothing replayed, nothing kept (persist=False); its logs stay under the state dir.
    stack_config = StackConfig(state_dir=_fresh(options.work_dir / "stack"), write_stack_file=False, persist=False)
    started = time.perf_counter()
    with LocalStack(stack_config) as stack:
        stack_seconds = time.perf_counter() - started
        info = stack.info
        registry = ModelRegistry(stack.client("dynamodb"), info.registry_table)
        argv = training_argv(
            path,
            data.mapping_args(),
            _fresh(options.work_dir / "e2e-training"),
            "--workers",
            str(options.workers),
            "--publish",
            "--bucket",
            info.bucket,
            "--prefix",
            info.prefix,
        )
        settled = queue_settled(stack.client("sqs"), info.queues["ModelSyncFunction"]["queue_url"])
        with LiveWatcher(registry) as watcher:
            log("training.jobs: validate → train → publish")
            cli_started = time.perf_counter()
            cli = run_cli(argv, cli_environment(info.client_environment()), options.logs / "e2e-training.log")
            cli_ended = cli_started + cli.wall_seconds
            _require(cli, "end to end")
            log(f"training.jobs done in {cli.wall_seconds:.1f} s {cli.stages}; waiting for model-sync")
            missing = watcher.wait_for(cli.trained, options.promote_timeout, settled)
            waited = time.perf_counter() - cli_ended
        seen = [watcher.seen_at[city] for city in cli.trained if city in watcher.seen_at]
        live = {city: watcher.live[city] for city in cli.trained if city in watcher.live}
        houses = {city: house for city, house in _houses_by_city(cli, config).items() if city in live}
        log(f"{len(live):,} live ({len(missing)} not) {waited:.1f} s after the CLI; first predictions")
        started = time.perf_counter()
        predictions = first_predictions(info.api_url, houses, live, options.clients)
        predict_seconds = time.perf_counter() - started
        reasons = not_live_reasons(registry, missing)
        model_sync = model_sync_invocations(stack.log_dir / "dispatcher-ModelSyncFunction.log")
    return {
        "segments": config.segments,
        "rows": config.rows,
        "file": os.path.relpath(path, REPO_ROOT),
        "file_bytes": path.stat().st_size,
        "generate_seconds": generate_seconds,
        "stack_seconds": stack_seconds,
        "workers": options.workers,
        "clients": options.clients,
        "cli": _cli_json(cli),
        "trained": len(cli.trained),
        "failed": cli.failed,
        "skipped": cli.report.get("counts", {}).get("skipped", 0),
        "not_live": missing,
        "not_live_reasons": reasons,
        "promotion": {
            # After the CLI exits (its last upload): what model-sync still had to do (its queue, ±1 s).
            "tail_seconds": max(0.0, watcher.settled_at - cli_ended),
            "first_live_after_cli_start": (min(seen) - cli_started) if seen else None,
            "first_to_last_live_seconds": (max(seen) - min(seen)) if seen else None,
            "registry_polls": watcher.polls,
            "model_sync": model_sync,
        },
        "predictions": prediction_summary(predictions, predict_seconds),
    }


def _cli_json(run: CliRun) -> dict[str, Any]:
    return {
        "command": run.command(),
        "returncode": run.returncode,
        "wall_seconds": run.wall_seconds,
        "cpu_seconds": run.cpu_seconds,
        "stages": run.stages,
        "peak_rss_bytes": run.peak_rss_bytes,
        "counts": run.report.get("counts", {}),
        "log": os.path.relpath(run.log_path, REPO_ROOT),
    }


# --------------------------------------------------------------------------- 2. training overhead


def training_overhead(options: Options) -> dict[str, Any]:
    """Interleaved rounds of the sharded run as a user runs it against the bare fits of the same rows.

    The sharded run's wall is the whole CLI's wall minus the wall of a ``--validate-only`` run of the
    same file in the same round: everything training adds to the user's run (worker start-up, scikit-learn's
    import, shard files, fits, packing, metrics, archives, split CSVs, the results table, the manifest),
    including what overlaps validation. Its CPU is the CLI's (process, zygote and workers) minus that run's.

    Every side runs through one ``QuietGate`` (``bench.quiet``, as the density bench's wrk runs): it waits
    briefly for a quiet moment, reads what the rest of the machine took during the run, and redoes a
    crowded run (within retries and a budget per round), keeping the least crowded attempt. The pair
    validate-only + CLI is one gated run, since the sharded wall is their difference. The bench starts no
    long-lived process: each run reaps what it started, so its CPU is in ``os.times()``'s children by the
    time the gate reads it, never taken for a neighbour's.
    """
    config = data.FileConfig(options.overhead_segments, options.overhead_rows)
    path = data.ensure_file(config, options.data_dir)
    work = _fresh(options.work_dir / "overhead-training")
    # --force: every round trains every segment (the local manifest would call them unchanged).
    argv = training_argv(path, data.mapping_args(), work, "--workers", str(options.workers), "--force")
    env = cli_environment()
    gate = QuietGate(options.quiet, list)
    rounds: list[dict[str, Any]] = []
    rows: dict[str, np.ndarray] = {}

    def sharded(number: int) -> dict[str, Any]:
        validate_only = run_cli([*argv, "--validate-only"], env, options.logs / f"overhead-validate{number}.log")
        run = run_cli(argv, env, options.logs / f"overhead-round{number}.log")
        _require(run, f"overhead round {number}")
        return {
            "validate_only_wall_seconds": validate_only.wall_seconds,
            "validate_only_cpu_seconds": validate_only.cpu_seconds,
            "sharded_wall_seconds": run.wall_seconds - validate_only.wall_seconds,
            "sharded_train_seconds": run.stages["train"],
            "sharded_cpu_seconds": run.cpu_seconds - validate_only.cpu_seconds,
            "cli_wall_seconds": run.wall_seconds,
            "stages": run.stages,
            "worker_segment_seconds": shard_segment_seconds(work),
            "trained": run.trained,
        }

    for number in range(1, options.rounds + 1):
        # Alternate which goes first, so drift in the machine's load hits both sides alike.
        order = ("sharded", "bare", "bare-parallel") if number % 2 else ("bare-parallel", "bare", "sharded")
        measured: dict[str, Any] = {"round": number, "order": list(order), "load_average_start": os.getloadavg()}
        outside: dict[str, float] = {}
        attempts: dict[str, int] = {}
        gate.start_round()
        for side in order:
            if side == "sharded":
                gated: Gated[Any] = gate.measure(partial(sharded, number))
                trained = gated.value.pop("trained")
                measured.update(gated.value, trained=len(trained))
                rows = rows or train_rows(work, trained)
            elif not rows:
                raise BenchBroken("the bare fits need the train rows of a sharded run first")
            elif side == "bare":
                gated = gate.measure(partial(bare_fits, rows))
                measured.update(bare_fit_seconds=gated.value.wall_seconds, bare_cpu_seconds=gated.value.cpu_seconds)
            else:
                gated = gate.measure(partial(bare_fit_wall_parallel, rows, options.workers))
                measured["bare_parallel_wall_seconds"] = gated.value
            outside[side], attempts[side] = gated.outside_cores, gated.attempts
        measured.update(outside_cores=outside, attempts=attempts, load_average_end=os.getloadavg())
        measured.update(overhead_ratios(measured, options.workers))
        rounds.append(measured)
        log(
            f"overhead round {number}: sharded {measured['sharded_wall_seconds']:.1f} s vs ceiling "
            f"{measured['ceiling_seconds']:.1f} s = {measured['ratio']:.2f}; bare fits in {options.workers} "
            f"processes {measured['bare_parallel_wall_seconds']:.1f} s = {measured['ratio_to_parallel']:.2f}; "
            f"CPU {measured['cpu_ratio']:.2f}; load {measured['load_average_start'][0]:.2f} → "
            f"{measured['load_average_end'][0]:.2f}; neighbours "
            + ", ".join(f"{side} {outside[side]:.2f} cores ({attempts[side]} runs)" for side in order)
        )
    return {
        "segments": config.segments,
        "rows": config.rows,
        "workers": options.workers,
        "train_rows_per_segment": sum(len(block) for block in rows.values()) / max(1, len(rows)),
        "command": command_text(argv),
        "rounds": rounds,
        "quiet": gate.summary(),
        "median_ratio": statistics.median(r["ratio"] for r in rounds),
        "median_ratio_to_parallel": statistics.median(r["ratio_to_parallel"] for r in rounds),
        "median_cpu_ratio": statistics.median(r["cpu_ratio"] for r in rounds),
    }


def overhead_ratios(measured: Mapping[str, Any], workers: int) -> dict[str, float]:
    """One round's ceiling (bare Σ ÷ workers) and the sharded run's ratios to it, to the parallel fits, in CPU."""
    ceiling = measured["bare_fit_seconds"] / workers
    return {
        "ceiling_seconds": ceiling,
        "ratio": measured["sharded_wall_seconds"] / ceiling,
        "ratio_to_parallel": measured["sharded_wall_seconds"] / measured["bare_parallel_wall_seconds"],
        "cpu_ratio": measured["sharded_cpu_seconds"] / measured["bare_cpu_seconds"],
    }


# --------------------------------------------------------------------------- 3. validation of a large file


def validation_run(options: Options) -> dict[str, Any]:
    config = data.FileConfig(options.validation_segments, options.validation_rows)
    started = time.perf_counter()
    path = data.ensure_file(config, options.data_dir)
    generate_seconds = time.perf_counter() - started
    argv = training_argv(path, data.mapping_args(), options.work_dir / "validation-training", "--validate-only")
    log(f"validation: {config.segments * config.rows:,} rows, {config.segments:,} segments ({path.name})")
    run = run_cli(argv, cli_environment(), options.logs / "validation.log")
    if run.returncode != 0:
        raise BenchBroken(f"validation run exited {run.returncode}; see {run.log_path}")
    segments = run.report.get("validation", {}).get("segments", [])
    return {
        "segments": config.segments,
        "rows": config.segments * config.rows,
        "file_bytes": path.stat().st_size,
        "generate_seconds": generate_seconds,
        "ok_segments": sum(s["status"] == "ok" for s in segments),
        "cli": _cli_json(run),
    }


# --------------------------------------------------------------------------- main


def run_overhead_only(options: Options) -> dict[str, Any]:
    """Measure the training overhead again; the other sections are kept from the last results file, if any."""
    results: dict[str, Any] = json.loads(options.json_path.read_text()) if options.json_path.is_file() else {}
    started = time.perf_counter()
    load_start = os.getloadavg()
    options.work_dir.mkdir(parents=True, exist_ok=True)
    overhead = training_overhead(options)
    overhead.update(date=time.strftime("%Y-%m-%d %H:%M"), load_average_start=load_start,
                    load_average_end=os.getloadavg(), wall_seconds=time.perf_counter() - started)  # fmt: skip
    if not results:
        results = {"date": overhead["date"], "cpus": os.cpu_count(), "python": platform.python_version(),
                   "options": {k: str(v) for k, v in asdict(options).items()}, "load_average_start": load_start,
                   "load_average_end": os.getloadavg(), "wall_seconds": overhead["wall_seconds"]}  # fmt: skip
    results["overhead"] = overhead
    return results


def run(options: Options) -> dict[str, Any]:
    if options.overhead_only:
        return run_overhead_only(options)
    started = time.perf_counter()
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "options": {k: str(v) for k, v in asdict(options).items()},
        "load_average_start": os.getloadavg(),
    }
    options.work_dir.mkdir(parents=True, exist_ok=True)
    # The quiet measurements first, then the one that needs the whole stack up.
    if options.validation_run:
        results["validation"] = validation_run(options)
    results["overhead"] = training_overhead(options)
    results["end_to_end"] = end_to_end(options)
    results["load_average_end"] = os.getloadavg()
    results["wall_seconds"] = time.perf_counter() - started
    return results


def parse_args(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--segments", type=int, default=Options.segments, help="end to end: segments")
    parser.add_argument("--rows", type=int, default=Options.rows, help="end to end: rows per segment")
    parser.add_argument("--rounds", type=int, default=Options.rounds, help="training-overhead rounds (a/b alternate)")
    parser.add_argument("--workers", type=int, default=Options.workers, help="training workers (default: CPUs)")
    parser.add_argument("--clients", type=int, default=Options.clients, help="concurrent HTTP clients")
    parser.add_argument("--quick", action="store_true", help="smoke run: 50 × 200 end to end, 1e5-row validation")
    parser.add_argument("--skip-validation-run", action="store_true", help="skip the 1,000,000-row validation")
    parser.add_argument(
        "--overhead-only",
        action="store_true",
        help="measure only the training overhead; keep the other sections of the results file (--json)",
    )
    add_quiet_arguments(parser, runs="overhead rounds", when_zero="no redoing")
    parser.add_argument("--docs", type=Path, default=None, help="markdown file to write the section into")
    parser.add_argument("--json", type=Path, default=None, help="results file (default build/bench/…json)")
    parser.add_argument(
        "--from-json", type=Path, default=None, help="measure nothing: rewrite --docs from a saved results file"
    )
    args = parser.parse_args(argv)
    options = Options(
        segments=args.segments,
        rows=args.rows,
        rounds=args.rounds,
        workers=args.workers,
        clients=args.clients,
        validation_run=not args.skip_validation_run,
        from_json=args.from_json,
        overhead_only=args.overhead_only,
        quiet=quiet_from_arguments(args),
    )
    if args.quick:
        quick_dir = REPO_ROOT / "build" / "bench" / "segments-quick"
        options = replace(
            options,
            segments=50,
            rows=200,
            overhead_segments=20,
            overhead_rows=200,
            rounds=2,
            validation_segments=100,
            validation_rows=1_000,
            promote_timeout=120.0,
            work_dir=quick_dir,
            json_path=quick_dir / "segments_scale.json",
            docs=quick_dir / "benchmarks.md",
            quick=True,
        )
    return replace(options, docs=args.docs or options.docs, json_path=args.json or options.json_path)


def measure(options: Options, argv: Sequence[str] | None) -> dict[str, Any] | None:
    """Run every measurement and save the results; None when the run itself broke (said on stderr)."""
    try:
        results = run(options)
    except BenchBroken as error:
        print(f"bench broken: {error}", file=sys.stderr)
        return None
    except Exception:
        traceback.print_exc()
        return None
    args = sys.argv[1:] if argv is None else list(argv)
    command = command_text(["python", "bench/segments_scale.py", *args])
    if options.overhead_only:
        results["overhead"]["bench_command"] = command
    else:
        results["bench_command"] = command
    results["targets"] = evaluate_targets(results)
    options.json_path.parent.mkdir(parents=True, exist_ok=True)
    options.json_path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    return results


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    if options.from_json is not None:
        results: dict[str, Any] | None = json.loads(options.from_json.read_text())
    else:
        results = measure(options, argv)
    if results is None:
        return 1
    results["targets"] = evaluate_targets(results)
    write_section(options.docs, results)
    for target in results["targets"]:
        verdict = "MET    " if target["met"] else "NOT MET" if target["met"] is False else "N/A    "
        print(f"{verdict} {target['name']}: {target['measured']}")
    print(f"report: {os.path.relpath(options.docs, Path.cwd())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
