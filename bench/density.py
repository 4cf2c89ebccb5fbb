"""The density bench: the dense container against the managed scikit-learn image's MMS, interleaved.

The same models (the 10 notebook cities trained once by ``training.local_runs``: packed forests of 100
trees; each server gets its own copies, ``ROOT/{name}/model``) and the same cores for every server:

* ``mms``: MMS 1.1.1 as the scikit-learn image runs it in multi-model mode (``bench/density_servers.py``
  says exactly what runs and how it differs from the image);
* ``container-1w`` and ``container-Nw``: ``python -m container serve`` with 1 and N workers (N = CPUs,
  the container's default);
* ``ceiling-1p`` and ``ceiling-Np``: bench/peers.py's bare Starlette app on uvicorn + httptools + uvloop
  in 1 and N processes (``bench/density_ceiling.py``).

Per server: PSS per loaded model (slope of the process tree's PSS from 1 to 40 models), models per 7 GiB
(ml.m5.large less 1 GiB), ``POST /models`` time, CPU per request over a fixed request count, req/s and
p99 at c8 and c50 with wrk over 10 warm models, one CSV row per request; every answer checked against the
expected price before and after the load. Every wrk run and CPU round goes through the quiet gate of
``bench/density_measure.py``: the machine is shared, so a run during which other tenants took more than a
quarter of a core is redone (within a time budget), and each run's reading is reported. Then the
10,000-model Zipf run through the container alone (``bench/density_zipf.py``). Writes ``--json``
(build/bench/density.json) and the section of ``--docs`` (docs/benchmarks.md) between
``<!-- density:begin -->`` and ``<!-- density:end -->``. Exit status 0 when
the run completed (targets met or not), 1 when it broke.

    .venv/bin/python bench/density.py               # the full run (~7 min on a quiet machine, up to 2 more
                                                    # per round waiting for one; both cores, ~4 GB of copies)
    .venv/bin/python bench/density.py --quick       # smoke run: build/bench/quick/density.{json,md}
    .venv/bin/python bench/density.py --from-json build/bench/density.json   # rewrite the section only

Needs wrk (``make wrk``), Java 17+ and Python 3.12 (pyenv) for the MMS serving stack and the container venv.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import shutil
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bench.density_client import check_answers
from bench.density_measure import (
    MIB,
    Quiet,
    QuietGate,
    Ramp,
    Subject,
    cpu_round,
    ramp,
    wrk_round,
)
from bench.density_models import City, ceiling_requests, invoke_requests, lay_out, model_url, train_cities
from bench.density_report import MMS, evaluate_targets, write_section
from bench.density_servers import (
    ceiling_server,
    container_python,
    container_server,
    mms_python,
    mms_server,
)
from bench.density_zipf import ZipfSpec, zipf_run
from bench.peers import CEILING_BODY
from bench.processes import REPO_ROOT, BenchBroken, exit_on_termination
from bench.quiet import add_quiet_arguments, quiet_from_arguments
from bench.wrk_runs import write_lua_requests

GIB = 1024 * MIB
# ml.m5.large (8 GiB) less 1 GiB for the OS, SageMaker's agents and the server itself: ops/serving_figures.json
# plans with the same figures (tests/unit/test_shared_facts.py ties them).
BUDGET_BYTES = 7 * GIB


@dataclass(frozen=True)
class Options:
    work: Path
    json_path: Path
    docs: Path
    workers: int
    rounds: int
    seconds: float
    connections: tuple[int, ...]
    stages: tuple[int, ...]
    warm: int
    houses: int
    cpu_requests: int
    zipf: ZipfSpec | None
    quick: bool
    keep_work: bool
    argv: tuple[str, ...]
    from_json: Path | None = None
    quiet: Quiet = field(default_factory=Quiet)

    @property
    def models(self) -> int:
        return self.stages[-1]


def log(message: str) -> None:
    print(f"[density {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- the run


def subjects_for(options: Options, cities: Sequence[City], mms: Path, container: Path) -> list[Subject]:
    names = [f"model-{index:03d}" for index in range(options.models)]
    logs = options.work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    subjects = []

    def model_subject(key: str, label: str, workers: int, make: Callable[[Path], Any]) -> Subject:
        root = options.work / "models" / key
        served = lay_out(root, names, cities)
        requests, expected = invoke_requests({name: served[name] for name in names[: options.warm]})
        return Subject(key, label, make(root), workers, requests, list(expected), models=served, model_root=root)

    subjects.append(
        model_subject(
            MMS,
            "MMS 1.1.1 (scikit-learn image, 1 worker per model)",
            1,
            lambda root: mms_server(mms, options.work / "mms", cpus=options.workers, log_path=logs / "mms.log"),
        )
    )
    for workers in sorted({1, options.workers}):
        subjects.append(
            model_subject(
                f"container-{workers}w",
                f"dense container, {workers} worker{'s' if workers > 1 else ''}",
                workers,
                lambda root, workers=workers: container_server(  # type: ignore[misc]
                    container,
                    workers=workers,
                    model_root=root,
                    budget_bytes=BUDGET_BYTES,
                    log_path=logs / f"container-{workers}w.log",
                ),
            )
        )
    warm = {name: cities[index % len(cities)] for index, name in enumerate(names[: options.warm])}
    for workers in sorted({1, options.workers}):
        requests = ceiling_requests(warm)
        server = ceiling_server(container, workers=workers, log_path=logs / f"ceiling-{workers}p.log")
        label = f"ceiling: Starlette, uvicorn httptools+uvloop, {workers} process{'es' if workers > 1 else ''}"
        subjects.append(
            Subject(f"ceiling-{workers}p", label, server, workers, requests, [CEILING_BODY] * len(requests))
        )
    for subject in subjects:
        subject.requests_file = write_lua_requests(options.work / f"{subject.key}.lua", subject.requests)
    return subjects


def check(subject: Subject) -> int:
    return check_answers(subject.server.url, subject.requests, subject.expected, what=subject.label)


def rotated(items: Sequence[Subject], by: int) -> list[Subject]:
    """A different server goes first in each round, so none always runs right after the same one."""
    by %= len(items)
    return [*items[by:], *items[:by]]


def measure_rounds(
    subjects: Sequence[Subject], options: Options, gate: QuietGate | None = None
) -> dict[str, dict[str, Any]]:
    samples: dict[str, dict[str, Any]] = {
        s.key: {"wrk": {str(c): [] for c in options.connections}, "cpu": []} for s in subjects
    }
    # One unrecorded run each first: MMS's JVM compiles its hot paths in the first thousands of requests.
    for subject in subjects:
        wrk_round(subject, seconds=options.seconds, connections=8)
    for index in range(options.rounds):
        if gate is not None:
            gate.start_round()
        for connections in options.connections:
            for subject in rotated(subjects, index):
                sample = wrk_round(subject, seconds=options.seconds, connections=connections, gate=gate)
                samples[subject.key]["wrk"][str(connections)].append(sample)
        for subject in rotated(subjects, index):
            cpu = cpu_round(subject, count=options.cpu_requests, connections=8, gate=gate)
            samples[subject.key]["cpu"].append(cpu)
        log(
            f"round {index + 1}/{options.rounds}: "
            + ", ".join(f"{s.key} {samples[s.key]['wrk']['8'][-1].rps:,.0f}" for s in subjects)
            + " req/s at c8"
            + (f"; neighbours' CPU {gate.spent_seconds:.0f} s waited/redone so far" if gate is not None else "")
        )
    return samples


def all_server_pids(subjects: Sequence[Subject]) -> Callable[[], list[int]]:
    """Every process the bench runs as a server (the measured one and the idle ones): not a neighbour's."""
    return lambda: [pid for subject in subjects for pid in subject.server.pids]


