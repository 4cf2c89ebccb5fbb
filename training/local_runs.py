"""Local training runs: worker processes, each training a shard of segments laid out like a SageMaker job.

Each shard gets ``/opt/ml``'s layout under ``{work_dir}/shards/shard-N`` (the train channel under
``input/data``, ``model/``, ``output/data``) and the real ``train.py --segments`` runs there with the
``SM_*`` variables script mode sets: one interpreter per worker, as one SageMaker job per shard does.
Each segment's ``model.tar.gz`` lands at ``{work_dir}/{city}/output/``, its split CSVs under
``{work_dir}/{city}/input/data/`` (what ``--publish`` uploads).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
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

REPO_ROOT = Path(__file__).resolve().parents[1]
COMMON_LAYER = REPO_ROOT / "layers" / "common"
TRAIN_SCRIPT = Path(__file__).resolve().with_name(packaging.ENTRY_POINT)
DEFAULT_WORK_DIR = REPO_ROOT / ".local" / "training"


def python_path(existing: str | None = None) -> str:
    """PYTHONPATH for train.py: the common layer first (as the sourcedir root is in SageMaker)."""
    parts = [str(COMMON_LAYER)]
    if existing:
        parts.append(existing)
    return os.pathsep.join(parts)


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
    """One worker process training one shard, laid out like a SageMaker training container."""

    job: str
    shard: Sequence[SegmentInput]
    shard_dir: Path
    work_dir: Path

    def hyperparameters(self, hyperparameters: Hyperparameters) -> dict[str, str | int]:
        return {**hyperparameters.for_shard(self.job), "artifacts-dir": str(self.work_dir)}

    def artifact(self, city: str) -> Path:
        """Where ``train.py --segments`` packs a segment (the old per-city layout: {city}/output/model.tar.gz)."""
        return self.work_dir / city / "output" / naming.ARTIFACT_FILENAME


def _run_shard(
    run: _ShardRun,
    hyperparameters: Hyperparameters,
    timeout_seconds: float | None,
    on_segment: Callable[[str, bool], None],
) -> list[CityResult | CityFailure]:
    """Run ``train.py --segments`` on one shard; every segment ends as a result or a failure with its reason."""
    started = time.perf_counter()
    shutil.rmtree(run.shard_dir, ignore_errors=True)
    write_shard(run.shard, channel_dirs(run.shard_dir)["train"])
    (run.shard_dir / "output" / "data").mkdir(parents=True, exist_ok=True)
    for segment in run.shard:
        # A re-run must never publish a previous run's artifact for a segment that fails now.
        run.artifact(segment.city).unlink(missing_ok=True)
    hps = run.hyperparameters(hyperparameters)
    process = subprocess.Popen(
        train_command(hps),
        env=training_environment(run.shard_dir, hps, channels=("train",)),
        cwd=run.shard_dir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    stderr_chunks: list[str] = []
    stderr_reader = threading.Thread(target=lambda: stderr_chunks.append(process.stderr.read()), daemon=True)  # type: ignore[union-attr]
    stderr_reader.start()
    # The split CSVs (what --publish uploads) are known before training: write them while the worker
    # trains, on this process's otherwise idle thread, instead of after it.
    inputs: dict[str, Mapping[str, Path]] = {}
    writer = threading.Thread(
        target=lambda: inputs.update({s.city: write_inputs(s.data, run.work_dir / s.city) for s in run.shard}),
        daemon=True,
    )
    writer.start()
    deadline = None if timeout_seconds is None else time.monotonic() + timeout_seconds
    timer = threading.Timer(timeout_seconds, process.kill) if timeout_seconds is not None else None
    if timer is not None:
        timer.start()
    try:
        for line in process.stdout:  # type: ignore[union-attr]
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    outcome = json.loads(line)
                    on_segment(str(outcome.get("city")), outcome.get("status") == "trained")
        returncode = process.wait()
    finally:
        if timer is not None:
            timer.cancel()
    stderr_reader.join(timeout=5)
    writer.join()
    stderr = "".join(stderr_chunks)
    timed_out = deadline is not None and time.monotonic() >= deadline and returncode != 0
    report_path = run.shard_dir / "model" / SHARD_REPORT
    reported = {o["city"]: o for o in json.loads(report_path.read_text())["segments"]} if report_path.is_file() else {}
    elapsed = time.perf_counter() - started
    outcomes: list[CityResult | CityFailure] = []
    for segment in run.shard:
        outcome = reported.get(segment.city)
        if outcome is None:
            reason = f"{stderr}\ntimed out after {timeout_seconds} s" if timed_out else stderr
            outcomes.append(CityFailure(segment.city, run.job, returncode or -1, reason, elapsed))
        elif outcome["status"] != "trained":
            outcomes.append(CityFailure(segment.city, run.job, 1, outcome.get("traceback") or outcome["error"],
                                        float(outcome["seconds"])))  # fmt: skip
        else:
            outcomes.append(
                CityResult(
                    city=segment.city,
                    job_name=run.job,
                    metrics=outcome["metrics"],
                    artifact=run.artifact(segment.city),
                    inputs=inputs[segment.city],
                    wall_seconds=float(outcome["seconds"]),
                )
            )
    return outcomes


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


def train_segments(
    segments: Sequence[SegmentInput],
    work_dir: Path = DEFAULT_WORK_DIR,
    *,
    hyperparameters: Hyperparameters | None = None,
    workers: int | None = None,
    progress: bool = True,
    console: Console | None = None,
    timeout_seconds: float | None = None,
) -> RunReport:
    """Train every segment in ``workers`` processes (default: CPUs), each one shard balanced by rows.

    One interpreter per worker, not per segment: a process trains its whole shard in process, and a
    failing segment is recorded with its error while the rest of its shard trains on.
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
    shards = plan_shards(list(segments), shards=workers)
    now = datetime.now(UTC)
    runs = [
        _ShardRun(naming.shard_job_name(index, now), shard, work_dir / "shards" / f"shard-{index:05d}", work_dir)
        for index, shard in enumerate(shards)
    ]
    report = RunReport()
    order = {city: index for index, city in enumerate(by_city)}
    with _progress(console, progress) as bar, ThreadPoolExecutor(max_workers=len(runs)) as pool:
        task = bar.add_task(f"training {len(segments)} segments in {len(runs)} workers", total=len(segments))
        lock = threading.Lock()

        def on_segment(city: str, trained: bool) -> None:
            with lock:
                bar.update(task, advance=1, description=f"trained {city}" if trained else f"failed {city}")

        futures = [pool.submit(_run_shard, run, hyperparameters, timeout_seconds, on_segment) for run in runs]
        for future in futures:
            for outcome in future.result():
                if isinstance(outcome, CityFailure):
                    report.failures.append(outcome)
                    bar.console.print(f"[red]✗ {outcome.city} failed[/red]", markup=True, highlight=False)
                else:
                    report.results.append(outcome)
        bar.update(task, completed=len(segments))
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
