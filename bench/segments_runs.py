"""What ``bench/segments_scale.py`` runs and times: the training CLI as a child, registry polling, first predictions.

Each piece is measured from outside the code under test: the CLI's wall time and peak RSS come from
``os.wait4`` on its process (``ru_maxrss`` of that process and its waited-for workers, so earlier
children of the bench never mask it), its stage times from its own ``--json`` report.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.histograms import percentiles
from bench.processes import REPO_ROOT, BenchBroken, Ticker
from house_prices.registry import LiveModel, ModelRegistry

# The CLI's defaults, passed explicitly so the bare fits below use the same values by construction.
N_ESTIMATORS = 100
MIN_SAMPLES_LEAF = 3
SEED = 42


def log(message: str) -> None:
    print(f"[segments {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- the training CLI


@dataclass(frozen=True)
class CliRun:
    """One ``python -m training.jobs`` process: its argv, exit, wall, peak RSS and ``--json`` report."""

    argv: list[str]
    returncode: int
    wall_seconds: float
    cpu_seconds: float  # user + system of the process and its workers
    peak_rss_bytes: int
    report: dict[str, Any]
    log_path: str

    @property
    def stages(self) -> dict[str, float]:
        return {name: float(seconds) for name, seconds in self.report.get("stages", {}).items()}

    @property
    def trained(self) -> list[str]:
        return [s["city"] for s in self.report.get("segments", []) if s["outcome"] == "trained"]

    @property
    def failed(self) -> dict[str, str]:
        return {s["city"]: s["reason"] for s in self.report.get("segments", []) if s["outcome"] == "failed"}

    def command(self) -> str:
        return command_text(self.argv)


def command_text(argv: Sequence[str]) -> str:
    """An argv as a user would type it (repo-relative paths, ``python`` for the interpreter)."""
    shown = ["python" if arg == sys.executable else arg for arg in argv]
    return " ".join(os.path.relpath(a, REPO_ROOT) if a.startswith(str(REPO_ROOT)) else a for a in shown)


def training_argv(data: Path, mapping: Sequence[str], work_dir: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "training.jobs",
        "--data",
        str(data),
        *mapping,
        "--n-estimators",
        str(N_ESTIMATORS),
        "--min-samples-leaf",
        str(MIN_SAMPLES_LEAF),
        "--seed",
        str(SEED),
        "--work-dir",
        str(work_dir),
        "--json",
        "--no-progress",
        *extra,
    ]


def run_cli(argv: Sequence[str], env: Mapping[str, str], log_path: Path) -> CliRun:
    """Run the CLI to completion; stdout (the JSON report) and stderr go to files, never to a pipe we must drain."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    out_path = log_path.with_suffix(".json")
    with open(out_path, "wb") as out, open(log_path, "wb") as err:
        started = time.perf_counter()
        process = subprocess.Popen(list(argv), env=dict(env), cwd=REPO_ROOT, stdout=out, stderr=err)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4: tell Popen
    text = out_path.read_text()
    try:
        report = json.loads(text) if text.strip() else {}
    except ValueError as error:
        raise BenchBroken(f"training.jobs printed no JSON report ({error}); see {log_path}") from None
    cpu = usage.ru_utime + usage.ru_stime
    return CliRun(list(argv), process.returncode, wall, cpu, usage.ru_maxrss * 1024, report, str(log_path))


