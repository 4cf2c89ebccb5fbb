"""SageMaker training jobs: one ``CreateTrainingJob`` per shard of segments, then follow them to the end.

Thousands of segments are not thousands of jobs (each minutes of start-up, against per-account job
quotas and API throttles): segments are packed into shards of at most ``--segments-per-job``,
balanced by rows, and each job runs ``train.py --segments`` over its shard. The job uploads every
segment's ``model.tar.gz`` to that segment's training-output key, so model-sync's per-city S3 event,
gate and registry see exactly what a one-city job used to write.

``follow_jobs`` is what the SageMaker Python SDK's ``fit(wait=True, logs=True)`` does
(``sagemaker.session.logs_for_job``), for several jobs at once: poll ``DescribeTrainingJob``, print
each new secondary status (``Starting``, ``Downloading``, ``Training``, ``Uploading``, …) with its
message, stream every instance's log stream (``/aws/sagemaker/TrainingJobs``, ``{job}/algo-N-…``)
from where it left off, and after a job stops read its logs once more, since CloudWatch receives the
last lines after the status changes.
"""

from __future__ import annotations

import io
import json
import tarfile
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from house_prices import naming
from house_prices.errors import DependencyFailure
from ops import images
from training import packaging
from training.inputs import Hyperparameters, write_inputs
from training.publishing import PUBLISH_THREADS, S3Publisher
from training.shards import SegmentInput, plan_shards, write_shard
from training.train import SHARD_METRIC_LINE, SHARD_REPORT

# Shard jobs' metric lines (train.py --segments prints them), as SageMaker MetricDefinitions.
METRIC_DEFINITIONS = tuple(
    {"Name": f"segments:{outcome}", "Regex": SHARD_METRIC_LINE.format(outcome=outcome, count="([0-9]+)")}
    for outcome in ("trained", "failed")
)
# 500 segments of ~1,000 rows train in minutes on one ml.m5.large; 10,000 segments are 20 jobs.
DEFAULT_SEGMENTS_PER_JOB = 500
LOG_GROUP = "/aws/sagemaker/TrainingJobs"
TERMINAL_STATUSES = frozenset({"Completed", "Failed", "Stopped"})
DEFAULT_POLL_SECONDS = 10.0


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


def shard_job_request(
    job: str,
    *,
    segments: int,
    bucket: str,
    layout: naming.KeyLayout,
    settings: SageMakerSettings,
    sourcedir_uri: str,
    hyperparameters: Hyperparameters,
) -> dict[str, Any]:
    """The CreateTrainingJob request for one shard (script mode in the scikit-learn image).

    The job's train channel is its shard (``KeyLayout.shard_input_prefix``); ``train.py --segments``
    trains each segment and uploads its ``model.tar.gz`` to
    ``model_artifacts/{city}/{job}/output/model.tar.gz``: the per-city training-output key whose
    S3 event runs model-sync, exactly as a one-city job's output did. The job's own output (its
    shard report) goes under ``training_jobs/``, outside the trigger prefix.

    Hyperparameter values are JSON-encoded strings, as the SageMaker Python SDK sends them; the
    training toolkit ``json.loads`` each one and passes user ones to the script as ``--name value``.
    ``sagemaker_program``/``sagemaker_submit_directory`` tell it what to download and run.
    """
    hps: dict[str, Any] = {
        **hyperparameters.for_shard(job),
        "artifact-prefix": f"s3://{bucket}/{layout.training_output_prefix}",
        "sagemaker_program": packaging.ENTRY_POINT,
        "sagemaker_submit_directory": sourcedir_uri,
        "sagemaker_region": settings.region,
        "sagemaker_job_name": job,
        "sagemaker_container_log_level": 20,
    }
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
                "ChannelName": "train",
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": f"s3://{bucket}/{layout.shard_input_prefix(job)}",
                        "S3DataDistributionType": "FullyReplicated",
                    }
                },
                "CompressionType": "None",
            }
        ],
        "OutputDataConfig": {"S3OutputPath": f"s3://{bucket}/{layout.training_jobs_prefix}"},
        "ResourceConfig": {
            "InstanceType": settings.instance_type,
            "InstanceCount": settings.instance_count,
            "VolumeSizeInGB": settings.volume_size_gb,
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": settings.max_runtime_seconds},
        "Tags": [{"Key": "segments", "Value": str(segments)}],
    }


