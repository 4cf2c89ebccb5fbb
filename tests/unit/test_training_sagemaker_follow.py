"""follow_jobs with botocore's Stubber: each job's status changes and CloudWatch log lines, as fit(logs=True)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from training.sagemaker_jobs import LOG_GROUP, SubmittedJob, follow_jobs

JOB = SubmittedJob("Chicago-IL-20261125-040000-000", "arn:job", ("Chicago_IL",), {"Chicago_IL": "k"})
STREAM = f"{JOB.job_name}/algo-1-1764043200"
T0 = datetime(2026, 11, 25, 4, 0, 0, tzinfo=UTC)


def transition(status: str, message: str, minute: int) -> dict[str, Any]:
    return {"Status": status, "StatusMessage": message, "StartTime": T0.replace(minute=minute)}


def description(status: str, secondary: str, transitions: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "TrainingJobName": JOB.job_name,
        "TrainingJobArn": JOB.arn,
        "TrainingJobStatus": status,
        "SecondaryStatus": secondary,
        "SecondaryStatusTransitions": transitions,
        "AlgorithmSpecification": {"TrainingInputMode": "File"},
        "ModelArtifacts": {"S3ModelArtifacts": "s3://b/k"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 5},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
        "CreationTime": T0,
        **extra,
    }


def events(*messages: str) -> list[dict[str, Any]]:
    return [
        {"timestamp": 1764043200000 + i, "message": m, "ingestionTime": 1764043200500} for i, m in enumerate(messages)
    ]


@pytest.fixture
def clients() -> Iterator[tuple[Any, Stubber, Any, Stubber]]:
    sagemaker = boto3.client("sagemaker", region_name="us-east-1")
    logs = boto3.client("logs", region_name="us-east-1")
    with Stubber(sagemaker) as sagemaker_stub, Stubber(logs) as logs_stub:
        yield sagemaker, sagemaker_stub, logs, logs_stub
        sagemaker_stub.assert_no_pending_responses()
        logs_stub.assert_no_pending_responses()


def expect_streams(stub: Stubber, names: list[str]) -> None:
    stub.add_response(
        "describe_log_streams",
        {"logStreams": [{"logStreamName": name} for name in names]},
        {"logGroupName": LOG_GROUP, "logStreamNamePrefix": f"{JOB.job_name}/"},
    )


def expect_events(stub: Stubber, token: str | None, lines: list[dict[str, Any]], next_token: str) -> None:
    params: dict[str, Any] = {"logGroupName": LOG_GROUP, "logStreamName": STREAM, "startFromHead": True}
    if token:
        params["nextToken"] = token
    stub.add_response("get_log_events", {"events": lines, "nextForwardToken": next_token}, params)


def test_progress_and_logs_are_streamed_until_the_job_completes(clients: tuple[Any, Stubber, Any, Stubber]) -> None:
    sagemaker, sagemaker_stub, logs, logs_stub = clients
    starting = [transition("Starting", "Launching requested ML instances", 0)]
    training = [*starting, transition("Training", "Training image download completed.", 3)]
    done = [*training, transition("Completed", "Training job completed", 5)]
    name = {"TrainingJobName": JOB.job_name}
    # Given a job that is starting (no log group yet), then training (logs arrive), then completed
    sagemaker_stub.add_response("describe_training_job", description("InProgress", "Starting", starting), name)
    logs_stub.add_client_error("describe_log_streams", "ResourceNotFoundException", "log group does not exist")
    sagemaker_stub.add_response("describe_training_job", description("InProgress", "Training", training), name)
    expect_streams(logs_stub, [STREAM])
    expect_events(logs_stub, None, events("Invoking script train.py", "AE-at-50th-percentile: 12000"), "f/1")
    expect_events(logs_stub, "f/1", [], "f/1")
    sagemaker_stub.add_response(
        "describe_training_job",
        description("Completed", "Completed", done, TrainingTimeInSeconds=95, BillableTimeInSeconds=95),
        name,
    )
    expect_streams(logs_stub, [STREAM])
    # the last lines reach CloudWatch after the status changed: they are read once more
    expect_events(logs_stub, "f/1", events("Reporting training SUCCESS"), "f/2")
    expect_events(logs_stub, "f/2", [], "f/2")
    lines: list[str] = []
    sleeps: list[float] = []
    # When the job is followed
    ok = follow_jobs(sagemaker, logs, [JOB], echo=lines.append, poll_seconds=7, sleep=sleeps.append)
    # Then each status change and each log line is shown once, in order, then a summary
    assert ok is True
    assert lines == [
        "[Chicago_IL] 04:00:00 Starting: Launching requested ML instances",
        "[Chicago_IL] 04:03:00 Training: Training image download completed.",
        "[Chicago_IL] Invoking script train.py",
        "[Chicago_IL] AE-at-50th-percentile: 12000",
        "[Chicago_IL] 04:05:00 Completed: Training job completed",
        "[Chicago_IL] Reporting training SUCCESS",
        f"[Chicago_IL] {JOB.job_name}: Completed; training seconds: 95; billable seconds: 95",
    ]
    assert sleeps == [7, 7]


def test_a_failed_job_shows_its_reason_and_fails_the_wait(clients: tuple[Any, Stubber, Any, Stubber]) -> None:
    sagemaker, sagemaker_stub, logs, logs_stub = clients
    failed = [transition("Failed", "Training job failed", 2)]
    sagemaker_stub.add_response(
        "describe_training_job",
        description("Failed", "Failed", failed, FailureReason="AlgorithmError: ValueError: boom"),
        {"TrainingJobName": JOB.job_name},
    )
    expect_streams(logs_stub, [STREAM])
    expect_events(logs_stub, None, events("ValueError: boom"), "f/1")
    expect_events(logs_stub, "f/1", [], "f/1")
    lines: list[str] = []
    assert follow_jobs(sagemaker, logs, [JOB], echo=lines.append, sleep=lambda _: None) is False
    assert lines[-2:] == [
        "[Chicago_IL] ValueError: boom",
        f"[Chicago_IL] {JOB.job_name}: Failed; reason: AlgorithmError: ValueError: boom",
    ]
