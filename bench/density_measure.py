"""What the density bench measures on each server, interleaved so that every server sees the same noise.

* ``ramp``: models loaded through ``POST /models`` (SageMaker's ``{"model_name", "url"}`` JSON body) in
  stages of the same size on every server in turn; after each stage every model is invoked (over fresh
  connections where there are several workers, so each worker has mapped each model) and the whole
  process tree's PSS is read from ``/proc/*/smaps_rollup``. PSS per model is the least-squares slope
  over the stages (1 -> 40 models); load time is each ``POST /models``'s wall time, client side.
* ``cpu_round``: a fixed number of requests (``bench.density_client.replay``) and the server tree's
  CPU over exactly that work.
* ``wrk_round``: ``bench.harness.run_wrk`` (one CSV row per request, cycling over the warm models), gated
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

import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Generic, TypeVar

import httpx
import numpy as np

from bench.density_client import check_answers, replay
from bench.density_models import City, model_url
from bench.harness import BenchBroken, HttpRequest, Server, cpu_seconds, memory_bytes, run_wrk

MIB = 1024 * 1024
# New connections reach a worker by SO_REUSEPORT's hash: with 2 workers, 12 connections leave one out
# with probability 2**-11 per model.
FRESH_CONNECTIONS_PER_WORKER = 6
SETTLE_SECONDS = 1.0
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
T = TypeVar("T")


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


# --------------------------------------------------------------------------- the machine's other tenants


def parse_busy_seconds(proc_stat_first_line: str, clock_ticks: int = _CLOCK_TICKS) -> float:
    """Busy CPU time of all CPUs from ``/proc/stat``'s ``cpu`` line: everything but idle and iowait.

    Fields: user nice system idle iowait irq softirq steal guest guest_nice; guest time is already
    counted in user (and guest_nice in nice), so only the first eight are summed. Steal is busy: cores
    the hypervisor gave to someone else are not the bench's either.
    """
    fields = [int(value) for value in proc_stat_first_line.split()[1:9]]
    return (sum(fields) - fields[3] - fields[4]) / clock_ticks


def machine_busy_seconds() -> float:
    with open("/proc/stat") as stat:
        return parse_busy_seconds(stat.readline())


def own_cpu_seconds(server_pids: Sequence[int]) -> float:
    """CPU of everything the bench runs: every server's process tree, this process, and its finished children (wrk)."""
    times = os.times()
    return cpu_seconds(server_pids) + times.user + times.system + times.children_user + times.children_system


@dataclass(frozen=True)
class Quiet:
    """When a run counts as having had the machine: its neighbours took at most ``threshold_cores``."""

    threshold_cores: float = 0.25
    retries: int = 2  # a crowded run is redone at most this many times (the least crowded attempt is kept)
    settle_seconds: float = 10.0  # before each attempt, wait at most this long for a quiet window
    window_seconds: float = 0.5
    budget_seconds: float = 120.0  # the most one round spends waiting and redoing runs


@dataclass(frozen=True)
class Gated(Generic[T]):
    value: T
    outside_cores: float
    attempts: int


class QuietGate:
    """Runs measurements when the machine's other tenants leave its cores to the bench (see the module doc).

    ``own_pids`` lists every process the bench itself runs (all servers' trees, idle ones included), so
    their CPU is never taken for a neighbour's. The same gate serves every server's runs.
    """

    def __init__(
        self,
        quiet: Quiet,
        own_pids: Callable[[], Sequence[int]],
        *,
        busy: Callable[[], float] = machine_busy_seconds,
        own: Callable[[Sequence[int]], float] = own_cpu_seconds,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.quiet = quiet
        self._own_pids = own_pids
        self._busy = busy
        self._own = own
        self._clock = clock
        self._sleep = sleep
        self.spent_seconds = 0.0  # waiting for quiet windows and redoing crowded runs, in all
        self._round_started_spent = 0.0
        self.redone = 0
        self.runs = 0

    def start_round(self) -> None:
        """A new round gets its own budget: a crowded spell spends one round's, not the whole bench's."""
        self._round_started_spent = self.spent_seconds

    def _mark(self) -> tuple[float, float, float]:
        return self._clock(), self._busy(), self._own(self._own_pids())

    def _outside_cores(self, since: tuple[float, float, float]) -> float:
        now = self._mark()
        wall = now[0] - since[0]
        if wall <= 0:
            return 0.0
        return max(0.0, ((now[1] - since[1]) - (now[2] - since[2])) / wall)

    @property
    def budget_left(self) -> float:
        return self.quiet.budget_seconds - (self.spent_seconds - self._round_started_spent)

    def wait_for_quiet(self) -> float:
        """Sample windows until one is quiet, for at most ``settle_seconds`` (and the budget); the last reading."""
        started = self._clock()
        outside = 0.0
        while True:
            mark = self._mark()
            self._sleep(self.quiet.window_seconds)
            outside = self._outside_cores(mark)
            waited = self._clock() - started
            if (
                outside <= self.quiet.threshold_cores
                or waited >= self.quiet.settle_seconds
                or waited >= self.budget_left
            ):
                self.spent_seconds += waited
                return outside

    def measure(self, run: Callable[[], T]) -> Gated[T]:
        """``run()`` in a quiet moment, redone while crowded (within retries and budget); the least crowded kept."""
        best: Gated[T] | None = None
        for attempt in range(1, self.quiet.retries + 2):
            self.wait_for_quiet()
            mark = self._mark()
            value = run()
            outside = self._outside_cores(mark)
            if attempt > 1:
                self.spent_seconds += self._clock() - mark[0]
                self.redone += 1
            if best is None or outside < best.outside_cores:
                best = Gated(value, outside, attempt)
            if outside <= self.quiet.threshold_cores or self.budget_left <= 0:
                break
        assert best is not None
        self.runs += 1
        return Gated(best.value, best.outside_cores, attempt)

    def summary(self) -> dict[str, Any]:
        return {
            "threshold_cores": self.quiet.threshold_cores,
            "retries": self.quiet.retries,
            "settle_seconds": self.quiet.settle_seconds,
            "budget_seconds": self.quiet.budget_seconds,
            "spent_seconds": self.spent_seconds,
            "runs": self.runs,
            "redone": self.redone,
        }
