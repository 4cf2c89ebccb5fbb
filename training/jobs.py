"""Train N cities: local ``train.py`` processes with the SageMaker environment, or SageMaker jobs.

Local mode lays out each city the way a training container sees ``/opt/ml`` (channels under
``input/data``, ``model/``, ``output/data``), runs the real ``train.py`` in a bounded pool of
processes and packs ``model/`` into ``output/model.tar.gz``. Publishing uploads the inputs to
``KeyLayout.prep_key`` and the artifact to ``KeyLayout.training_output_key`` (what a SageMaker job
would write), which is the model-sync trigger.

SageMaker mode uploads the same inputs and ``sourcedir.tar.gz`` and calls ``CreateTrainingJob``
with ``S3OutputPath = s3://BUCKET/PREFIX/model_artifacts/{city}/``; SageMaker then writes
``{job}/output/model.tar.gz`` below it, the same training-output key.

CLI::

    python -m training.jobs --cities Chicago_IL Dallas_TX
    python -m training.jobs --all-seed-cities --publish --bucket B [--prefix P]
    python -m training.jobs --all-seed-cities --mode sagemaker --bucket B --role-arn ARN [--wait]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from boto3.exceptions import S3UploadFailedError
from botocore.exceptions import BotoCoreError, ClientError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from house_prices import naming, schema
from house_prices.errors import DependencyFailure, DomainError
from training import data as data_module
from training import images, packaging

REPO_ROOT = Path(__file__).resolve().parents[1]
COMMON_LAYER = REPO_ROOT / "layers" / "common"
TRAIN_SCRIPT = Path(__file__).resolve().with_name(packaging.ENTRY_POINT)
DEFAULT_WORK_DIR = REPO_ROOT / ".local" / "training"
# SageMaker channel name -> the seed's split name in file names and prep keys.
CHANNELS: Mapping[str, str] = {"train": "train", "validation": "val", "test": "test"}
# The seed's metric lines, as SageMaker MetricDefinitions (train.py prints them).
METRIC_DEFINITIONS = tuple(
    {"Name": f"validation:ae-p{q}", "Regex": f"AE-at-{q}th-percentile: ([0-9.]+).*$"} for q in (10, 50, 90)
)
_STDERR_TAIL_LINES = 40


class TrainingJobFailed(DomainError):
    """One or more cities failed to train; ``failures`` holds each city's exit code and stderr."""

    def __init__(self, failures: Sequence[CityFailure]) -> None:
        details = "\n".join(f"--- {f.city} (exit {f.returncode}) ---\n{f.stderr_tail()}" for f in failures)
        super().__init__(f"training failed for {', '.join(f.city for f in failures)}\n{details}")
        self.failures = list(failures)


@dataclass(frozen=True)
class Hyperparameters:
    n_estimators: int = 100
    min_samples_leaf: int = 3
    random_state: int | None = 0

    def for_city(self, city: str) -> dict[str, str | int]:
        """The script's hyperparameters by their CLI names (what SageMaker passes as ``--name value``)."""
        values: dict[str, str | int] = {
            "n-estimators": self.n_estimators,
            "min-samples-leaf": self.min_samples_leaf,
            "model-name": city,
        }
        if self.random_state is not None:
            values["random-state"] = self.random_state
        return values


@dataclass(frozen=True)
class CityResult:
    city: str
    job_name: str
    metrics: Mapping[str, Any]
    artifact: Path
    inputs: Mapping[str, Path]
    wall_seconds: float


@dataclass(frozen=True)
class CityFailure:
    city: str
    job_name: str
    returncode: int
    stderr: str
    wall_seconds: float

    def stderr_tail(self, lines: int = _STDERR_TAIL_LINES) -> str:
        return "\n".join(self.stderr.rstrip().splitlines()[-lines:])


@dataclass
class RunReport:
    results: list[CityResult] = field(default_factory=list)
    failures: list[CityFailure] = field(default_factory=list)
    wall_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failures

    def raise_for_failures(self) -> RunReport:
        if self.failures:
            raise TrainingJobFailed(self.failures)
        return self


# --------------------------------------------------------------------------- local processes


def channel_dirs(city_dir: Path) -> dict[str, Path]:
    return {channel: city_dir / "input" / "data" / channel for channel in CHANNELS}


def write_inputs(city_data: data_module.CityData, city_dir: Path) -> dict[str, Path]:
    """Write the city's splits into its channel directories; returns split -> CSV path."""
    dirs = channel_dirs(city_dir)
    return data_module.write_city_csvs(city_data, {CHANNELS[channel]: path for channel, path in dirs.items()})


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


# --------------------------------------------------------------------------- S3 adapter


