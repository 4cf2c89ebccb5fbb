"""A small HTTP/1.1 client for the density bench: a fixed number of requests, and answers checked.

``replay`` sends exactly ``count`` requests over ``connections`` keep-alive connections (each waits for
its answer before sending the next), so the server's CPU per request is measured over a fixed amount
of work rather than a fixed time (idle background work, a JVM's or a registry poll, is not spread over
however many requests a noisy second allowed). Raw sockets and pre-encoded requests: the client costs
a few microseconds per request, and its CPU is not the server's anyway (``bench.processes.cpu_seconds``
reads the server's process tree).
"""

from __future__ import annotations

import asyncio
import collections
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import httpx

from bench.processes import BenchBroken
from bench.wrk_runs import HttpRequest

HOST = "127.0.0.1"


def encode(request: HttpRequest, host: str = HOST) -> bytes:
    body = request.body.encode()
    head = [f"{request.method} {request.path} HTTP/1.1", f"Host: {host}"]
    head += [f"{name}: {value}" for name, value in request.headers.items()]
    head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


@dataclass(frozen=True)
class Replayed:
    requests: int
    seconds: float
    statuses: dict[int, int]

    @property
    def errors(self) -> int:
        return sum(count for status, count in self.statuses.items() if status != 200)


async def _connection(port: int, wire: Sequence[bytes], next_index: collections.Counter[str], count: int) -> list[int]:
    reader, writer = await asyncio.open_connection(HOST, port)
    statuses: list[int] = []
    try:
        while next_index["sent"] < count:
            index = next_index["sent"]
            next_index["sent"] += 1
            writer.write(wire[index % len(wire)])
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            statuses.append(int(lines[0].split(" ", 2)[1]))
            length = next(
                (int(line.split(":", 1)[1]) for line in lines[1:] if line.lower().startswith("content-length:")), 0
            )
            await reader.readexactly(length)
    finally:
        writer.close()
    return statuses


async def _replay(port: int, wire: Sequence[bytes], count: int, connections: int) -> Replayed:
    started = time.perf_counter()
    counter: collections.Counter[str] = collections.Counter()
    done = await asyncio.gather(*(_connection(port, wire, counter, count) for _ in range(connections)))
    seconds = time.perf_counter() - started
    statuses = collections.Counter(status for per_connection in done for status in per_connection)
    return Replayed(requests=sum(statuses.values()), seconds=seconds, statuses=dict(statuses))


def replay(port: int, requests: Sequence[HttpRequest], *, count: int, connections: int) -> Replayed:
    """``count`` requests cycling through ``requests`` over ``connections`` connections to 127.0.0.1:port."""
    wire = [encode(request) for request in requests]
    return asyncio.run(_replay(port, wire, count, connections))


def prices_of(body: bytes) -> list[float]:
    return [float(value) for value in json.loads(body)]


def check_answers(
    url: str, requests: Sequence[HttpRequest], expected: Sequence[Sequence[float] | bytes], *, what: str
) -> int:
    """Each request once; its prices must equal ``expected`` (or its body the bytes given). Raises if not."""
    wrong: list[str] = []
    with httpx.Client(base_url=url, timeout=30) as client:
        for request, want in zip(requests, expected, strict=True):
            response = client.request(request.method, request.path, headers=dict(request.headers), content=request.body)
            if response.status_code != 200:
                wrong.append(f"{request.path}: HTTP {response.status_code} {response.text[:200]}")
            elif isinstance(want, bytes):
                if response.content != want:
                    wrong.append(f"{request.path}: body {response.content[:100]!r}")
            else:
                got = prices_of(response.content)
                if len(got) != len(want) or not all(
                    math.isclose(g, e, rel_tol=1e-9, abs_tol=1e-6) for g, e in zip(got, want, strict=True)
                ):
                    wrong.append(f"{request.path}: got {got[:3]}, expected {list(want)[:3]}")
    if wrong:
        raise BenchBroken(f"{what}: {len(wrong)} of {len(requests)} answers wrong:\n  " + "\n  ".join(wrong[:5]))
    return len(requests)
