"""What the density bench measures on each server, interleaved so that every server sees the same noise.

* ``ramp``: models loaded through ``POST /models`` (SageMaker's ``{"model_name", "url"}`` JSON body) in
  stages of the same size on every server in turn; after each stage every model is invoked (over fresh
  connections where there are several workers, so each worker has mapped each model) and the whole
  process tree's PSS is read from ``/proc/*/smaps_rollup``. PSS per model is the least-squares slope
  over the stages (1 -> 40 models); load time is each ``POST /models``'s wall time, client side.
* ``cpu_round``: a fixed number of requests (``bench.density_client.replay``) and the server tree's
  CPU over exactly that work.
* ``wrk_round``: ``bench.wrk_runs.run_wrk`` (one CSV row per request, cycling over the warm models), gated
  by a ``QuietGate``: the machine is shared, and a run during which other tenants took a good part of the
  cores did not give the server "the same number of cores" as its peers' runs. Under such load a server at
  c8 waits for the scheduler far more than it computes (its 8 requests and wrk's turn each wait for a time
  slice), so every server converges on the same req/s whatever its CPU per request; the ratios would measure
  the neighbours. The gate measures the CPU the machine spent outside the bench (``/proc/stat``'s busy time
  less the servers', the bench's and wrk's own) during each run, waits briefly for a quiet machine before a
  run, and redoes a run that was crowded, within a time budget, keeping the least crowded attempt. Every
  server's runs go through the same gate, and each sample records what the neighbours took during it.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.density_client import check_answers, replay
from bench.density_models import City, model_url
from bench.processes import BenchBroken, Server, cpu_seconds, memory_bytes

# The quiet gate lives in bench.quiet (the segments bench gates its runs with it too); density.py imports Quiet here.
from bench.quiet import Gated, QuietGate
from bench.quiet import Quiet as Quiet
from bench.wrk_runs import HttpRequest, run_wrk

MIB = 1024 * 1024
# New connections reach a worker by SO_REUSEPORT's hash: with 2 workers, 12 connections leave one out
# with probability 2**-11 per model.
FRESH_CONNECTIONS_PER_WORKER = 6
SETTLE_SECONDS = 1.0


@dataclass
class Subject:
    """One server under test and what it is asked."""

    key: str
    label: str
    server: Server
    workers: int
    requests: list[HttpRequest]  # the warm-model requests wrk and the CPU rounds send
    expected: list[Any]  # per request: prices, or the exact body (the ceiling)
    models: dict[str, City] = field(default_factory=dict)  # every model it loads (name -> city); none: a ceiling
    model_root: Path | None = None
    requests_file: Path | None = None

    @property
    def serves_models(self) -> bool:
        return self.model_root is not None

    @property
    def port(self) -> int:
        return int(self.server.url.rsplit(":", 1)[1])


@dataclass
class Ramp:
    pss_empty: int = 0
    points: list[tuple[int, int]] = field(default_factory=list)  # (models loaded, tree PSS bytes)
    rss_points: list[tuple[int, int]] = field(default_factory=list)
    load_seconds: list[float] = field(default_factory=list)

    @property
    def pss_per_model(self) -> float:
        return slope(self.points)

    def summary(self, budget_bytes: int) -> dict[str, Any]:
        per_model = self.pss_per_model
        return {
            "pss_empty_mib": self.pss_empty / MIB,
            "pss_points": [{"models": k, "pss_mib": p / MIB} for k, p in self.points],
            "rss_points": [{"models": k, "rss_mib": r / MIB} for k, r in self.rss_points],
            "pss_per_model_mib": per_model / MIB,
            "models_per_budget": models_in(budget_bytes, self.pss_empty, per_model),
            "load_ms": {
                "p50": statistics.median(self.load_seconds) * 1000,
                "p90": float(np.percentile(self.load_seconds, 90)) * 1000,
                "max": max(self.load_seconds) * 1000,
                "count": len(self.load_seconds),
            },
        }


def slope(points: Sequence[tuple[int, int]]) -> float:
    """Least-squares bytes per model over (models, bytes) points."""
    if len(points) < 2:
        return float("nan")
    x = np.array([k for k, _ in points], dtype=np.float64)
    y = np.array([b for _, b in points], dtype=np.float64)
    return float(np.polyfit(x, y, 1)[0])


def models_in(budget_bytes: int, empty_bytes: int, per_model_bytes: float) -> int:
    """How many models fit: (budget - the empty server) / per model."""
    if not per_model_bytes > 0:
        return 0
    return max(0, int((budget_bytes - empty_bytes) // per_model_bytes))


def tree_memory(server: Server) -> tuple[int, int]:
    """(RSS, PSS) of the server's whole process tree."""
    return memory_bytes(server.pids)