def cli_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without a developer's AWS settings, plus ``extra`` (the stack's endpoints)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_ENDPOINT_URL", "AWS_PROFILE"))}
    env.update({"AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull, "PYTHONUNBUFFERED": "1"})
    env.update(extra or {})
    return env


# --------------------------------------------------------------------------- bare fits (the ceiling)


def train_rows(work_dir: Path, cities: Sequence[str]) -> dict[str, np.ndarray]:
    """The rows the CLI trained each segment on, read back from the train channel it wrote (PRICE first)."""
    rows = {}
    for city in cities:
        path = work_dir / city / "input" / "data" / "train" / f"{city}_train.csv"
        rows[city] = np.loadtxt(path, delimiter=",", ndmin=2, dtype=np.float64)
    return rows


@dataclass(frozen=True)
class BareFits:
    wall_seconds: float  # sum over the fits
    cpu_seconds: float


def bare_fits(rows: Mapping[str, np.ndarray]) -> BareFits:
    """``RandomForestRegressor.fit`` on each segment's rows, one after another in this process, summed."""
    from sklearn.ensemble import RandomForestRegressor

    wall = cpu = 0.0
    for block in rows.values():
        model = RandomForestRegressor(
            n_estimators=N_ESTIMATORS, min_samples_leaf=MIN_SAMPLES_LEAF, random_state=SEED, n_jobs=1
        )
        started, started_cpu = time.perf_counter(), time.process_time()
        model.fit(block[:, 1:], block[:, 0])
        wall += time.perf_counter() - started
        cpu += time.process_time() - started_cpu
    return BareFits(wall, cpu)


def _fit_group(group: Sequence[np.ndarray]) -> float:
    return bare_fits({str(index): block for index, block in enumerate(group)}).wall_seconds


def bare_fit_wall_parallel(rows: Mapping[str, np.ndarray], workers: int) -> float:
    """Wall time of the same bare fits in ``workers`` forked processes at once (groups balanced by rows).

    The ceiling as the machine is right now: if another tenant holds a core, this feels it as the
    sharded run does, while the sum ÷ workers does not. Forked after sklearn is imported, so no
    process pays an import inside the timing.
    """
    import multiprocessing

    import sklearn.ensemble  # noqa: F401 - imported before the fork, inherited by the children

    groups: list[list[np.ndarray]] = [[] for _ in range(workers)]
    loads = [0] * workers
    for block in sorted(rows.values(), key=len, reverse=True):
        lightest = loads.index(min(loads))
        groups[lightest].append(block)
        loads[lightest] += len(block)
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        pool.map(abs, range(workers))  # every child is up before the clock starts
        started = time.perf_counter()
        pool.map(_fit_group, groups, chunksize=1)
        return time.perf_counter() - started


def shard_segment_seconds(work_dir: Path) -> float:
    """Sum of the per-segment seconds the workers reported (fit + pack + metrics + package) in their shard reports."""
    total = 0.0
    for report in (work_dir / "shards").glob("shard-*/model/report.json"):
        total += sum(float(s.get("seconds", 0.0)) for s in json.loads(report.read_text())["segments"])
    return total


# --------------------------------------------------------------------------- promotion


@dataclass
class LiveWatcher:
    """When segments go live: the registry's live-models index polled on a thread, every few seconds.

    Each poll returns every live item, and moto's index query costs CPU in proportion (the registry
    grows to thousands of items), CPU model-sync would otherwise use on the same cores; so the
    timeline is coarse (``interval``) and the end of promotion is read from model-sync's queue instead.
    """

    registry: ModelRegistry
    interval: float = 5.0
    live: dict[str, LiveModel] = field(default_factory=dict)
    seen_at: dict[str, float] = field(default_factory=dict)
    polls: int = 0
    settled_at: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _ticker: Ticker | None = None

    def __enter__(self) -> LiveWatcher:
        self._ticker = Ticker(self.poll, self.interval, "live-watcher").start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._ticker is not None:
            self._ticker.stop()

    def poll(self) -> None:
        with self._lock:
            try:
                models = self.registry.live_models()
            except Exception as error:  # a slow poll under load is retried, not fatal
                log(f"registry poll failed: {error}")
                return
            now = time.perf_counter()
            self.polls += 1
            for model in models:
                if model.city not in self.live:
                    self.live[model.city] = model
                    self.seen_at[model.city] = now

    def wait_for(
        self, cities: Sequence[str], timeout: float, settled: Callable[[], bool], check_every: float = 1.0
    ) -> list[str]:
        """Wait until model-sync has nothing left to do (or ``timeout``); returns the cities not live then.

        ``settled()`` says model-sync's queue holds nothing, queued or in flight: every event of the
        run handled (promoted, rejected by the gate, or failed for good). ``settled_at`` is the first
        such check, confirmed by the next one.
        """
        deadline = time.perf_counter() + timeout
        first_quiet: float | None = None
        while time.perf_counter() < deadline:
            now = time.perf_counter()
            if settled():
                if first_quiet is not None:
                    break
                first_quiet = now
            else:
                first_quiet = None
            time.sleep(check_every)
        self.settled_at = first_quiet if first_quiet is not None else time.perf_counter()
        self.poll()  # the final word on what is live
        return [city for city in cities if city not in self.live]


def queue_settled(sqs: Any, queue_url: str) -> Callable[[], bool]:
    """True when the queue holds no message, visible or in flight (a failed one waits out its backoff invisible)."""
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]

    def settled() -> bool:
        attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=names)["Attributes"]
        return sum(int(attributes[name]) for name in names) == 0

    return settled


