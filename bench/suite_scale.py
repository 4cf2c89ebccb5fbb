"""``make bench``'s cold loads (one model after another, each loaded once) and scale run (thousands of
models, Zipf traffic, a memory budget, RSS sampled), each on its own endpoint.
"""

from __future__ import annotations

import asyncio
import json
import math
import shutil
import statistics
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np

from bench.histograms import histogram_quantile, load_phases, percentiles, prometheus_histograms, subtract_histograms
from bench.peers import TARGET_MODEL_HEADER
from bench.processes import BenchBroken, MemorySampler, cpu_seconds, memory_bytes
from bench.suite_config import ENDPOINT_NAME, MiB, Options, log
from bench.suite_stack import CityModel, Sample, Stack
from bench.suite_targets import endpoint_server
from bench.zipf import zipf_sequence


def copy_artifacts(stack: Stack, models: Mapping[str, CityModel], prefix: str, count: int, name: str) -> list[str]:
    """``count`` copies of the live artifacts under distinct keys (server-side copies: cheap in moto)."""
    s3, bucket = stack.client("s3"), stack.info["bucket"]
    sources = [model.artifact_key for model in models.values()]
    targets = [f"{name}{index:05d}.tar.gz" for index in range(count)]

    def copy(index: int) -> None:
        s3.copy_object(
            Bucket=bucket,
            Key=prefix + targets[index],
            CopySource={"Bucket": bucket, "Key": sources[index % len(sources)]},
        )

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(copy, range(count)))
    return targets


def metrics_text(url: str) -> str:
    try:
        return httpx.get(f"{url}/metrics", timeout=10).text
    except httpx.HTTPError:
        return ""


def cold_loads(
    stack: Stack, models: Mapping[str, CityModel], samples: Mapping[str, list[Sample]], options: Options
) -> dict[str, Any]:
    prefix = "bench-cold/"
    targets = copy_artifacts(stack, models, prefix, options.cold_models, "Cold")
    cities = list(models)
    url = f"s3://{stack.info['bucket']}/{prefix}"
    server = endpoint_server(
        "endpoint-cold", url, stack.info["s3_endpoint_url"], options.work_dir / "logs", *options.endpoint_args
    )
    server.start().wait_ready()
    try:
        before = prometheus_histograms(metrics_text(server.url))
        latencies = []
        with httpx.Client(base_url=server.url, timeout=60) as client:
            for index, target in enumerate(targets):
                sample = samples[cities[index % len(cities)]][0]
                started = time.perf_counter()
                response = client.post(
                    f"/endpoints/{ENDPOINT_NAME}/invocations",
                    content=sample.csv,
                    headers={"Content-Type": "text/csv", TARGET_MODEL_HEADER: target},
                )
                latencies.append((time.perf_counter() - started) * 1000)
                if response.status_code != 200 or not math.isclose(
                    response.json()[0], sample.project_price, rel_tol=1e-9
                ):
                    raise BenchBroken(f"cold load of {target}: HTTP {response.status_code} {response.text[:200]}")
        after = prometheus_histograms(metrics_text(server.url))
    finally:
        server.stop()
    return {
        "models": len(targets),
        "client_ms": {
            **percentiles(latencies, (50, 90, 99)),
            "mean": statistics.fmean(latencies),
            "max": max(latencies),
        },
        "phases": load_phases(subtract_histograms(after, before)),
        "latencies_ms": latencies,
    }


@dataclass
class ScaleRecord:
    started: float
    latency_ms: float
    status: int
    first_touch: bool
    correct: bool


async def _drive(
    port: int,
    requests: Sequence[bytes],
    expected: Sequence[float],
    order: np.ndarray,
    connections: int,
    seconds: float,
) -> list[ScaleRecord]:
    """A minimal keep-alive HTTP/1.1 client: ``connections`` workers share one Zipf schedule."""
    records: list[ScaleRecord] = []
    seen: set[int] = set()
    position = 0
    origin = time.perf_counter()
    deadline = origin + seconds

    async def worker() -> None:
        nonlocal position
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.perf_counter() < deadline and position < len(order):
                model = int(order[position])
                position += 1
                first = model not in seen
                seen.add(model)
                started = time.perf_counter()
                status, body = 0, b""
                try:
                    writer.write(requests[model])
                    status_line = await asyncio.wait_for(reader.readline(), 30)
                    status = int(status_line.split()[1])
                    length, close = 0, False
                    while (line := await reader.readline()) not in (b"\r\n", b""):
                        name, _, value = line.decode("latin-1").partition(":")
                        if name.lower() == "content-length":
                            length = int(value)
                        elif name.lower() == "connection" and "close" in value.lower():
                            close = True
                    body = await reader.readexactly(length)
                except (TimeoutError, OSError, ValueError, IndexError, asyncio.IncompleteReadError):
                    close = True
                elapsed = (time.perf_counter() - started) * 1000
                correct = False
                if status == 200:
                    try:
                        correct = math.isclose(json.loads(body)[0], expected[model], rel_tol=1e-9)
                    except (ValueError, IndexError, TypeError):
                        correct = False
                records.append(ScaleRecord(started - origin, elapsed, status, first, correct))
                if close:
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(connections)))
    return records