@dataclass(frozen=True)
class SubmittedJob:
    job_name: str
    arn: str
    cities: tuple[str, ...]
    output_keys: Mapping[str, str]

    @property
    def label(self) -> str:
        return self.cities[0] if len(self.cities) == 1 else f"{self.job_name} ({len(self.cities)} segments)"


def publish_segment_inputs(
    publisher: S3Publisher, segments: Sequence[SegmentInput], work_dir: Path, threads: int = PUBLISH_THREADS
) -> None:
    """Each segment's split CSVs at its prep keys: the gate measures candidates on ``val``."""

    def publish(segment: SegmentInput) -> None:
        publisher.publish_inputs(segment.city, write_inputs(segment.data, work_dir / segment.city))

    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        list(pool.map(publish, segments))


def submit_sagemaker_jobs(
    sagemaker_client: Any,
    publisher: S3Publisher,
    segments: Sequence[SegmentInput],
    work_dir: Path,
    settings: SageMakerSettings,
    *,
    hyperparameters: Hyperparameters | None = None,
    segments_per_job: int = DEFAULT_SEGMENTS_PER_JOB,
    now: datetime | None = None,
) -> list[SubmittedJob]:
    """Upload the code and one shard per job (at most ``segments_per_job`` segments, balanced by rows), then
    start ceil(N / segments_per_job) training jobs. The segments' prep CSVs must be published first
    (``publish_segment_inputs``), so every artifact finds its validation rows when model-sync runs."""
    hyperparameters = hyperparameters or Hyperparameters()
    work_dir = Path(work_dir).resolve()
    sourcedir_uri = publisher.publish_sourcedir(packaging.build_sourcedir(work_dir / "sourcedir.tar.gz"))
    now = now or datetime.now(UTC)
    submitted = []
    for index, shard in enumerate(plan_shards(segments, max_per_shard=segments_per_job)):
        job = naming.shard_job_name(index, now)
        channel = work_dir / "jobs" / job / "train"
        prefix = publisher.layout.shard_input_prefix(job)
        for path in write_shard(shard, channel):
            publisher.upload(path, prefix + path.name)
        request = shard_job_request(
            job,
            segments=len(shard),
            bucket=publisher.bucket,
            layout=publisher.layout,
            settings=settings,
            sourcedir_uri=sourcedir_uri,
            hyperparameters=hyperparameters,
        )
        try:
            response = sagemaker_client.create_training_job(**request)
        except (ClientError, BotoCoreError) as error:
            raise DependencyFailure(f"CreateTrainingJob {job} ({len(shard)} segments) failed: {error}") from error
        cities = tuple(segment.city for segment in shard)
        keys = {city: publisher.layout.training_output_key(city, job) for city in cities}
        submitted.append(SubmittedJob(job, response["TrainingJobArn"], cities, keys))
    return submitted


def shard_outcomes(sagemaker_client: Any, publisher: S3Publisher, job: SubmittedJob) -> dict[str, dict[str, Any]]:
    """Each segment's outcome in a finished shard job: its ``report.json`` entry, or the job's failure reason.

    A completed job's own ``model.tar.gz`` (under ``training_jobs/``) holds the shard report that
    ``train.py --segments`` wrote; a job that failed or stopped fails every segment it had not reported.
    """
    try:
        description = sagemaker_client.describe_training_job(TrainingJobName=job.job_name)
    except (ClientError, BotoCoreError) as error:
        raise DependencyFailure(f"DescribeTrainingJob {job.job_name} failed: {error}") from error
    status = description.get("TrainingJobStatus", "")
    reason = description.get("FailureReason") or f"job {job.job_name} {status.lower() or 'did not finish'}"
    reported: dict[str, dict[str, Any]] = {}
    if status == "Completed":
        archive = publisher.read_bytes(f"{publisher.layout.training_jobs_prefix}{job.job_name}/output/model.tar.gz")
        if archive is not None:
            with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
                member = tar.extractfile(SHARD_REPORT)
                report = json.loads(member.read()) if member is not None else {"segments": []}
            reported = {str(entry.get("city")): entry for entry in report.get("segments", [])}
    missing = {"status": "failed", "error": reason}
    return {city: reported.get(city, missing) for city in job.cities}


@dataclass
class _FollowedJob:
    """What has been shown of one job so far."""

    job: SubmittedJob
    transitions_shown: int = 0
    # log stream name -> the nextForwardToken after the last event printed
    tokens: dict[str, str | None] = field(default_factory=dict)
    status: str = ""
    description: dict[str, Any] = field(default_factory=dict)
    finished: bool = False