_INVOCATION = re.compile(r"invocation succeeded \(attempt \d+, (\d+) ms\)")


def model_sync_invocations(log_path: Path) -> dict[str, Any]:
    """model-sync's time per event, from the local dispatcher's log lines, in arrival order.

    By fifths of the run, to show whether an event costs more as the registry and bucket fill up.
    """
    try:
        text = log_path.read_text(errors="replace")
    except OSError:
        return {"count": 0}
    times = [float(match[1]) for match in _INVOCATION.finditer(text)]
    if not times:
        return {"count": 0}
    fifths = [chunk for chunk in np.array_split(np.asarray(times), 5) if len(chunk)]
    return {
        "count": len(times),
        "mean_ms": float(np.mean(times)),
        **{f"{k}_ms": v for k, v in percentiles(times, (50, 90, 99)).items()},
        "sum_seconds": sum(times) / 1000,
        "mean_ms_by_fifth": [float(chunk.mean()) for chunk in fifths],
    }


def not_live_reasons(registry: ModelRegistry, cities: Sequence[str], limit: int = 5) -> dict[str, str]:
    """Why a few segments are not live: their newest version's status and reason, or no version at all."""
    reasons = {}
    for city in cities[:limit]:
        try:
            versions = registry.versions(city)
        except Exception as error:
            reasons[city] = f"registry read failed: {error}"
            continue
        newest = versions[0] if versions else None
        reasons[city] = f"{newest.status}: {newest.reason}" if newest else "no version recorded"
    return reasons


# --------------------------------------------------------------------------- first predictions


@dataclass(frozen=True)
class Prediction:
    city: str
    status: int
    milliseconds: float
    correct: bool
    detail: str = ""


def first_predictions(
    api_url: str, houses: Mapping[str, Mapping[str, float]], live: Mapping[str, LiveModel], clients: int
) -> list[Prediction]:
    """One ``POST /locations/{city}/predictions`` per segment from ``clients`` threads; each answer checked."""

    def predict(http: httpx.Client, city: str) -> Prediction:
        started = time.perf_counter()
        try:
            response = http.post(f"{api_url}/locations/{city}/predictions", json=houses[city])
        except httpx.HTTPError as error:
            return Prediction(city, 0, (time.perf_counter() - started) * 1000, False, f"{type(error).__name__}")
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            return Prediction(city, response.status_code, elapsed, False, response.text[:200])
        body = response.json()
        version = body.get("model", {}).get("version")
        price = body.get("predictions", [{}])[0].get("price")
        correct = version == live[city].version and isinstance(price, (int, float)) and price > 0
        return Prediction(city, 200, elapsed, correct, "" if correct else f"version {version}, price {price}")

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    with httpx.Client(timeout=60, limits=limits) as http, ThreadPoolExecutor(max_workers=clients) as pool:
        return list(pool.map(lambda city: predict(http, city), list(houses)))


def prediction_summary(predictions: Sequence[Prediction], seconds: float) -> dict[str, Any]:
    bad = [p for p in predictions if p.status != 200 or not p.correct]
    return {
        "requests": len(predictions),
        "seconds": seconds,
        "non_200": sum(p.status != 200 for p in predictions),
        "wrong": sum(p.status == 200 and not p.correct for p in predictions),
        "latency_ms": percentiles([p.milliseconds for p in predictions], (50, 90, 99)),
        "examples": [f"{p.city}: HTTP {p.status} {p.detail}" for p in bad[:5]],
    }