class S3Publisher:
    """Uploads training inputs, code and artifacts under one bucket/prefix; raises DependencyFailure."""

    def __init__(self, s3_client: Any, bucket: str, layout: naming.KeyLayout) -> None:
        self._s3 = s3_client
        self.bucket = bucket
        self.layout = layout

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def upload(self, path: Path, key: str) -> str:
        try:
            self._s3.upload_file(str(path), self.bucket, key)
        except (ClientError, BotoCoreError, S3UploadFailedError) as error:
            raise DependencyFailure(f"cannot upload {path} to s3://{self.bucket}/{key}: {error}") from error
        return key

    def publish_inputs(self, city: str, inputs: Mapping[str, Path]) -> list[str]:
        return [self.upload(path, self.layout.prep_key(city, split)) for split, path in sorted(inputs.items())]

    def publish_artifact(self, city: str, job: str, artifact: Path) -> str:
        return self.upload(artifact, self.layout.training_output_key(city, job))

    def publish_sourcedir(self, archive: Path) -> str:
        digest = hashlib.sha256(archive.read_bytes()).hexdigest()
        return self.uri(self.upload(archive, self.layout.sourcedir_key(digest)))


def publish_local_run(publisher: S3Publisher, report: RunReport) -> dict[str, list[str]]:
    """Upload each trained city's inputs, then its artifact last (the artifact triggers model-sync)."""
    keys: dict[str, list[str]] = {}
    for result in report.results:
        keys[result.city] = publisher.publish_inputs(result.city, result.inputs)
        keys[result.city].append(publisher.publish_artifact(result.city, result.job_name, result.artifact))
    return keys


# --------------------------------------------------------------------------- SageMaker


@dataclass(frozen=True)
class SageMakerSettings:
    role_arn: str
    region: str
    instance_type: str = "ml.m5.large"
    instance_count: int = 1
    volume_size_gb: int = 5
    max_runtime_seconds: int = 3600
    image_version: str | None = None

    @property
    def image_uri(self) -> str:
        return images.sklearn_image_uri(self.region, self.image_version)


def training_job_request(
    city: str,
    job: str,
    *,
    bucket: str,
    layout: naming.KeyLayout,
    settings: SageMakerSettings,
    sourcedir_uri: str,
    hyperparameters: Hyperparameters,
    include_test: bool = True,
) -> dict[str, Any]:
    """The CreateTrainingJob request for one city (script mode in the scikit-learn image).

    Hyperparameter values are JSON-encoded strings, as the SageMaker Python SDK sends them; the
    training toolkit ``json.loads`` each one and passes user ones to the script as ``--name value``.
    ``sagemaker_program``/``sagemaker_submit_directory`` tell it what to download and run.
    """
    hps: dict[str, Any] = {
        **hyperparameters.for_city(city),
        "sagemaker_program": packaging.ENTRY_POINT,
        "sagemaker_submit_directory": sourcedir_uri,
        "sagemaker_region": settings.region,
        "sagemaker_job_name": job,
        "sagemaker_container_log_level": 20,
    }
    channels = [name for name in CHANNELS if include_test or name != "test"]
    return {
        "TrainingJobName": naming.validate_job(job),
        "HyperParameters": {name: json.dumps(value) for name, value in hps.items()},
        "AlgorithmSpecification": {
            "TrainingImage": settings.image_uri,
            "TrainingInputMode": "File",
            "MetricDefinitions": [dict(definition) for definition in METRIC_DEFINITIONS],
        },
        "RoleArn": settings.role_arn,
        "InputDataConfig": [
            {
                "ChannelName": channel,
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": f"s3://{bucket}/{layout.prep_split_prefix(city, CHANNELS[channel])}",
                        "S3DataDistributionType": "FullyReplicated",
                    }
                },
                "ContentType": "text/csv",
                "CompressionType": "None",
            }
            for channel in channels
        ],
        "OutputDataConfig": {"S3OutputPath": f"s3://{bucket}/{layout.training_output_city_prefix(city)}"},
        "ResourceConfig": {
            "InstanceType": settings.instance_type,
            "InstanceCount": settings.instance_count,
            "VolumeSizeInGB": settings.volume_size_gb,
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": settings.max_runtime_seconds},
        "Tags": [{"Key": "city", "Value": city}],
    }


@dataclass(frozen=True)
class SubmittedJob:
    city: str
    job_name: str
    arn: str
    output_key: str


def submit_sagemaker_jobs(
    sagemaker_client: Any,
    publisher: S3Publisher,
    cities: Sequence[str],
    work_dir: Path,
    settings: SageMakerSettings,
    *,
    hyperparameters: Hyperparameters | None = None,
    houses_per_city: int = schema.HOUSES_PER_CITY,
    seed: int = data_module.DEFAULT_SEED,
) -> list[SubmittedJob]:
    """Upload inputs and code, then start one training job per city."""
    hyperparameters = hyperparameters or Hyperparameters()
    work_dir = Path(work_dir).resolve()
    sourcedir_uri = publisher.publish_sourcedir(packaging.build_sourcedir(work_dir / "sourcedir.tar.gz"))
    submitted = []
    for city in dict.fromkeys(naming.validate_city(c) for c in cities):
        inputs = write_inputs(data_module.generate_city(city, houses_per_city, seed), work_dir / city)
        publisher.publish_inputs(city, inputs)
        job = naming.job_name(city)
        request = training_job_request(
            city,
            job,
            bucket=publisher.bucket,
            layout=publisher.layout,
            settings=settings,
            sourcedir_uri=sourcedir_uri,
            hyperparameters=hyperparameters,
        )
        try:
            response = sagemaker_client.create_training_job(**request)
        except (ClientError, BotoCoreError) as error:
            raise DependencyFailure(f"CreateTrainingJob {job} for {city} failed: {error}") from error
        submitted.append(
            SubmittedJob(city, job, response["TrainingJobArn"], publisher.layout.training_output_key(city, job))
        )
    return submitted


