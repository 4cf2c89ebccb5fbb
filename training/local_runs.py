"""Local training runs: worker processes, each training a shard of segments laid out like a SageMaker job.

Each shard gets ``/opt/ml``'s layout under ``{work_dir}/shards/shard-N`` (the train channel under
``input/data``, ``model/``, ``output/data``) and the real ``train.py --segments`` entry point
(``train.main`` with script mode's argv) runs there with the ``SM_*`` variables script mode sets, in
a process of its own, as one SageMaker job per shard does. The processes are forked from a zygote
that imported scikit-learn once (``training.workers``); a run cuts a few shards per worker and keeps
``--workers`` of them training at once, the heaviest first.
Each segment's ``model.tar.gz`` lands at ``{work_dir}/{city}/output/``, its split CSVs under
``{work_dir}/{city}/input/data/`` (what ``--publish`` uploads).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from house_prices import naming, schema
from training import data as data_module
from training import packaging
from training.inputs import Hyperparameters, channel_dirs, write_inputs
from training.results import CityFailure, CityResult, RunReport
from training.shards import SegmentInput, plan_shards, synthetic_segment, write_shard
from training.train import SHARD_REPORT
from training.workers import WorkerPool, WorkerPoolBroken, python_path, start_workers

REPO_ROOT = Path(__file__).resolve().parents[1]
TRAIN_SCRIPT = Path(__file__).resolve().with_name(packaging.ENTRY_POINT)
DEFAULT_WORK_DIR = REPO_ROOT / ".local" / "training"
# Shards per worker, so the next shard goes to whichever worker is free; never fewer segments per shard
# than this (a forked shard costs a few ms, its npz and report; a segment costs ~0.1 s).
SHARDS_PER_WORKER = 8
MIN_SEGMENTS_PER_SHARD = 16


def training_environment(
    city_dir: Path,
    hyperparameters: Mapping[str, str | int],
    base: Mapping[str, str] | None = None,
    channels: Sequence[str] | None = None,
) -> dict[str, str]:
    """The SM_* variables a SageMaker training container sets, pointing at ``city_dir``."""
    env = dict(os.environ if base is None else base)
    dirs = {name: path for name, path in channel_dirs(city_dir).items() if channels is None or name in channels}
    env.update(
        {
            "SM_MODEL_DIR": str(city_dir / "model"),
            "SM_OUTPUT_DATA_DIR": str(city_dir / "output" / "data"),
            "SM_CHANNELS": json.dumps(list(dirs)),
            **{f"SM_CHANNEL_{channel.upper()}": str(path) for channel, path in dirs.items()},
            "SM_HPS": json.dumps(dict(hyperparameters)),
            "PYTHONPATH": python_path(env.get("PYTHONPATH")),
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def train_command(hyperparameters: Mapping[str, str | int]) -> list[str]:
    """``python train.py --name value ...``: how the container's script mode invokes the entry point."""
    command = [sys.executable, str(TRAIN_SCRIPT)]
    for name, value in hyperparameters.items():
        command += [f"--{name}", str(value)]
    return command


