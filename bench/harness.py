"""Plumbing for ``bench/suite.py``: server processes, wrk runs, CPU and memory of process trees.

Nothing here knows about this project's servers: a :class:`Server` is an argv that serves HTTP on
127.0.0.1, either on a socket the harness bound and passes down (``{fd}`` in the argv) or on a port
named in the argv (``{port}``; a server that cannot inherit a socket). CPU and memory come from
``/proc`` (Linux), summed over the server's whole process tree, so multi-process servers count fully.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
REPLAY_SCRIPT = BENCH_DIR / "wrk" / "replay.lua"
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
LOCALHOST = "127.0.0.1"


class BenchBroken(RuntimeError):
    """The run itself failed (a server did not start, wrong answers, wrk missing): not a missed target."""


# --------------------------------------------------------------------------- /proc


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (via /proc/PID/task/*/children)."""
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        found.append(current)
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as children:
                    pending.extend(int(child) for child in children.read().split())
        except OSError:
            continue
    return found


def cpu_seconds(pids: Sequence[int]) -> float:
    """utime + stime of the given processes (threads included), in seconds."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                # Fields after the parenthesised command name; utime and stime are fields 14 and 15.
                fields = stat.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            continue
    return total / _CLOCK_TICKS


def memory_bytes(pids: Sequence[int]) -> tuple[int, int]:
    """(RSS, PSS) summed over processes; PSS splits shared pages between the processes sharing them."""
    rss = pss = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm") as statm:
                rss += int(statm.read().split()[1]) * _PAGE_BYTES
            with open(f"/proc/{pid}/smaps_rollup") as rollup:
                match = re.search(r"^Pss:\s+(\d+) kB", rollup.read(), re.MULTILINE)
            pss += int(match[1]) * 1024 if match else 0
        except (OSError, IndexError, ValueError):
            continue
    return rss, pss


class Ticker:
    """Calls ``tick()`` at once, then every ``interval`` seconds, on a thread from :meth:`start` to :meth:`stop`."""

    def __init__(self, tick: Callable[[], None], interval: float, name: str) -> None:
        self._tick = tick
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._tick()
            self._stop.wait(self._interval)

    def start(self) -> Ticker:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop ticking; waits for a tick under way."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()


@dataclass
class MemorySampler:
    """Samples a process tree's RSS/PSS every ``interval`` seconds on a background thread."""

    pid: int
    interval: float = 0.5
    samples: list[tuple[float, int, int]] = field(default_factory=list)  # (seconds, rss, pss)
    _ticker: Ticker | None = None

    def __enter__(self) -> MemorySampler:
        started = time.monotonic()

        def sample() -> None:
            rss, pss = memory_bytes(process_tree(self.pid))
            self.samples.append((time.monotonic() - started, rss, pss))

        self._ticker = Ticker(sample, self.interval, "memory-sampler").start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._ticker is not None:
            self._ticker.stop()


# --------------------------------------------------------------------------- servers


def listening_socket() -> socket.socket:
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets whose proto says TCP; without
    # it a response written in two parts waits ~40 ms for the client's delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((LOCALHOST, 0))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def free_port() -> int:
    """A port free right now, for servers that cannot inherit a socket (MLServer): a small race, accepted."""
    with socket.socket() as probe:
        probe.bind((LOCALHOST, 0))
        return int(probe.getsockname()[1])