def wait_for_jobs(sagemaker_client: Any, jobs: Sequence[SubmittedJob], echo: Callable[[str], None] = print) -> bool:
    """Block until every job stops; True when all completed."""
    waiter = sagemaker_client.get_waiter("training_job_completed_or_stopped")
    all_ok = True
    for job in jobs:
        waiter.wait(TrainingJobName=job.job_name, WaiterConfig={"Delay": 30, "MaxAttempts": 240})
        status = sagemaker_client.describe_training_job(TrainingJobName=job.job_name)
        echo(f"{job.city}: {status['TrainingJobStatus']} {status.get('FailureReason', '')}".rstrip())
        all_ok &= status["TrainingJobStatus"] == "Completed"
    return all_ok


# --------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training.jobs", description="Train house-price models per city.")
    parser.add_argument("--cities", nargs="+", default=[], metavar="CITY")
    parser.add_argument("--all-seed-cities", action="store_true", help=f"train {', '.join(schema.SEED_CITIES)}")
    parser.add_argument("--mode", choices=("local", "sagemaker"), default="local")
    parser.add_argument("--bucket", help="S3 bucket for --publish / sagemaker mode")
    parser.add_argument("--prefix", default=naming.DEFAULT_PREFIX)
    parser.add_argument("--publish", action="store_true", help="local mode: upload inputs and artifacts to S3")
    parser.add_argument("--role-arn", help="sagemaker mode: execution role")
    parser.add_argument("--region", help="AWS region (default: the boto3 session's)")
    parser.add_argument("--instance-type", default="ml.m5.large")
    parser.add_argument("--image-version", choices=images.load_table().versions, default=None)
    parser.add_argument("--wait", action="store_true", help="sagemaker mode: wait for the jobs to finish")
    parser.add_argument("--work-dir", type=Path, default=DEFAULT_WORK_DIR)
    parser.add_argument("--workers", type=int, default=None, help="parallel processes (default: CPU count)")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--houses", type=int, default=schema.HOUSES_PER_CITY, help="houses per city")
    parser.add_argument("--seed", type=int, default=data_module.DEFAULT_SEED)
    parser.add_argument("--n-estimators", type=int, default=100)
    parser.add_argument("--min-samples-leaf", type=int, default=3)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    import boto3

    from training.report import make_console, print_results

    parser = _parser()
    args = parser.parse_args(argv)
    cities = [*args.cities, *(schema.SEED_CITIES if args.all_seed_cities else ())]
    if not cities:
        parser.error("give --cities or --all-seed-cities")
    try:
        cities = [naming.validate_city(city, "--cities") for city in cities]
    except DomainError as error:
        parser.error(error.message)
    if (args.publish or args.mode == "sagemaker") and not args.bucket:
        parser.error("--bucket is required with --publish and with --mode sagemaker")
    hyperparameters = Hyperparameters(args.n_estimators, args.min_samples_leaf, random_state=args.seed)
    layout = naming.KeyLayout(args.prefix)
    console = make_console(stderr=True)
    region = args.region or boto3.session.Session().region_name

    if args.mode == "sagemaker":
        if not args.role_arn:
            parser.error("--role-arn is required with --mode sagemaker")
        if not region:
            parser.error("--region is required (no default region configured)")
        settings = SageMakerSettings(args.role_arn, region, args.instance_type, image_version=args.image_version)
        publisher = S3Publisher(boto3.client("s3", region_name=region), args.bucket, layout)
        sagemaker = boto3.client("sagemaker", region_name=region)
        jobs = submit_sagemaker_jobs(
            sagemaker,
            publisher,
            cities,
            args.work_dir,
            settings,
            hyperparameters=hyperparameters,
            houses_per_city=args.houses,
            seed=args.seed,
        )
        for job in jobs:
            print(f"{job.city}\t{job.job_name}\t{publisher.uri(job.output_key)}")
        return 0 if not args.wait or wait_for_jobs(sagemaker, jobs) else 1

    report = train_locally(
        cities,
        args.work_dir,
        hyperparameters=hyperparameters,
        houses_per_city=args.houses,
        seed=args.seed,
        workers=args.workers,
        progress=not args.no_progress,
        console=console,
    )
    print_results(report.results, report.failures, console=console, wall_seconds=report.wall_seconds)
    if args.publish:
        publisher = S3Publisher(boto3.client("s3", region_name=region), args.bucket, layout)
        for city, keys in publish_local_run(publisher, report).items():
            print(f"{city}\t{publisher.uri(keys[-1])}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
