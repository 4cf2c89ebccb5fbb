"""The 10,000-model Zipf run through the dense container alone, the client playing SageMaker's part.

``--zipf-models`` model directories (copies of the notebook cities' artifacts, one file each, 100-tree
forests), a container with a memory budget far below what they all need, and Zipf(1.1) traffic from a
few keep-alive connections. The client does what SageMaker's multi-model side does, minimally: invoke;
on 404 load the model (``POST /models``; 409 means someone else just did); on 507 unload the least
recently used model it loaded and retry the load. Every 200 is checked against the expected price;
anything else that reaches the caller is an error. The tree's RSS and PSS are sampled every 0.5 s.

``bench/density_local.py --part zipf`` runs the same traffic through the local SageMaker side's InvokeEndpoint.
"""

from __future__ import annotations

import asyncio
import collections
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench.density_client import HOST
from bench.histograms import percentiles
from bench.processes import MemorySampler, Server, memory_bytes
from bench.zipf import zipf_sequence

MIB = 1024 * 1024
# A request gives up (an error) after this many load/invoke rounds: SageMaker retries a few times too.
MAX_ATTEMPTS = 8


@dataclass(frozen=True)
class ZipfSpec:
    models: int
    requests: int
    seconds: float
    connections: int
    budget_bytes: int
    exponent: float = 1.1


@dataclass
class Counts:
    requests: int = 0
    ok: int = 0
    wrong: int = 0
    errors: int = 0
    misses: int = 0
    loads: int = 0
    conflicts: int = 0
    insufficient: int = 0
    unloads: int = 0
    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    latency_ms: list[float] = field(default_factory=list)


class _Connection:
    """One keep-alive HTTP/1.1 connection (reopened when the server closes it)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def call(self, method: str, path: str, body: bytes = b"", content_type: str = "") -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(HOST, self.port)
        assert self.reader is not None
        head = f"{method} {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: {len(body)}\r\n"
        if content_type:
            head += f"Content-Type: {content_type}\r\n"
        self.writer.write(head.encode("latin-1") + b"\r\n" + body)
        lines = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
        payload = await self.reader.readexactly(int(headers.get("content-length", "0")))
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, payload

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


class SageMakerSide:
    """Load on miss, unload the least recently used on 507, as SageMaker's multi-model side does."""

    def __init__(self, names: Sequence[str], urls: Sequence[str], bodies: Sequence[bytes], prices: Sequence[float]):
        self.names, self.urls, self.bodies, self.prices = names, urls, bodies, prices
        self.recent: collections.OrderedDict[int, None] = collections.OrderedDict()  # loaded by us, LRU first
        self.counts = Counts()

    async def request(self, connection: _Connection, model: int) -> None:
        started = time.perf_counter()
        counts = self.counts
        counts.requests += 1
        path = f"/models/{self.names[model]}/invoke"
        for _ in range(MAX_ATTEMPTS):
            status, body = await connection.call("POST", path, self.bodies[model], "text/csv")
            if status == 200:
                self.recent[model] = None
                self.recent.move_to_end(model)
                correct = math.isclose(json.loads(body)[0], self.prices[model], rel_tol=1e-9)
                counts.ok += correct
                counts.wrong += not correct
                break
            if status != 404:
                counts.statuses[status] += 1
                counts.errors += 1
                break
            counts.misses += 1
            if not await self.load(connection, model):
                counts.errors += 1
                break
        else:
            counts.errors += 1
        counts.latency_ms.append((time.perf_counter() - started) * 1000)

    async def load(self, connection: _Connection, model: int) -> bool:
        payload = json.dumps({"model_name": self.names[model], "url": self.urls[model]}).encode()
        for _ in range(MAX_ATTEMPTS * 4):
            status, _ = await connection.call("POST", "/models", payload, "application/json")
            if status in (200, 409):
                self.counts.loads += status == 200
                self.counts.conflicts += status == 409
                self.recent[model] = None
                self.recent.move_to_end(model)
                return True
            if status != 507:
                self.counts.statuses[status] += 1
                return False
            self.counts.insufficient += 1
            victim = next((m for m in self.recent if m != model), None)
            if victim is None:
                await asyncio.sleep(0.01)  # every model we know of is someone else's in-flight load
                continue
            del self.recent[victim]
            status, _ = await connection.call("DELETE", f"/models/{self.names[victim]}")
            if status == 200:
                self.counts.unloads += 1
            elif status != 404:  # 404: another connection unloaded it first
                self.counts.statuses[status] += 1
                return False
        return False


async def _drive(port: int, side: SageMakerSide, order: np.ndarray, spec: ZipfSpec) -> float:
    position = 0
    deadline = time.perf_counter() + spec.seconds
    started = time.perf_counter()

    async def worker() -> None:
        nonlocal position
        connection = _Connection(port)
        try:
            while position < len(order) and time.perf_counter() < deadline:
                model = int(order[position])
                position += 1
                await side.request(connection, model)
        finally:
            connection.close()

    await asyncio.gather(*(worker() for _ in range(spec.connections)))
    return time.perf_counter() - started


def zipf_run(
    server: Server,
    spec: ZipfSpec,
    names: Sequence[str],
    urls: Sequence[str],
    bodies: Sequence[bytes],
    prices: Sequence[float],
) -> dict[str, Any]:
    """The run against a started, empty container; its counts, latencies and memory against the budget."""
    assert server.process is not None
    port = int(server.url.rsplit(":", 1)[1])
    side = SageMakerSide(names, urls, bodies, prices)
    order = zipf_sequence(len(names), spec.exponent, length=spec.requests)
    time.sleep(1.0)
    boot_rss, boot_pss = memory_bytes(server.pids)
    with MemorySampler(server.process.pid, interval=0.5) as sampler:
        seconds = asyncio.run(_drive(port, side, order, spec))
        time.sleep(1.0)
    counts = side.counts
    limit = boot_rss + spec.budget_bytes + 64 * MIB
    peak_rss = max((rss for _, rss, _ in sampler.samples), default=0)
    peak_pss = max((pss for _, _, pss in sampler.samples), default=0)
    return {
        "models": len(names),
        "distinct_models_requested": len(set(order.tolist())),
        "connections": spec.connections,
        "exponent": spec.exponent,
        "budget_bytes": spec.budget_bytes,
        "seconds": seconds,
        "requests": counts.requests,
        "ok": counts.ok,
        "wrong": counts.wrong,
        "errors": counts.errors + counts.wrong,
        "error_statuses": dict(counts.statuses),
        "misses": counts.misses,
        "loads": counts.loads,
        "conflicts": counts.conflicts,
        "insufficient_memory": counts.insufficient,
        "unloads": counts.unloads,
        "rps": counts.requests / seconds if seconds else 0.0,
        "latency_ms": percentiles(counts.latency_ms, (50, 90, 99)),
        "boot_rss_mib": boot_rss / MIB,
        "boot_pss_mib": boot_pss / MIB,
        "peak_rss_mib": peak_rss / MIB,
        "peak_pss_mib": peak_pss / MIB,
        "limit_mib": limit / MIB,
        "pss_limit_mib": (boot_pss + spec.budget_bytes + 64 * MIB) / MIB,
        "samples": len(sampler.samples),
        "samples_over_rss_limit": sum(rss > limit for _, rss, _ in sampler.samples),
    }