def per_round_ratio(numerator: Sequence[float], denominator: Sequence[float]) -> float:
    return statistics.median(n / d for n, d in zip(numerator, denominator, strict=True) if d > 0)


def summarise(
    subjects: Sequence[Subject],
    samples: dict[str, dict[str, Any]],
    ramps: dict[str, Ramp],
    checked: dict[str, dict[str, int]],
    processes: dict[str, int],
    options: Options,
) -> tuple[dict[str, Any], dict[str, Any]]:
    servers: dict[str, Any] = {}
    for subject in subjects:
        data = samples[subject.key]
        wrk = {}
        for connections, rounds in data["wrk"].items():
            wrk[connections] = {
                "rps": statistics.median(s.rps for s in rounds),
                "p50_ms": statistics.median(s.p50_ms for s in rounds),
                "p99_ms": statistics.median(s.p99_ms for s in rounds),
                "server_cpu_ms_per_request": statistics.median(s.server_cpu_ms_per_request for s in rounds),
                "wrk_cpu_share": max(s.wrk_cpu_share for s in rounds),
                "rounds": [s.rps for s in rounds],
                "outside_cores": [s.outside_cores for s in rounds],
                "attempts": [s.attempts for s in rounds],
            }
        cpu_rounds = [s.ms_per_request for s in data["cpu"]]
        cpu_outside = [s.outside_cores for s in data["cpu"]]
        servers[subject.key] = {
            "label": subject.label,
            "workers": subject.workers,
            "processes": processes[subject.key],
            "memory": ramps[subject.key].summary(BUDGET_BYTES) if subject.key in ramps else None,
            "cpu_ms_per_request": statistics.median(cpu_rounds),
            "cpu_rounds_ms": cpu_rounds,
            "cpu_rounds_outside_cores": cpu_outside,
            "wrk": wrk,
            "answers_checked": checked[subject.key],
        }

    def rounds_of(key: str, connections: str) -> list[float]:
        return list(servers[key]["wrk"][connections]["rounds"])

    default, ceiling = f"container-{options.workers}w", f"ceiling-{options.workers}p"
    x_ceiling = {}
    for subject in subjects:
        if subject.key.startswith("ceiling"):
            continue
        matching = f"ceiling-{subject.workers}p" if subject.key.startswith("container") else ceiling
        x_ceiling[subject.key] = {
            c: per_round_ratio(rounds_of(subject.key, c), rounds_of(matching, c)) for c in servers[subject.key]["wrk"]
        }
    ratios = {
        "x_ceiling": x_ceiling,
        "cpu_vs_mms": per_round_ratio(servers[default]["cpu_rounds_ms"], servers[MMS]["cpu_rounds_ms"]),
        "rps_vs_mms_c8": per_round_ratio(rounds_of(default, "8"), rounds_of(MMS, "8")),
        "rps_vs_mms_c50": per_round_ratio(rounds_of(default, "50"), rounds_of(MMS, "50")),
    }
    return servers, ratios


