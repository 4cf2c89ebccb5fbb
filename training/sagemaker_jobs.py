"""SageMaker training jobs: submit one ``CreateTrainingJob`` per city, then follow them to the end.

Submission uploads the same inputs a local run writes plus ``sourcedir.tar.gz`` and asks for
``S3OutputPath = s3://BUCKET/PREFIX/model_artifacts/{city}/``; SageMaker writes
``{job}/output/model.tar.gz`` below it, the training-output key that triggers model-sync.

``follow_jobs`` is what the SageMaker Python SDK's ``fit(wait=True, logs=True)`` does
(``sagemaker.session.logs_for_job``), for several jobs at once: poll ``DescribeTrainingJob``, print
each new secondary status (``Starting``, ``Downloading``, ``Training``, ``Uploading``, …) with its
message, stream every instance's log stream (``/aws/sagemaker/TrainingJobs``, ``{job}/algo-N-…``)
from where it left off, and after a job stops read its logs once more, since CloudWatch receives the
last lines after the status changes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from house_prices import naming, schema
from house_prices.errors import DependencyFailure
from training import data as data_module
from training import images, packaging
from training.inputs import CHANNELS, Hyperparameters, write_inputs
from training.publishing import S3Publisher

# The seed's metric lines, as SageMaker MetricDefinitions (train.py prints them).
METRIC_DEFINITIONS = tuple(
    {"Name": f"validation:ae-p{q}", "Regex": f"AE-at-{q}th-percentile: ([0-9.]+).*$"} for q in (10, 50, 90)
)
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
        echo(f"[{state.job.city}] {stamp} {transition['Status']}: {message}".rstrip(": "))
    state.transitions_shown = max(state.transitions_shown, len(transitions))
    state.status = description["TrainingJobStatus"]
    return state.status in TERMINAL_STATUSES


def _show_new_log_lines(logs_client: Any, state: _FollowedJob, echo: Callable[[str], None]) -> None:
    for stream in _log_streams(logs_client, state.job.job_name):
        state.tokens.setdefault(stream, None)
    for stream, token in state.tokens.items():
        state.tokens[stream] = _print_stream(logs_client, stream, token, f"[{state.job.city}] ", echo)


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
    parts = [f"[{state.job.city}] {state.job.job_name}: {state.status}"]
    if description.get("FailureReason"):
        parts.append(f"reason: {description['FailureReason']}")
    if description.get("TrainingTimeInSeconds") is not None:
        parts.append(f"training seconds: {description['TrainingTimeInSeconds']}")
    if description.get("BillableTimeInSeconds") is not None:
        parts.append(f"billable seconds: {description['BillableTimeInSeconds']}")
    return "; ".join(parts)