@dataclass
class _ShardRun:
    """One shard, laid out like a SageMaker training container, trained by one forked worker process."""

    job: str
    shard: Sequence[SegmentInput]
    shard_dir: Path
    work_dir: Path
    started: float = 0.0
    deadline: float | None = None
    stdout_offset: int = 0
    stdout_rest: str = ""
    prepared: bool = False

    @property
    def rows(self) -> int:
        return sum(segment.rows for segment in self.shard)

    @property
    def stdout(self) -> Path:
        return self.shard_dir / "stdout.log"

    @property
    def stderr(self) -> Path:
        return self.shard_dir / "stderr.log"

    def hyperparameters(self, hyperparameters: Hyperparameters) -> dict[str, str | int]:
        return {**hyperparameters.for_shard(self.job), "artifacts-dir": str(self.work_dir)}

    def artifact(self, city: str) -> Path:
        """Where ``train.py --segments`` packs a segment (the old per-city layout: {city}/output/model.tar.gz)."""
        return self.work_dir / city / "output" / naming.ARTIFACT_FILENAME

    def prepare(self) -> None:
        self.prepared = True
        shutil.rmtree(self.shard_dir, ignore_errors=True)
        write_shard(self.shard, channel_dirs(self.shard_dir)["train"])
        (self.shard_dir / "output" / "data").mkdir(parents=True, exist_ok=True)
        for segment in self.shard:
            # A re-run must never publish a previous run's artifact for a segment that fails now.
            self.artifact(segment.city).unlink(missing_ok=True)

    def new_lines(self) -> list[str]:
        """Complete lines the worker printed since the last call (its per-segment JSON lines)."""
        try:
            with open(self.stdout, encoding="utf-8", errors="replace") as stream:
                stream.seek(self.stdout_offset)
                text = stream.read()
                self.stdout_offset = stream.tell()
        except FileNotFoundError:
            return []
        *lines, self.stdout_rest = (self.stdout_rest + text).split("\n")
        return lines

    def outcomes(
        self, returncode: int, inputs: Mapping[str, Mapping[str, Path]], timeout_seconds: float | None
    ) -> list[CityResult | CityFailure]:
        """Every segment of the shard as a result or a failure with its reason (the worker's stderr if it died)."""
        elapsed = time.perf_counter() - self.started
        stderr = self.stderr.read_text(errors="replace") if self.stderr.is_file() else ""
        if returncode != 0 and self.deadline is not None and time.perf_counter() >= self.deadline:
            stderr += f"\ntimed out after {timeout_seconds} s"
        report_path = self.shard_dir / "model" / SHARD_REPORT
        reported = (
            {o["city"]: o for o in json.loads(report_path.read_text())["segments"]} if report_path.is_file() else {}
        )
        outcomes: list[CityResult | CityFailure] = []
        for segment in self.shard:
            outcome = reported.get(segment.city)
            if outcome is None:
                outcomes.append(CityFailure(segment.city, self.job, returncode or -1, stderr, elapsed))
            elif outcome["status"] != "trained":
                outcomes.append(CityFailure(segment.city, self.job, 1, outcome.get("traceback") or outcome["error"],
                                            float(outcome["seconds"])))  # fmt: skip
            else:
                outcomes.append(
                    CityResult(
                        city=segment.city,
                        job_name=self.job,
                        metrics=outcome["metrics"],
                        artifact=self.artifact(segment.city),
                        inputs=inputs[segment.city],
                        wall_seconds=float(outcome["seconds"]),
                    )
                )
        return outcomes