def java_command(server_pids: Sequence[int]) -> str | None:
    """The MMS frontend's exact command line, read back from /proc (what the launcher really ran)."""
    for pid in server_pids:
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and Path(argv[0].decode()).name == "java":
            return " ".join(arg.decode() for arg in argv if arg)
    return None


def shorten(text: str) -> str:
    """Paths in the repository written from its root, so the docs hold no machine's home."""
    return text.replace(str(REPO_ROOT), "<repo>")


def run_zipf(options: Options, cities: Sequence[City], python: Path) -> dict[str, Any] | None:
    spec = options.zipf
    if spec is None:
        return None
    root = options.work / "zipf-models"
    names = [f"zipf-{index:05d}" for index in range(spec.models)]
    started = time.monotonic()
    served = lay_out(root, names, cities)
    log(f"zipf: {spec.models:,} model directories written in {time.monotonic() - started:.0f} s")
    server = container_server(
        python,
        workers=options.workers,
        model_root=root,
        budget_bytes=spec.budget_bytes,
        log_path=options.work / "logs" / "container-zipf.log",
        name="container-zipf",
    )
    try:
        server.start().wait_ready()
        result = zipf_run(
            server,
            spec,
            names,
            [model_url(root, name) for name in names],
            [served[name].houses[0].encode() for name in names],
            [served[name].prices[0] for name in names],
        )
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
    log(
        f"zipf: {result['requests']:,} requests, {result['errors']} errors, {result['loads']:,} loads, "
        f"peak PSS {result['peak_pss_mib']:.0f} MiB (limit {result['pss_limit_mib']:.0f})"
    )
    return result