def load(client: httpx.Client, name: str, url: str) -> float:
    """One ``POST /models`` as SageMaker sends it; its wall time in seconds."""
    started = time.perf_counter()
    response = client.post("/models", json={"model_name": name, "url": url})
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise BenchBroken(f"POST /models {name}: HTTP {response.status_code} {response.text[:300]}")
    return elapsed


def map_everywhere(subject: Subject, names: Sequence[str]) -> None:
    """Invoke each model so that every worker of the server has it mapped (and check the answers)."""
    assert subject.model_root is not None
    tries = 1 if subject.workers == 1 else FRESH_CONNECTIONS_PER_WORKER * subject.workers
    for name in names:
        city = subject.models[name]
        request = HttpRequest("POST", f"/models/{name}/invoke", {"Content-Type": "text/csv"}, city.houses[0])
        for _ in range(tries):  # a fresh connection each time
            check_answers(subject.server.url, [request], [(city.prices[0],)], what=f"{subject.label} {name}")


def ramp(subjects: Sequence[Subject], stages: Sequence[int], log: Callable[[str], None]) -> dict[str, Ramp]:
    """Load every subject's models up to each stage in turn (interleaved), PSS after each stage."""
    servers = [subject for subject in subjects if subject.serves_models]
    ramps = {subject.key: Ramp() for subject in servers}
    time.sleep(SETTLE_SECONDS)
    for subject in servers:
        ramps[subject.key].pss_empty = tree_memory(subject.server)[1]
    loaded = 0
    clients = {subject.key: httpx.Client(base_url=subject.server.url, timeout=120) for subject in servers}
    try:
        for stage in stages:
            for subject in servers:
                assert subject.model_root is not None
                names = list(subject.models)[loaded:stage]
                for name in names:
                    seconds = load(clients[subject.key], name, model_url(subject.model_root, name))
                    ramps[subject.key].load_seconds.append(seconds)
                map_everywhere(subject, names)
            loaded = stage
            time.sleep(SETTLE_SECONDS)
            for subject in servers:
                rss, pss = tree_memory(subject.server)
                ramps[subject.key].points.append((stage, pss))
                ramps[subject.key].rss_points.append((stage, rss))
            log(
                f"  {stage} models: "
                + ", ".join(f"{s.key} {ramps[s.key].points[-1][1] / MIB:.1f} MiB" for s in servers)
            )
    finally:
        for client in clients.values():
            client.close()
    return ramps


@dataclass(frozen=True)
class CpuSample:
    requests: int
    cpu_seconds: float
    wall_seconds: float
    outside_cores: float = 0.0
    attempts: int = 1

    @property
    def ms_per_request(self) -> float:
        return self.cpu_seconds / self.requests * 1000


def cpu_round(subject: Subject, *, count: int, connections: int, gate: QuietGate | None = None) -> CpuSample:
    """The server tree's CPU over exactly ``count`` requests at ``connections`` connections.

    Gated like the wrk runs: neighbours do not change the work, but they do its cost (a server that is
    switched out more often pays more cache misses and wake-ups per request).
    """

    def once() -> CpuSample:
        before = cpu_seconds(subject.server.pids)
        replayed = replay(subject.port, subject.requests, count=count, connections=connections)
        spent = cpu_seconds(subject.server.pids) - before
        if replayed.errors or replayed.requests != count:
            raise BenchBroken(f"{subject.label}: {replayed.requests} of {count} answered, statuses {replayed.statuses}")
        return CpuSample(replayed.requests, spent, replayed.seconds)

    if gate is None:
        return once()
    gated = gate.measure(once)
    return replace(gated.value, outside_cores=gated.outside_cores, attempts=gated.attempts)


@dataclass(frozen=True)
class WrkSample:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    server_cpu_ms_per_request: float
    wrk_cpu_share: float
    outside_cores: float = 0.0  # CPU the machine spent outside the bench during the run, in cores
    attempts: int = 1  # runs made for this sample (more than one: the earlier ones were crowded)


def wrk_round(subject: Subject, *, seconds: float, connections: int, gate: QuietGate | None = None) -> WrkSample:
    assert subject.requests_file is not None
    requests_file = subject.requests_file

    def once() -> Any:
        return run_wrk(
            subject.server.url,
            requests_file,
            seconds=seconds,
            connections=connections,
            server_pids=lambda: subject.server.pids,
        )

    gated = gate.measure(once) if gate is not None else Gated(once(), 0.0, 1)
    result = gated.value
    if result.errors or result.non_2xx:
        raise BenchBroken(f"{subject.label} c{connections}: {result.errors} errors, {result.non_2xx} non-2xx")
    return WrkSample(
        rps=result.rps,
        p50_ms=result.latency_ms["p50"],
        p99_ms=result.latency_ms["p99"],
        requests=result.requests,
        server_cpu_ms_per_request=result.server_cpu_seconds / max(result.requests, 1) * 1000,
        wrk_cpu_share=result.wrk_cpu_seconds / result.seconds,
        outside_cores=gated.outside_cores,
        attempts=gated.attempts,
    )