@dataclass
class Server:
    """One server under test: started once, measured over several rounds, stopped at the end."""

    name: str
    argv: Sequence[str]
    env: Mapping[str, str] | None = None
    cwd: Path | None = None
    ready_path: str = "/ping"
    log_path: Path | None = None
    port: int | None = None  # for argv that take {port}; else a socket is passed as {fd}
    process: subprocess.Popen[bytes] | None = None
    url: str = ""

    def start(self) -> Server:
        sock = None
        fds: tuple[int, ...] = ()
        if self.port is None and any("{fd}" in arg for arg in self.argv):
            sock = listening_socket()
            port, fds = sock.getsockname()[1], (sock.fileno(),)
        else:
            port = self.port or free_port()
        argv = [arg.format(fd=fds[0] if fds else -1, port=port) for arg in self.argv]
        self.url = f"http://{LOCALHOST}:{port}"
        log: Any = open(self.log_path, "wb") if self.log_path else subprocess.DEVNULL  # noqa: SIM115 - closed below
        try:
            self.process = subprocess.Popen(
                argv,
                env={**os.environ, **(self.env or {})},
                cwd=self.cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=fds,
                start_new_session=True,  # its own process group: stopping it stops every worker
            )
        finally:
            if sock is not None:
                sock.close()
            if log is not subprocess.DEVNULL:
                log.close()
        return self

    def wait_ready(self, timeout: float = 120.0, path: str | None = None) -> Server:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise BenchBroken(f"{self.name} exited with {self.process.returncode} (log: {self.log_path})")
            try:
                if httpx.get(self.url + (path or self.ready_path), timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise BenchBroken(f"{self.name} not ready at {self.url} within {timeout:.0f} s (log: {self.log_path})")

    @property
    def pids(self) -> list[int]:
        return process_tree(self.process.pid) if self.process else []

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        except ProcessLookupError:
            pass


# --------------------------------------------------------------------------- wrk


@dataclass(frozen=True)
class HttpRequest:
    method: str
    path: str
    headers: Mapping[str, str]
    body: str


def _lua_string(text: str) -> str:
    safe = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ,.-_/:;=+*[]{}()"
    return '"' + "".join(chr(b) if b in safe else f"\\{b:03d}" for b in text.encode()) + '"'


def write_lua_requests(path: Path, requests: Sequence[HttpRequest]) -> Path:
    """The request list replay.lua cycles through, as a Lua table (every byte escaped: data, not code)."""
    lines = ["return {"]
    for request in requests:
        headers = ", ".join(f"[{_lua_string(k)}] = {_lua_string(v)}" for k, v in request.headers.items())
        lines.append(
            f"  {{method = {_lua_string(request.method)}, path = {_lua_string(request.path)}, "
            f"headers = {{{headers}}}, body = {_lua_string(request.body)}}},"
        )
    lines.append("}")
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    errors: int
    non_2xx: int
    latency_ms: dict[str, float]
    wrk_cpu_seconds: float
    server_cpu_seconds: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


def wrk_binary() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise BenchBroken("wrk is not installed: run `make bench` (its wrk target installs it)")
    return found


def run_wrk(
    url: str,
    requests_file: Path,
    *,
    seconds: float,
    connections: int,
    threads: int = 1,
    server_pids: Callable[[], Sequence[int]] = list,
    timeout_seconds: float = 10.0,
) -> WrkResult:
    """One wrk run; CPU of wrk (rusage of the child) and of the server tree over the same interval."""
    argv = [
        wrk_binary(),
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        f"--timeout={timeout_seconds:g}s",
        "-s",
        str(REPLAY_SCRIPT),
        url,
    ]
    before_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    before_server = cpu_seconds(server_pids())
    completed = subprocess.run(
        argv, env={**os.environ, "WRK_REQUESTS": str(requests_file)}, capture_output=True, text=True, check=False
    )
    server_cpu = cpu_seconds(server_pids()) - before_server
    after_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    wrk_cpu = (after_children.ru_utime - before_children.ru_utime) + (
        after_children.ru_stime - before_children.ru_stime
    )
    match = re.search(r"^WRK_JSON (.*)$", completed.stdout, re.MULTILINE)
    if completed.returncode != 0 or match is None:
        raise BenchBroken(f"wrk failed ({completed.returncode}): {completed.stdout[-800:]} {completed.stderr[-800:]}")
    data = json.loads(match[1])
    errors = data["errors"]
    return WrkResult(
        requests=int(data["requests"]),
        seconds=data["duration_us"] / 1e6,
        errors=int(errors["connect"] + errors["read"] + errors["write"] + errors["timeout"]),
        non_2xx=int(errors["status"]),
        latency_ms={name: value / 1000 for name, value in data["latency_us"].items()},
        wrk_cpu_seconds=wrk_cpu,
        server_cpu_seconds=server_cpu,
    )


# --------------------------------------------------------------------------- statistics


def percentiles(values: Sequence[float], points: Sequence[float] = (50, 90, 99)) -> dict[str, float]:
    if not values:
        return {f"p{point:g}": float("nan") for point in points}
    array = np.asarray(values, dtype=np.float64)
    return {f"p{point:g}": float(np.percentile(array, point)) for point in points}


def histogram_quantile(buckets: Mapping[float, float], quantile: float) -> float:
    """Prometheus-style quantile from cumulative bucket counts (upper bound -> count), linear in a bucket."""
    ordered = sorted(buckets.items())
    if not ordered or ordered[-1][1] <= 0:
        return float("nan")
    rank = quantile * ordered[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for upper, count in ordered:
        if count >= rank:
            if upper == float("inf"):
                return lower_bound
            span = count - lower_count
            return lower_bound + (upper - lower_bound) * ((rank - lower_count) / span if span else 1.0)
        lower_bound, lower_count = upper, count
    return lower_bound


def prometheus_histograms(text: str) -> dict[str, dict[str, Any]]:
    """Every histogram in an exposition text: name -> {sum, count, buckets}, summed over labels.

    Tolerant by design: unknown families are ignored and a missing family is simply absent.
    """
    from prometheus_client.parser import text_string_to_metric_families

    histograms: dict[str, dict[str, Any]] = {}
    for family in text_string_to_metric_families(text):
        if family.type != "histogram":
            continue
        entry = histograms.setdefault(family.name, {"sum": 0.0, "count": 0.0, "buckets": {}})
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                bound = float(sample.labels.get("le", "inf"))
                entry["buckets"][bound] = entry["buckets"].get(bound, 0.0) + sample.value
            elif sample.name.endswith("_sum"):
                entry["sum"] += sample.value
            elif sample.name.endswith("_count"):
                entry["count"] += sample.value
    return histograms


def subtract_histograms(after: dict[str, dict[str, Any]], before: dict[str, dict[str, Any]]) -> dict[str, Any]:
    delta: dict[str, dict[str, Any]] = {}
    for name, entry in after.items():
        base = before.get(name, {"sum": 0.0, "count": 0.0, "buckets": {}})
        delta[name] = {
            "sum": entry["sum"] - base["sum"],
            "count": entry["count"] - base["count"],
            "buckets": {b: c - base["buckets"].get(b, 0.0) for b, c in entry["buckets"].items()},
        }
    return delta


def zipf_sequence(models: int, exponent: float, length: int, seed: int = 7) -> np.ndarray:
    """Model indices drawn from Zipf(exponent) truncated at ``models`` ranks (rank order shuffled)."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, models + 1, dtype=np.float64) ** exponent
    cdf = np.cumsum(weights / weights.sum())
    ranks = np.searchsorted(cdf, rng.random(length), side="right").clip(0, models - 1)
    return rng.permutation(models)[ranks]


def phase_of(metric: str) -> str | None:
    """Which part of a model load a histogram times, by name; None for the rest (tolerant by design)."""
    lowered = metric.lower()
    if "wait" in lowered or "unload" in lowered or "invocation" in lowered:
        return None
    for phase, words in (
        ("download", ("download",)),
        ("extract", ("extract", "unpack")),
        ("model_fn", ("loading", "load")),
    ):
        if any(word in lowered for word in words):
            return phase
    return None


def load_phases(histograms: Mapping[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    phases: dict[str, dict[str, float]] = {}
    for name, entry in histograms.items():
        phase = phase_of(name)
        if phase is None or entry["count"] <= 0:
            continue
        phases[f"{phase} ({name})"] = {
            "count": entry["count"],
            "mean_ms": entry["sum"] / entry["count"] * 1000,
            "p50_ms": histogram_quantile(entry["buckets"], 0.5) * 1000,
            "p99_ms": histogram_quantile(entry["buckets"], 0.99) * 1000,
        }
    return phases