def shard_count(segments: int, workers: int) -> int:
    """How many shards a local run cuts: a few per worker, so a free worker takes the next (never one per segment).

    At least ``workers``; up to ``SHARDS_PER_WORKER`` per worker while each keeps ``MIN_SEGMENTS_PER_SHARD``.
    """
    return max(1, min(segments, max(workers, min(workers * SHARDS_PER_WORKER, segments // MIN_SEGMENTS_PER_SHARD))))


def _progress(console: Console | None, enabled: bool) -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not enabled,
        transient=False,
    )


class _Scheduler:
    """Runs shards on at most ``workers`` forked processes at once, the heaviest waiting shard first."""

    def __init__(
        self,
        pool: WorkerPool,
        hyperparameters: Hyperparameters,
        workers: int,
        timeout_seconds: float | None,
        on_line: Callable[[str], None],
    ) -> None:
        self.pool = pool
        self.hyperparameters = hyperparameters
        self.workers = workers
        self.timeout_seconds = timeout_seconds
        self.on_line = on_line

    def _start(self, run: _ShardRun) -> None:
        if not run.prepared:
            run.prepare()
        hps = run.hyperparameters(self.hyperparameters)
        run.started = time.perf_counter()
        run.deadline = None if self.timeout_seconds is None else time.monotonic() + self.timeout_seconds
        env = training_environment(run.shard_dir, hps, channels=("train",))
        self.pool.submit(run.job, train_command(hps)[2:], env, run.shard_dir, run.stdout, run.stderr)

    def run(
        self, runs: Sequence[_ShardRun], inputs: Callable[[], Mapping[str, Mapping[str, Path]]]
    ) -> list[CityResult | CityFailure]:
        waiting = sorted(runs, key=lambda run: -run.rows)
        running: dict[str, _ShardRun] = {}
        finished: list[tuple[_ShardRun, int]] = []
        try:
            while waiting or running:
                while waiting and len(running) < self.workers:
                    run = waiting.pop(0)
                    running[run.job] = run
                    self._start(run)
                # The next shards' files are written while these train, not between two shards of a worker.
                for run in waiting[: self.workers]:
                    if not run.prepared:
                        run.prepare()
                events = self.pool.events(timeout=0.2)
                for run in running.values():
                    for line in run.new_lines():
                        self.on_line(line)
                    if run.deadline is not None and time.monotonic() >= run.deadline:
                        self.pool.kill(run.job)
                for event in events:
                    if "returncode" in event and str(event["id"]) in running:
                        run = running.pop(str(event["id"]))
                        for line in [*run.new_lines(), run.stdout_rest]:
                            self.on_line(line)
                        finished.append((run, int(event["returncode"])))
        except WorkerPoolBroken as error:
            # Nothing more can run: every shard not finished fails with the zygote's reason.
            for run in [*running.values(), *waiting]:
                run.stderr.parent.mkdir(parents=True, exist_ok=True)
                with open(run.stderr, "a", encoding="utf-8") as stream:
                    stream.write(f"\n{error}\n")
                finished.append((run, -1))
        files = inputs()
        return [outcome for run, code in finished for outcome in run.outcomes(code, files, self.timeout_seconds)]


def train_segments(
    segments: Sequence[SegmentInput],
    work_dir: Path = DEFAULT_WORK_DIR,
    *,
    hyperparameters: Hyperparameters | None = None,
    workers: int | None = None,
    progress: bool = True,
    console: Console | None = None,
    timeout_seconds: float | None = None,
    pool: WorkerPool | None = None,
) -> RunReport:
    """Train every segment in at most ``workers`` processes at once (default: CPUs), shards balanced by rows.

    No interpreter per segment, nor per worker: each shard is trained in one process forked from a
    zygote that imported scikit-learn once (``training.workers``; pass ``pool`` to start it earlier),
    and a failing segment is recorded with its error while the rest of its shard trains on.
    """
    by_city = {segment.city: segment for segment in segments}
    if len(by_city) != len(segments):
        raise ValueError("each segment must appear once")
    if not segments:
        raise ValueError("no segments to train")
    hyperparameters = hyperparameters or Hyperparameters()
    workers = max(1, workers or os.cpu_count() or 1)
    work_dir = Path(work_dir).resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    own_pool = pool is None
    pool = pool or start_workers()
    shards = plan_shards(list(segments), shards=shard_count(len(segments), workers))
    now = datetime.now(UTC)
    runs = [
        _ShardRun(naming.shard_job_name(index, now), shard, work_dir / "shards" / f"shard-{index:05d}", work_dir)
        for index, shard in enumerate(shards)
    ]
    # The split CSVs (what --publish uploads) are known before training: one thread writes them while
    # the workers train, instead of after.
    inputs: dict[str, Mapping[str, Path]] = {}
    writer = threading.Thread(
        target=lambda: inputs.update({s.city: write_inputs(s.data, work_dir / s.city) for s in segments}), daemon=True
    )
    writer.start()

    def written() -> Mapping[str, Mapping[str, Path]]:
        writer.join()
        return inputs

    report = RunReport()
    order = {city: index for index, city in enumerate(by_city)}
    try:
        with _progress(console, progress) as bar:
            task = bar.add_task(f"training {len(segments)} segments in {workers} workers", total=len(segments))

            def on_line(line: str) -> None:
                if line.startswith("{"):
                    with contextlib.suppress(ValueError):
                        outcome = json.loads(line)
                        trained = outcome.get("status") == "trained"
                        city = outcome.get("city")
                        bar.update(task, advance=1, description=f"trained {city}" if trained else f"failed {city}")

            scheduler = _Scheduler(pool, hyperparameters, min(workers, len(runs)), timeout_seconds, on_line)
            for outcome in scheduler.run(runs, written):
                if isinstance(outcome, CityFailure):
                    report.failures.append(outcome)
                    bar.console.print(f"[red]✗ {outcome.city} failed[/red]", markup=True, highlight=False)
                else:
                    report.results.append(outcome)
            bar.update(task, completed=len(segments))
    finally:
        if own_pool:
            pool.close()
    report.results.sort(key=lambda result: order[result.city])
    report.failures.sort(key=lambda failure: order[failure.city])
    report.wall_seconds = time.perf_counter() - started
    return report


def train_locally(
    cities: Sequence[str],
    work_dir: Path = DEFAULT_WORK_DIR,
    *,
    hyperparameters: Hyperparameters | None = None,
    houses_per_city: int = schema.HOUSES_PER_CITY,
    seed: int = data_module.DEFAULT_SEED,
    workers: int | None = None,
    progress: bool = True,
    console: Console | None = None,
    timeout_seconds: float | None = None,
) -> RunReport:
    """Train synthetic cities (the original notebook's generator) as segments; see ``train_segments``."""
    cities = [naming.validate_city(city) for city in dict.fromkeys(cities)]
    if not cities:
        raise ValueError("no cities to train")
    segments = [synthetic_segment(city, houses_per_city, seed) for city in cities]
    return train_segments(
        segments,
        work_dir,
        hyperparameters=hyperparameters,
        workers=workers,
        progress=progress,
        console=console,
        timeout_seconds=timeout_seconds,
    )
