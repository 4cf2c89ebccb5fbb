"""Local training runs: each city in its own ``train.py`` process laid out like a SageMaker container.

Each city gets ``/opt/ml``'s layout under the work directory (channels under ``input/data``,
``model/``, ``output/data``), the real ``train.py`` runs with the ``SM_*`` variables script mode
sets, in a bounded pool of processes, and ``model/`` is packed into ``output/model.tar.gz``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from house_prices import naming, schema
from training import data as data_module
from training import packaging
from training.inputs import Hyperparameters, channel_dirs, write_inputs
from training.results import CityFailure, CityResult, RunReport

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
    city_dir: Path, hyperparameters: Mapping[str, str | int], base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The SM_* variables a SageMaker training container sets, pointing at ``city_dir``."""
    env = dict(os.environ if base is None else base)
    dirs = channel_dirs(city_dir)
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


def run_city(
    city_data: data_module.CityData,
    work_dir: Path,
    hyperparameters: Hyperparameters,
    timeout_seconds: float = 600,
) -> CityResult | CityFailure:
    """Train one city in a fresh ``train.py`` process and package its model directory."""
    city = city_data.city
    job = naming.job_name(city)
    city_dir = work_dir / city
    started = time.perf_counter()
    # A re-run must never package a previous run's files.
    shutil.rmtree(city_dir, ignore_errors=True)
    inputs = write_inputs(city_data, city_dir)
    (city_dir / "output" / "data").mkdir(parents=True, exist_ok=True)
    hps = hyperparameters.for_city(city)
    try:
        completed = subprocess.run(
            train_command(hps),
            env=training_environment(city_dir, hps),
            cwd=city_dir,
            capture_output=True,
            text=True,
            timeout=timeout_seconds,
            check=False,
        )
    except subprocess.TimeoutExpired as expired:
        stderr = expired.stderr.decode() if isinstance(expired.stderr, bytes) else (expired.stderr or "")
        return CityFailure(
            city, job, -1, f"{stderr}\ntimed out after {timeout_seconds} s", time.perf_counter() - started
        )
    if completed.returncode != 0:
        return CityFailure(city, job, completed.returncode, completed.stderr, time.perf_counter() - started)
    model_dir = city_dir / "model"
    metrics = json.loads((model_dir / naming.METRICS_FILENAME).read_text())
    artifact = packaging.package_model(model_dir, city_dir / "output" / naming.ARTIFACT_FILENAME)
    return CityResult(
        city=city,
        job_name=job,
        metrics=metrics,
        artifact=artifact,
        inputs=inputs,
        wall_seconds=time.perf_counter() - started,
    )


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
    timeout_seconds: float = 600,
) -> RunReport:
    """Train every city as its own ``train.py`` process, at most ``workers`` at a time (default: CPUs)."""
    cities = [naming.validate_city(city) for city in dict.fromkeys(cities)]
    if not cities:
        raise ValueError("no cities to train")
    hyperparameters = hyperparameters or Hyperparameters()
    workers = max(1, workers or os.cpu_count() or 1)
    work_dir = Path(work_dir).resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    report = RunReport()
    with _progress(console, progress) as bar, ThreadPoolExecutor(max_workers=workers) as pool:
        task = bar.add_task(f"training {len(cities)} cities ({workers} at a time)", total=len(cities))
        futures = {
            pool.submit(
                run_city,
                data_module.generate_city(city, houses_per_city, seed),
                work_dir,
                hyperparameters,
                timeout_seconds,
            ): city
            for city in cities
        }
        for future in as_completed(futures):
            outcome = future.result()
            if isinstance(outcome, CityFailure):
                report.failures.append(outcome)
                bar.console.print(f"[red]✗ {outcome.city} failed (exit {outcome.returncode})[/red]")
            else:
                report.results.append(outcome)
            bar.update(task, advance=1, description=f"trained {outcome.city}")
    report.results.sort(key=lambda result: cities.index(result.city))
    report.wall_seconds = time.perf_counter() - started
    return report