def run(options: Options) -> dict[str, Any]:
    started = time.monotonic()
    load_start = os.getloadavg()
    shutil.rmtree(options.work, ignore_errors=True)
    options.work.mkdir(parents=True)
    from house_prices import schema

    log("training the 10 notebook cities (training.local_runs)")
    cities = train_cities(options.work, schema.NOTEBOOK_CITIES, options.houses)
    mms, container = mms_python(), container_python()
    subjects = subjects_for(options, cities, mms, container)
    # Every wrk run goes through the same gate (bench/density_measure.py: the machine is shared).
    gate = QuietGate(options.quiet, all_server_pids(subjects)) if options.quiet.budget_seconds > 0 else None
    try:
        for subject in subjects:
            subject.server.start()
        for subject in subjects:
            subject.server.wait_ready()
        log(f"servers up: {', '.join(s.key for s in subjects)}; ramp {options.stages}")
        ramps = ramp(subjects, options.stages, log)
        processes = {s.key: len(s.server.pids) for s in subjects}
        java = java_command(subjects[0].server.pids)
        checked = {s.key: {"before": check(s)} for s in subjects}
        samples = measure_rounds(subjects, options, gate)
        for subject in subjects:
            checked[subject.key]["after"] = check(subject)
    finally:
        for subject in subjects:
            subject.server.stop()
    servers, ratios = summarise(subjects, samples, ramps, checked, processes, options)
    zipf = run_zipf(options, cities, container)
    results: dict[str, Any] = {
        "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "load_average": {"start": load_start, "end": os.getloadavg()},
        "duration_seconds": time.monotonic() - started,
        "config": {
            "quick": options.quick,
            "workers": options.workers,
            "rounds": options.rounds,
            "seconds": options.seconds,
            "connections": list(options.connections),
            "stages": list(options.stages),
            "warm_models": options.warm,
            "houses_per_model": options.houses,
            "cpu_requests": options.cpu_requests,
            "budget_bytes": BUDGET_BYTES,
            "quiet": dataclasses.asdict(options.quiet),
        },
        "models": {
            "cities": [city.name for city in cities],
            "artifact_members_bytes": {city.name: city.forest_bytes for city in cities},
        },
        "container_default": f"container-{options.workers}w",
        "ceiling_default": f"ceiling-{options.workers}p",
        "servers": servers,
        "ratios": ratios,
        "quiet_gate": gate.summary() if gate is not None else None,
        "zipf": zipf,
        "mms_java_command": shorten(java) if java else None,
        "server_commands": {s.key: shorten(" ".join(s.server.argv)) for s in subjects},
        "commands": [f".venv/bin/python bench/density.py {' '.join(options.argv)}".rstrip()],
    }
    results["notes"] = notes(results)
    results["targets"] = evaluate_targets(results)
    return results


def notes(results: dict[str, Any]) -> list[str]:
    workers = results["config"]["workers"]
    stages = results["config"]["stages"]
    return [
        "MMS: what the scikit-learn image (`1.4-2-py312`) runs in multi-model mode, from its own serving stack "
        "(Python 3.12, numpy 2.1.0, sagemaker-inference 1.2.0, multi-model-server 1.1.1): `mxnet-model-server --start "
        "--foreground --mms-config config.properties --log-config sagemaker_inference/etc/log4j.properties` with the "
        "image's `config.properties` and `SAGEMAKER_*` defaults (`default_workers_per_model=1`, 172 MiB heap), handler "
        "`sagemaker_sklearn_container.handler_service` (vendored) with the image's decoder patch, "
        "`training/inference.py` as `SAGEMAKER_PROGRAM`. The frontend it started: "
        f"`{results['mms_java_command']}`. Deviations: Java 17 (the image has Java 8; `-XX:+UseParNewGC` left out, "
        "Java 17 refuses it), `--foreground` (keeps the frontend in the measured tree), no `endpoints-1.0.jar` plugin "
        "(it only adds `GET /execution-parameters`).",
        'Models are registered as SageMaker does (`POST /models` with the JSON body `{"model_name", "url"}`, which '
        "MMS answers once the model's worker is up: `initial_workers` = `default_workers_per_model` = 1, synchronous) "
        "and invoked at `POST /models/{name}/invoke`, the route SageMaker calls and MMS 1.1.1 serves itself "
        "(`InferenceRequestHandler.handleInvocations`). Each MMS model is a backend process and the process it forks "
        "for the frontend's connection.",
        f"Dense container: `python -m container serve --workers 1|{workers} --memory-budget-bytes 7 GiB` with "
        "build/container-venv's Python (the image's pinned requirements) and the image's environment "
        "(`MALLOC_ARENA_MAX=2`).",
        f"PSS: the whole process tree from `/proc/PID/smaps_rollup` after {', '.join(map(str, stages))} models, each "
        "model invoked first (over fresh connections where there are several workers, so every worker has mapped "
        "it); per model = least-squares slope; models in 7 GiB = (7 GiB − PSS empty) / per model. `POST /models`: "
        "client-side wall time of each load (model files on disk). CPU per request: utime + stime of the tree from "
        f"`/proc` over exactly {results['config']['cpu_requests']:,} requests at 8 connections. wrk: `-t1`, "
        f"{results['config']['seconds']:g} s per run, one CSV row per request over {results['config']['warm_models']} "
        "warm models, after one unrecorded warm-up run per server; medians of the rounds; ratios are medians of "
        "per-round ratios. Ceiling ratios compare a "
        "container with the ceiling of as many processes, MMS with the N-process ceiling.",
    ]


