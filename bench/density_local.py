"""Dense serving through the local SageMaker side: the InvokeEndpoint path against its ceiling, and 10,000 models.

The two local density targets, measured on ``python -m endpoint --serving dense`` (the SageMaker side,
which starts ``python -m container serve``, the image's command, as SageMaker starts the image), with
moto S3 in its own process:

* **throughput**: InvokeEndpoint, one CSV row, cycling over 10 warm notebook-sized models (100 trees,
  ``testkit.models.bench_model``, served by ``training/inference.py`` in the container), under
  ``wrk -t1`` at 8 and 50 connections, interleaved round by round with the bare Starlette ceiling of
  ``bench/peers.py`` (uvicorn + httptools + uvloop, one process); the figure per configuration is the
  median round. Target: ≥ 0.25 × the ceiling. CPU per request is split between the SageMaker side and the
  container's processes. Every model's answer is checked before and after.
* **zipf**: ``--models`` copies of those artifacts, Zipf(1.1) traffic over 8 keep-alive connections for
  ``--zipf-seconds``, the container's memory budget ``--budget-mib``: each answer checked, RSS and PSS of
  the side + container tree sampled every 0.25 s. Target: 0 errors, peak RSS ≤ RSS at boot + budget + 64 MiB.
  RSS summed over a tree counts a page once per process mapping it (a model memory-mapped by two container
  workers twice), so PSS, which splits shared pages, is judged against the same line beside it.

    .venv/bin/python bench/density_local.py                               # both parts
    .venv/bin/python bench/density_local.py --part throughput --rounds 3 --seconds 5
    .venv/bin/python bench/density_local.py --part zipf --models 10000 --zipf-seconds 60
    .venv/bin/python bench/density_local.py --quick                       # smoke run: 1 round of 2 s, 500 models

Results go to build/bench/density_local.json and a table on stdout. Exit status 0 when the run completed
(targets met or not: each is reported), 1 when the run itself broke.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import math
import shutil
import statistics
import sys
import tarfile
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.histograms import histogram_quantile, percentiles, prometheus_histograms
from bench.peers import TARGET_MODEL_HEADER
from bench.processes import (
    REPO_ROOT,
    BenchBroken,
    MemorySampler,
    Server,
    cpu_seconds,
    exit_on_termination,
    memory_bytes,
    process_tree,
)
from bench.suite_config import BASE_ENV, ENDPOINT_NAME
from bench.suite_scale import _drive
from bench.suite_targets import endpoint_server
from bench.wrk_runs import HttpRequest, run_wrk, write_lua_requests
from bench.zipf import zipf_sequence

BUCKET = "density-local"
WARM_PREFIX = "warm/"
ZIPF_PREFIX = "zipf/"
ROW = "1995,3000,4,2.5,1.0,2"
WARM_MODELS = 10
MiB = 1024 * 1024
TARGET_RATIO = 0.25


def log(message: str) -> None:
    print(f"[density-local {time.strftime('%H:%M:%S')}] {message}", flush=True)


@dataclass(frozen=True)
class Models:
    targets: list[str]  # warm TargetModels under WARM_PREFIX
    keys: list[str]
    expected: list[float]  # training/inference.py's price of ROW per model


def s3(url: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
        config=Config(max_pool_connections=16),
    )


def moto_server(work: Path) -> Server:
    return Server(
        "moto",
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", "{port}"],
        env=BASE_ENV,
        ready_path="/moto-api/",
        log_path=work / "moto.log",
    )


def publish_models(s3_url: str, work: Path) -> Models:
    """10 notebook-sized forests (fitted here) under WARM_PREFIX, and the price inference.py gives ROW with each."""
    from testkit.models import bench_model
    from training import inference

    client = s3(s3_url)
    client.create_bucket(Bucket=BUCKET)
    targets, keys, expected = [], [], []
    for seed in range(WARM_MODELS):
        _, artifact = bench_model(seed)
        target = f"City{seed:02d}.20261207T000000Z-{seed:08x}.tar.gz"
        client.put_object(Bucket=BUCKET, Key=WARM_PREFIX + target, Body=artifact)
        with tempfile.TemporaryDirectory(dir=work) as scratch:
            with tarfile.open(fileobj=io.BytesIO(artifact), mode="r:gz") as archive:
                archive.extractall(scratch, filter="data")
            model = inference.model_fn(scratch)
            expected.append(float(inference.predict_fn(inference.input_fn(ROW, "text/csv"), model)[0]))
        targets.append(target)
        keys.append(WARM_PREFIX + target)
    return Models(targets, keys, expected)


def side_server(name: str, s3_url: str, prefix: str, work: Path, *extra: str) -> Server:
    """The endpoint in dense serving (the SageMaker side, starting the container)."""
    return endpoint_server(name, f"s3://{BUCKET}/{prefix}", s3_url, work, "--serving", "dense", *extra)


def ceiling_server(work: Path) -> Server:
    peers = str(Path(__file__).resolve().parent / "peers.py")
    return Server(
        "ceiling",
        [sys.executable, peers, "ceiling", "--fd", "{fd}", "--http", "httptools", "--loop", "uvloop"],
        cwd=REPO_ROOT,
        log_path=work / "ceiling.log",
    )


def invoke(url: str, target: str) -> float:
    response = httpx.post(
        f"{url}/endpoints/{ENDPOINT_NAME}/invocations",
        content=ROW,
        headers={"Content-Type": "text/csv", TARGET_MODEL_HEADER: target},
        timeout=60,
    )
    if response.status_code != 200:
        raise BenchBroken(f"{target}: HTTP {response.status_code} {response.text[:300]}")
    return float(response.json()[0])


def check_answers(url: str, models: Models) -> None:
    for target, price in zip(models.targets, models.expected, strict=True):
        answered = invoke(url, target)
        if not math.isclose(answered, price, rel_tol=1e-9):
            raise BenchBroken(f"{target}: answered {answered}, inference.py says {price}")


def side_and_container(server: Server) -> tuple[list[int], list[int]]:
    """(the SageMaker side's pid, the container's processes)."""
    assert server.process is not None
    tree = process_tree(server.process.pid)
    return tree[:1], tree[1:]


# --------------------------------------------------------------------------- throughput


def throughput(s3_url: str, models: Models, work: Path, options: argparse.Namespace) -> dict[str, Any]:
    requests = [
        HttpRequest(
            "POST",
            f"/endpoints/{ENDPOINT_NAME}/invocations",
            {"Content-Type": "text/csv", "Accept": "application/json", TARGET_MODEL_HEADER: target},
            ROW,
        )
        for target in models.targets
    ]
    requests_file = write_lua_requests(work / "warm-requests.lua", requests)
    extra = ["--container-workers", str(options.container_workers)] if options.container_workers else []
    side = side_server("side-throughput", s3_url, WARM_PREFIX, work, *extra)
    ceiling = ceiling_server(work)
    servers = {"ceiling": ceiling, "dense": side}
    runs: dict[str, dict[int, list[dict[str, Any]]]] = {name: {c: [] for c in options.connections} for name in servers}
    try:
        for server in servers.values():
            server.start()
        for server in servers.values():
            server.wait_ready()
        check_answers(side.url, models)
        side_pids, container_pids = side_and_container(side)
        log(f"dense: side pid {side_pids}, container pids {container_pids}")
        for server in servers.values():  # warm-up: connections, code paths, each model in each worker
            run_wrk(server.url, requests_file, seconds=options.warmup_seconds, connections=max(options.connections))
        for round_number in range(options.rounds):
            for connections in options.connections:
                for name, server in servers.items():
                    side_pids, container_pids = side_and_container(side)
                    before = (cpu_seconds(side_pids), cpu_seconds(container_pids))

                    def server_pids(server: Server = server) -> list[int]:  # a lambda's type is not inferred
                        return server.pids

                    result = run_wrk(
                        server.url,
                        requests_file,
                        seconds=options.seconds,
                        connections=connections,
                        server_pids=server_pids,
                    )
                    after = (cpu_seconds(side_pids), cpu_seconds(container_pids))
                    if result.errors or result.non_2xx:
                        raise BenchBroken(f"{name} c{connections}: {result.errors} errors, {result.non_2xx} non-2xx")
                    entry = {
                        "rps": result.rps,
                        "p50_ms": result.latency_ms["p50"],
                        "p99_ms": result.latency_ms["p99"],
                        "cpu_ms_per_request": 1000 * result.server_cpu_seconds / max(1, result.requests),
                    }
                    if name == "dense":
                        entry["side_cpu_ms_per_request"] = 1000 * (after[0] - before[0]) / max(1, result.requests)
                        entry["container_cpu_ms_per_request"] = 1000 * (after[1] - before[1]) / max(1, result.requests)
                    runs[name][connections].append(entry)
                    log(
                        f"round {round_number + 1} c{connections} {name}: {entry['rps']:,.0f} req/s, "
                        f"p99 {entry['p99_ms']:.1f} ms, {entry['cpu_ms_per_request']:.3f} ms CPU/request"
                    )
        check_answers(side.url, models)
        workers = len(side_and_container(side)[1])
    finally:
        for server in servers.values():
            server.stop()
    table: dict[str, Any] = {"container_processes": workers, "rounds": options.rounds, "seconds": options.seconds}
    for connections in options.connections:
        medians = {name: _median_round(runs[name][connections]) for name in servers}
        ratio = medians["dense"]["rps"] / medians["ceiling"]["rps"]
        # Each round's dense run against the ceiling run just before it: drift of a shared machine hits both.
        paired = [
            dense["rps"] / ceiling["rps"]
            for dense, ceiling in zip(runs["dense"][connections], runs["ceiling"][connections], strict=True)
        ]
        table[f"c{connections}"] = {
            **medians,
            "ratio": ratio,
            "paired_ratios": paired,
            "paired_ratio_median": statistics.median(paired),
            "target_met": ratio >= TARGET_RATIO,
        }
    return table


def _median_round(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """The round with the median req/s (its other figures with it), and every round's req/s."""
    ordered = sorted(entries, key=lambda entry: entry["rps"])
    return {**ordered[len(ordered) // 2], "rounds_rps": [entry["rps"] for entry in entries]}


# --------------------------------------------------------------------------- zipf


def copy_artifacts(s3_url: str, models: Models, count: int) -> list[str]:
    client = s3(s3_url)
    targets = [f"Zipf{index:05d}.tar.gz" for index in range(count)]

    def copy(index: int) -> None:
        source = models.keys[index % len(models.keys)]
        client.copy_object(
            Bucket=BUCKET, Key=ZIPF_PREFIX + targets[index], CopySource={"Bucket": BUCKET, "Key": source}
        )

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(copy, range(count)))
    return targets


def zipf(s3_url: str, models: Models, work: Path, options: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    targets = copy_artifacts(s3_url, models, options.models)
    log(f"zipf: {len(targets):,} artifacts copied in {time.perf_counter() - started:.1f} s")
    cache_dir = work / "zipf-cache"
    shutil.rmtree(cache_dir, ignore_errors=True)
    budget = options.budget_mib * MiB
    extra = ["--container-workers", str(options.container_workers)] if options.container_workers else []
    side = side_server(
        "side-zipf", s3_url, ZIPF_PREFIX, work, "--max-memory-bytes", str(budget), "--cache-dir", str(cache_dir), *extra
    )
    try:
        side.start().wait_ready()
        assert side.process is not None
        port = int(side.url.rsplit(":", 1)[1])
        raw, expected = [], []
        for index, target in enumerate(targets):
            raw.append(
                (
                    f"POST /endpoints/{ENDPOINT_NAME}/invocations HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                    f"Content-Type: text/csv\r\nAccept: application/json\r\n{TARGET_MODEL_HEADER}: {target}\r\n"
                    f"Content-Length: {len(ROW)}\r\n\r\n{ROW}"
                ).encode()
            )
            expected.append(models.expected[index % len(models.expected)])
        order = zipf_sequence(len(targets), options.zipf_exponent, length=5_000_000)
        time.sleep(1.0)
        boot_rss, boot_pss = memory_bytes(side.pids)
        workers = len(side.pids) - 1
        cpu_before = cpu_seconds(side.pids)
        with MemorySampler(side.process.pid, interval=0.25) as sampler:
            records = asyncio.run(_drive(port, raw, expected, order, options.zipf_connections, options.zipf_seconds))
            time.sleep(1.0)
        server_cpu = cpu_seconds(side.pids) - cpu_before
        end_rss, end_pss = memory_bytes(side.pids)
        metrics = httpx.get(f"{side.url}/metrics", timeout=10).text
    finally:
        side.stop()
        shutil.rmtree(cache_dir, ignore_errors=True)  # a model directory per model touched: gigabytes
    duration = max(r.started + r.latency_ms / 1000 for r in records) if records else options.zipf_seconds
    ok = [r for r in records if r.status == 200 and r.correct]
    peak_rss = max((sample[1] for sample in sampler.samples), default=0)
    peak_pss = max((sample[2] for sample in sampler.samples), default=0)
    limit = boot_rss + budget + 64 * MiB
    first = [r.latency_ms for r in records if r.first_touch]
    return {
        "models": len(targets),
        "container_processes": workers,
        "connections": options.zipf_connections,
        "seconds": duration,
        "requests": len(records),
        "errors": len(records) - len(ok),
        "error_statuses": sorted({r.status for r in records if r.status != 200}),
        "rps": len(records) / duration if duration else 0.0,
        "latency_ms": percentiles([r.latency_ms for r in records], (50, 90, 99)),
        "first_touch_ms": {**percentiles(first, (50, 90, 99)), "count": len(first)},
        "budget_bytes": budget,
        "boot_rss": boot_rss,
        "boot_pss": boot_pss,
        "peak_rss": peak_rss,
        "peak_pss": peak_pss,
        "end_rss": end_rss,
        "end_pss": end_pss,
        "rss_limit": limit,
        "pss_limit": boot_pss + budget + 64 * MiB,
        "server_cpu_per_second": server_cpu / duration if duration else 0.0,
        "metrics": {name: _metric(metrics, name) for name in _ZIPF_METRICS},
        # mean/p50/p99 ms of each part of a miss, from the side's histograms (ModelLoadingTime is LoadModel,
        # 507s and the unloads they caused included; ModelLoadingWaitTime what a missing request waited in all)
        "miss_phases_ms": {
            name: {
                "count": entry["count"],
                "mean": entry["sum"] / entry["count"] * 1000,
                "p50": histogram_quantile(entry["buckets"], 0.5) * 1000,
                "p99": histogram_quantile(entry["buckets"], 0.99) * 1000,
            }
            for name, entry in prometheus_histograms(metrics).items()
            if name.startswith("Model") and entry["count"]
        },
        "target_met": len(records) == len(ok) and bool(records) and peak_rss <= limit,
        # RSS summed over several processes counts a page every worker maps once per worker (a model memory-mapped
        # by two container workers twice); PSS splits it, so this is the machine's memory the tree holds.
        "pss_target_met": len(records) == len(ok) and bool(records) and peak_pss <= boot_pss + budget + 64 * MiB,
    }


_ZIPF_METRICS = (
    "endpoint_model_loads_total",
    "endpoint_model_unloads_total",
    "endpoint_model_downloads_total",
    "LoadedModelCount",
    "ContainerMemoryBytes",
    "ModelCacheHit_sum",
    "ModelCacheHit_count",
)


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return float("nan")


# --------------------------------------------------------------------------- report


def report(results: dict[str, Any]) -> None:
    if "throughput" in results:
        table = results["throughput"]
        print(
            "\nInvokeEndpoint through the SageMaker side + container "
            f"({table['container_processes']} container processes)"
        )
        print(f"{'':<10}{'ceiling req/s':>15}{'dense req/s':>13}{'× ceiling':>11}{'dense p99 ms':>14}"
              f"{'side CPU ms':>13}{'container CPU ms':>18}")  # fmt: skip
        for key, row in table.items():
            if not key.startswith("c"):
                continue
            if not isinstance(row, dict):
                continue
            dense = row["dense"]
            print(
                f"{key:<10}{row['ceiling']['rps']:>15,.0f}{dense['rps']:>13,.0f}{row['ratio']:>11.2f}"
                f"{dense['p99_ms']:>14.1f}{dense['side_cpu_ms_per_request']:>13.3f}"
                f"{dense['container_cpu_ms_per_request']:>18.3f}"
                f"   target ≥ {TARGET_RATIO}: {'met' if row['target_met'] else 'NOT met'}"
                f" (per round: {', '.join(f'{value:.2f}' for value in row['paired_ratios'])})"
            )
    if "zipf" in results:
        z = results["zipf"]
        print(
            f"\nZipf over {z['models']:,} models, c{z['connections']}, {z['seconds']:.0f} s, "
            f"budget {z['budget_bytes'] / MiB:.0f} MiB, {z['container_processes']} container processes"
        )
        print(
            f"  {z['requests']:,} requests ({z['rps']:,.0f}/s), {z['errors']} errors {z['error_statuses']}, "
            f"p50 {z['latency_ms']['p50']:.1f} / p99 {z['latency_ms']['p99']:.1f} ms, "
            f"first touch p50 {z['first_touch_ms']['p50']:.1f} ms ({z['first_touch_ms']['count']:,} models)"
        )
        print(
            f"  RSS boot {z['boot_rss'] / MiB:.0f} MiB, peak {z['peak_rss'] / MiB:.0f} MiB (limit boot + budget + 64 = "
            f"{z['rss_limit'] / MiB:.0f} MiB); PSS boot {z['boot_pss'] / MiB:.0f}, peak {z['peak_pss'] / MiB:.0f} MiB"
            f" (limit {z['pss_limit'] / MiB:.0f})"
        )
        metrics = z["metrics"]
        print(
            f"  loads {metrics['endpoint_model_loads_total']:.0f}, "
            f"unloads {metrics['endpoint_model_unloads_total']:.0f}, "
            f"loaded at the end {metrics['LoadedModelCount']:.0f}, hit ratio "
            f"{metrics['ModelCacheHit_sum'] / max(1.0, metrics['ModelCacheHit_count']):.3f}"
            f"   target (0 errors, peak RSS ≤ limit): {'met' if z['target_met'] else 'NOT met'}"
            f" (with PSS: {'met' if z['pss_target_met'] else 'NOT met'})"
        )
        for name, phase in z["miss_phases_ms"].items():
            print(
                f"  {name}: {phase['count']:,.0f}, mean {phase['mean']:.1f} ms, p50 {phase['p50']:.1f}, "
                f"p99 {phase['p99']:.1f}"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["throughput", "zipf", "both"], default="both")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup-seconds", type=float, default=2.0)
    parser.add_argument("--connections", type=int, nargs="+", default=[8, 50])
    parser.add_argument("--container-workers", type=int, help="the container's --workers (default: its own, CPUs)")
    parser.add_argument("--models", type=int, default=10_000)
    parser.add_argument("--zipf-seconds", type=float, default=60.0)
    parser.add_argument("--zipf-connections", type=int, default=8)
    parser.add_argument("--zipf-exponent", type=float, default=1.1)
    parser.add_argument("--budget-mib", type=int, default=256)
    parser.add_argument("--work-dir", type=Path, default=REPO_ROOT / "build" / "bench" / "density-local")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 round of 2 s, 500 models for 10 s")
    options = parser.parse_args(argv)
    exit_on_termination()
    if options.quick:
        options.rounds, options.seconds, options.warmup_seconds = 1, 2.0, 1.0
        options.models, options.zipf_seconds = 500, 10.0
    work = options.work_dir.resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    results: dict[str, Any] = {"options": {k: str(v) if isinstance(v, Path) else v for k, v in vars(options).items()}}
    moto = moto_server(work)
    try:
        moto.start().wait_ready()
        log("fitting and publishing 10 notebook-sized models")
        models = publish_models(moto.url, work)
        if options.part in ("throughput", "both"):
            results["throughput"] = throughput(moto.url, models, work, options)
        if options.part in ("zipf", "both"):
            results["zipf"] = zipf(moto.url, models, work, options)
    except BenchBroken as error:
        print(f"density-local: the run broke: {error}", file=sys.stderr)
        return 1
    finally:
        moto.stop()
    (work.parent / "density_local.json").write_text(json.dumps(results, indent=2) + "\n")
    report(results)
    log(f"results in {work.parent / 'density_local.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