def follow_jobs(
    sagemaker_client: Any,
    logs_client: Any,
    jobs: Sequence[SubmittedJob],
    echo: Callable[[str], None] = print,
    *,
    poll_seconds: float = DEFAULT_POLL_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Show each job's progress and stream its CloudWatch logs until every job stops; True if all completed."""
    followed = [_FollowedJob(job) for job in jobs]
    while True:
        for state in followed:
            if state.finished:
                continue
            # Read the status first: logs read after a terminal status are then complete.
            stopped = _show_status(sagemaker_client, state, echo)
            _show_new_log_lines(logs_client, state, echo)
            if stopped:
                state.finished = True
                echo(_summary(state))
        if all(state.finished for state in followed):
            return all(state.status == "Completed" for state in followed)
        sleep(poll_seconds)


def _show_status(sagemaker_client: Any, state: _FollowedJob, echo: Callable[[str], None]) -> bool:
    """Print new secondary status transitions; True once the job has stopped."""
    try:
        description = sagemaker_client.describe_training_job(TrainingJobName=state.job.job_name)
    except (ClientError, BotoCoreError) as error:
        raise DependencyFailure(f"DescribeTrainingJob {state.job.job_name} failed: {error}") from error
    state.description = description
    transitions = description.get("SecondaryStatusTransitions", [])
    for transition in transitions[state.transitions_shown :]:
        started = transition.get("StartTime")
        stamp = started.strftime("%H:%M:%S") if hasattr(started, "strftime") else ""
        message = transition.get("StatusMessage", "")
        echo(f"[{state.job.label}] {stamp} {transition['Status']}: {message}".rstrip(": "))
    state.transitions_shown = max(state.transitions_shown, len(transitions))
    state.status = description["TrainingJobStatus"]
    return state.status in TERMINAL_STATUSES


def _show_new_log_lines(logs_client: Any, state: _FollowedJob, echo: Callable[[str], None]) -> None:
    for stream in _log_streams(logs_client, state.job.job_name):
        state.tokens.setdefault(stream, None)
    for stream, token in state.tokens.items():
        state.tokens[stream] = _print_stream(logs_client, stream, token, f"[{state.job.label}] ", echo)


def _log_streams(logs_client: Any, job_name: str) -> list[str]:
    """The job's log streams (one per instance and container), or none before the first line is written."""
    names: list[str] = []
    kwargs: dict[str, Any] = {"logGroupName": LOG_GROUP, "logStreamNamePrefix": f"{job_name}/"}
    try:
        while True:
            page = logs_client.describe_log_streams(**kwargs)
            names += [stream["logStreamName"] for stream in page.get("logStreams", [])]
            if not page.get("nextToken"):
                return names
            kwargs["nextToken"] = page["nextToken"]
    except ClientError as error:
        # The account's first training job creates the log group only when its container first logs.
        if error.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            return names
        raise DependencyFailure(f"DescribeLogStreams for {job_name} failed: {error}") from error
    except BotoCoreError as error:
        raise DependencyFailure(f"DescribeLogStreams for {job_name} failed: {error}") from error


def _print_stream(
    logs_client: Any, stream: str, token: str | None, prefix: str, echo: Callable[[str], None]
) -> str | None:
    """Print every event after ``token``; returns the token to continue from next time."""
    while True:
        kwargs: dict[str, Any] = {"logGroupName": LOG_GROUP, "logStreamName": stream, "startFromHead": True}
        if token:
            kwargs["nextToken"] = token
        try:
            page = logs_client.get_log_events(**kwargs)
        except (ClientError, BotoCoreError) as error:
            raise DependencyFailure(f"GetLogEvents {stream} failed: {error}") from error
        for event in page.get("events", []):
            echo(f"{prefix}{event['message'].rstrip()}")
        following = page.get("nextForwardToken") or token
        # CloudWatch returns the token it was given once the end of the stream is reached.
        if not page.get("events") or following == token:
            return following
        token = following


def _summary(state: _FollowedJob) -> str:
    description = state.description
    parts = [f"[{state.job.label}] {state.job.job_name}: {state.status}"]
    if description.get("FailureReason"):
        parts.append(f"reason: {description['FailureReason']}")
    if description.get("TrainingTimeInSeconds") is not None:
        parts.append(f"training seconds: {description['TrainingTimeInSeconds']}")
    if description.get("BillableTimeInSeconds") is not None:
        parts.append(f"billable seconds: {description['BillableTimeInSeconds']}")
    return "; ".join(parts)