# --------------------------------------------------------------------------- command line


def parse_args(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=REPO_ROOT / "build" / "bench" / "density")
    parser.add_argument("--json", type=Path, dest="json_path")
    parser.add_argument("--docs", type=Path)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="the container's default: CPUs")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--stages", type=int, nargs="+", default=[1, 10, 20, 30, 40])
    parser.add_argument("--warm", type=int, default=10)
    parser.add_argument("--houses", type=int, default=10, help="distinct houses (requests) per warm model")
    parser.add_argument("--cpu-requests", type=int, default=4000)
    parser.add_argument("--zipf-models", type=int, default=10_000)
    parser.add_argument("--zipf-requests", type=int, default=40_000)
    parser.add_argument("--zipf-seconds", type=float, default=120.0)
    parser.add_argument("--zipf-connections", type=int, default=8)
    parser.add_argument("--zipf-budget-mib", type=int, default=512)
    parser.add_argument("--no-zipf", action="store_true")
    add_quiet_arguments(parser, runs="wrk runs and CPU rounds", when_zero="no gate")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 short round, 10 models, 300 for Zipf")
    parser.add_argument("--keep-work", action="store_true", help="keep the model copies and logs under --work")
    parser.add_argument("--from-json", type=Path, help="measure nothing: rewrite the section from this results file")
    args = parser.parse_args(argv)
    quick_dir = REPO_ROOT / "build" / "bench" / "quick"
    options = Options(
        work=args.work,
        json_path=args.json_path
        or (quick_dir / "density.json" if args.quick else REPO_ROOT / "build/bench/density.json"),
        docs=args.docs or (quick_dir / "density.md" if args.quick else REPO_ROOT / "docs" / "benchmarks.md"),
        workers=args.workers,
        rounds=args.rounds,
        seconds=args.seconds,
        connections=(8, 50),
        stages=tuple(sorted(set(args.stages))),
        warm=args.warm,
        houses=args.houses,
        cpu_requests=args.cpu_requests,
        zipf=None
        if args.no_zipf
        else ZipfSpec(
            models=args.zipf_models,
            requests=args.zipf_requests,
            seconds=args.zipf_seconds,
            connections=args.zipf_connections,
            budget_bytes=args.zipf_budget_mib * MIB,
        ),
        quick=args.quick,
        keep_work=args.keep_work,
        argv=tuple(sys.argv[1:] if argv is None else argv),
        from_json=args.from_json,
        quiet=quiet_from_arguments(args),
    )
    if args.quick:
        options = replace(
            options,
            rounds=1,
            seconds=2.0,
            stages=(1, 5, 10),
            houses=3,
            cpu_requests=500,
            zipf=replace(options.zipf, models=300, requests=3_000, seconds=20.0, budget_bytes=64 * MIB)
            if options.zipf
            else None,
        )
    if options.warm > options.models:
        parser.error("--warm cannot exceed the last stage (the models loaded)")
    return options


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    exit_on_termination()
    if options.from_json is not None:
        results = json.loads(options.from_json.read_text())
        results["notes"] = notes(results)
        results["targets"] = evaluate_targets(results)
        write_section(results, results["targets"], options.docs)
        log(f"rewrote the density section of {options.docs} from {options.from_json}")
        return 0
    try:
        results = run(options)
    except (BenchBroken, OSError) as error:
        log(f"the run broke: {error}")
        traceback.print_exc()
        return 1
    finally:
        if not options.keep_work:
            shutil.rmtree(options.work / "models", ignore_errors=True)
            shutil.rmtree(options.work / "zipf-models", ignore_errors=True)
    options.json_path.parent.mkdir(parents=True, exist_ok=True)
    options.json_path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    write_section(results, results["targets"], options.docs)
    log(f"wrote {options.json_path} and the density section of {options.docs}")
    for row in results["targets"]:
        log(f"  {row['result']:>13}  {row['target']}: {row['measured']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