def scale_run(
    stack: Stack, models: Mapping[str, CityModel], samples: Mapping[str, list[Sample]], options: Options
) -> dict[str, Any]:
    prefix = "bench-scale/"
    started = time.perf_counter()
    targets = copy_artifacts(stack, models, prefix, options.scale_models, "Scale")
    log(f"scale: {len(targets):,} models copied in {time.perf_counter() - started:.1f} s")
    cities = list(models)
    cache_dir = options.work_dir / "scale-cache"
    shutil.rmtree(cache_dir, ignore_errors=True)
    server = endpoint_server(
        "endpoint-scale",
        f"s3://{stack.info['bucket']}/{prefix}",
        stack.info["s3_endpoint_url"],
        options.work_dir / "logs",
        "--max-memory-bytes",
        str(options.scale_budget_bytes),
        "--cache-dir",
        str(cache_dir),
        *options.endpoint_args,
    )
    server.start().wait_ready()
    assert server.process is not None
    port = int(server.url.rsplit(":", 1)[1])
    requests, expected = [], []
    for index, target in enumerate(targets):
        sample = samples[cities[index % len(cities)]][0]
        body = sample.csv.encode()
        requests.append(
            (
                f"POST /endpoints/{ENDPOINT_NAME}/invocations HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                f"Content-Type: text/csv\r\nAccept: application/json\r\n{TARGET_MODEL_HEADER}: {target}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode()
            + body
        )
        expected.append(sample.project_price)
    order = zipf_sequence(len(targets), options.zipf_exponent, length=5_000_000)
    try:
        time.sleep(1.0)
        boot_rss, boot_pss = memory_bytes(server.pids)
        before_metrics = metrics_text(server.url)
        client_cpu = time.process_time()
        cpu_before = cpu_seconds(server.pids)
        with MemorySampler(server.process.pid, interval=0.5) as sampler:
            records = asyncio.run(
                _drive(port, requests, expected, order, options.scale_connections, options.scale_seconds)
            )
            time.sleep(1.0)  # a couple of samples after the load stops
        server_cpu = cpu_seconds(server.pids) - cpu_before
        client_cpu = time.process_time() - client_cpu
        after_metrics = metrics_text(server.url)
        disk_bytes = sum(p.stat().st_size for p in cache_dir.rglob("*") if p.is_file())
    finally:
        server.stop()
    duration = max(r.started + r.latency_ms / 1000 for r in records) if records else options.scale_seconds
    ok = [r for r in records if r.status == 200 and r.correct]
    errors = len(records) - len(ok)
    first = [r.latency_ms for r in records if r.first_touch]
    histograms = subtract_histograms(prometheus_histograms(after_metrics), prometheus_histograms(before_metrics))
    wait = next((entry for name, entry in histograms.items() if "wait" in name.lower()), None)
    hits = _summary_ratio(after_metrics, before_metrics, "ModelCacheHit")
    budget_line = boot_rss + options.scale_budget_bytes + 64 * MiB
    peak_rss = max((s[1] for s in sampler.samples), default=0)
    per_second = np.bincount(np.asarray([int(r.started) for r in records], dtype=np.int64)) if records else np.zeros(1)
    return {
        "models": len(targets),
        "connections": options.scale_connections,
        "seconds": duration,
        "requests": len(records),
        "errors": errors,
        "error_statuses": sorted({r.status for r in records if r.status != 200}),
        "rps": len(records) / duration if duration else 0.0,
        "rps_min_per_second": float(per_second[1:-1].min()) if len(per_second) > 2 else float(per_second.min()),
        "latency_ms": percentiles([r.latency_ms for r in records], (50, 90, 99)),
        "first_touch_ms": {**percentiles(first, (50, 90, 99)), "count": len(first)},
        "server_miss_wait_ms": (
            {
                "count": wait["count"],
                "p50": histogram_quantile(wait["buckets"], 0.5) * 1000,
                "p99": histogram_quantile(wait["buckets"], 0.99) * 1000,
            }
            if wait and wait["count"]
            else None
        ),
        "load_phases": load_phases(histograms),
        "hit_ratio": hits,
        "boot_rss": boot_rss,
        "boot_pss": boot_pss,
        "peak_rss": peak_rss,
        "rss_limit": budget_line,
        "budget_bytes": options.scale_budget_bytes,
        "samples": sampler.samples,
        "disk_cache_bytes": disk_bytes,
        "client_cpu": client_cpu / duration if duration else 0.0,
        "server_cpu": server_cpu / duration if duration else 0.0,
    }


def _summary_ratio(after: str, before: str, name: str) -> float | None:
    def totals(text: str) -> tuple[float, float]:
        from prometheus_client.parser import text_string_to_metric_families

        total = count = 0.0
        for family in text_string_to_metric_families(text):
            if family.name != name:
                continue
            for sample in family.samples:
                if sample.name.endswith("_sum"):
                    total += sample.value
                elif sample.name.endswith("_count"):
                    count += sample.value
        return total, count

    s1, c1 = totals(after)
    s0, c0 = totals(before)
    return (s1 - s0) / (c1 - c0) if c1 > c0 else None
