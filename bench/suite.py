"""``make bench``: the endpoint against its ceiling and its peers in one run, plus cold loads and scale.

One local stack (``python -m local.stack``) provides moto S3, the model-sync path and the HTTP API;
the 10 notebook cities are trained and published through ``training.jobs`` and promoted by model-sync,
whatever model format that produces. Then, every server running at once and measured interleaved
(round-robin rounds, median of ``--rounds``) with ``wrk -t1 -c50``, one CSV row per request over the
10 warm city models:

* the ceiling: bare Starlette on uvicorn + httptools + uvloop, and on uvicorn + h11 + asyncio;
* this project's endpoint (``python -m endpoint``; also 10- and 100-row requests, for rows/s);
* a Starlette + scikit-learn ``predict`` server; Seldon MLServer (own venv) inline + adaptive
  batching and with 2 parallel workers (joblib models trained here from ``training.data``);
* the HTTP API path: local HTTP API → router → endpoint, one house per request.

Every server's answers are checked against the expected prices before and after its load. Then cold
loads over ``--cold-models`` models and the scale run (``--scale-models`` models, Zipf(1.1) traffic,
a memory budget, RSS sampled). The existing bench scripts run last. Writes docs/benchmarks.md with
charts under docs/benchmarks/, and build/bench/results.json. Exit status: 0 when the run completed
(targets met or not: misses are reported), 1 when the run itself broke.

    .venv/bin/python bench/suite.py --mlserver build/bench/mlserver-venv/bin/mlserver
    .venv/bin/python bench/suite.py --quick      # a smoke run: short rounds, fewer models
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tarfile
import time
import traceback
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.processes import BenchBroken
from bench.suite_config import Options, log
from bench.suite_scale import cold_loads, scale_run
from bench.suite_scripts import legacy_scripts
from bench.suite_stack import Stack, build_samples, train_and_publish
from bench.suite_targets import build_targets, measure_throughput, start_servers


def run(options: Options) -> dict[str, Any]:
    results: dict[str, Any] = {
        "options": {k: str(v) for k, v in asdict(options).items()},
        "skipped": [],
        "load_average_start": os.getloadavg(),
    }
    started = time.perf_counter()
    options.work_dir.mkdir(parents=True, exist_ok=True)
    with Stack(options.work_dir / "stack") as stack:
        log(f"local stack up: API {stack.info['api_url']}")
        models = train_and_publish(stack, options.work_dir)
        log(f"{len(models)} cities trained, published and promoted")
        samples = build_samples(models, options.work_dir)
        results["format"] = model_format(next(iter(models.values())).artifact)
        servers, skipped = start_servers(stack, models, options)
        results["skipped"] += skipped
        try:
            targets = build_targets(stack, servers, models, samples)
            log(f"servers up: {', '.join(servers)}; {options.rounds} rounds of {len(targets)} configurations")
            results["throughput"] = measure_throughput(targets, options)
        finally:
            for server in servers.values():
                server.stop()
        log("cold loads")
        results["cold"] = cold_loads(stack, models, samples, options)
        log(f"scale run: {options.scale_models:,} models, {options.scale_seconds:.0f} s")
        results["scale"] = scale_run(stack, models, samples, options)
    if options.legacy:
        results["legacy"] = legacy_scripts(options.work_dir)
    results["wall_seconds"] = time.perf_counter() - started
    results["load_average_end"] = os.getloadavg()
    return results


def model_format(artifact: Path) -> str:
    with tarfile.open(artifact) as archive:
        return ", ".join(sorted(archive.getnames()))


def parse_args(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0, help="wrk duration per configuration and round")
    parser.add_argument("--cold-models", type=int, default=100)
    parser.add_argument("--scale-models", type=int, default=10_000)
    parser.add_argument("--scale-seconds", type=float, default=60.0)
    parser.add_argument("--mlserver", type=Path, help="the mlserver executable of its own venv")
    parser.add_argument("--no-legacy", action="store_true", help="skip the older single-client scripts")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 round of 2 s, 20 cold, 500 scale models")
    parser.add_argument("--docs", type=Path, default=Options.docs, help="report path (charts go beside it)")
    parser.add_argument(
        "--endpoint-arg", action="append", default=[], help="extra option for every `python -m endpoint` (repeatable)"
    )
    args = parser.parse_args(argv)
    options = Options(
        rounds=args.rounds,
        seconds=args.seconds,
        cold_models=args.cold_models,
        scale_models=args.scale_models,
        scale_seconds=args.scale_seconds,
        mlserver=args.mlserver.resolve() if args.mlserver else None,
        legacy=not args.no_legacy,
        docs=args.docs,
        endpoint_args=tuple(args.endpoint_arg),
    )
    if args.quick:
        options = Options(
            **{
                **asdict(options),
                "rounds": 1,
                "seconds": 2.0,
                "warmup_seconds": 1.0,
                "cold_models": 20,
                "scale_models": 500,
                "scale_seconds": 10.0,
            }
        )
    return options


def main(argv: Sequence[str] | None = None) -> int:
    from bench.report import evaluate_targets, write_report

    options = parse_args(argv)
    try:
        results = run(options)
    except BenchBroken as error:
        print(f"bench broken: {error}", file=sys.stderr)
        return 1
    except Exception:
        traceback.print_exc()
        return 1
    results["targets"] = evaluate_targets(results)
    (options.work_dir / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    write_report(results, options.docs)
    for target in results["targets"]:
        verdict = "MET    " if target["met"] else "NOT MET" if target["met"] is False else "N/A    "
        print(f"{verdict} {target['name']}: {target['measured']}")
    print(f"report: {os.path.relpath(options.docs, Path.cwd())} ({results['wall_seconds']:.0f} s)")
    broken = [item["title"] for item in results.get("legacy", []) if item["broken"]]
    if broken:
        print(f"bench broken: {', '.join(broken)} crashed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
