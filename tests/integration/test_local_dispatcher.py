"""local.moto_services + local.dispatcher against a real moto server: S3 → SQS events, retries, and Lambda's
on-failure invocation records (the event plus the error) once the attempts are exhausted."""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import partial
from typing import Any

import pytest

from local.dispatcher import Dispatcher
from local.lambda_runtime import LambdaContext
from local.moto_services import MotoServer, client, create_bucket, create_event_queue, subscribe
from local.ready import EventQueue
from local.template import S3Trigger
from tests.lambda_contexts import lambda_context

REGION = "us-east-1"
BUCKET = "local-dispatch-test"
TRIGGER = S3Trigger("Upload", "Bucket", BUCKET, ("s3:ObjectCreated:*",), prefix="P/model_artifacts/", suffix=".tar.gz")
MATCHING_KEY = "P/model_artifacts/Chicago_IL/job-1/output/model.tar.gz"


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    with MotoServer() as server:
        create_bucket(server.url, REGION, BUCKET)
        yield server.url


@pytest.fixture
def queue(moto_url: str, request: pytest.FixtureRequest) -> EventQueue:
    # A fresh queue (3 attempts, like MaximumRetryAttempts: 2) subscribed to the bucket per test
    name = f"q-{request.node.name[:40].replace('[', '-').replace(']', '')}"
    created = create_event_queue(
        moto_url, REGION, "Sync", name, max_attempts=3, function_timeout_seconds=1, on_failure_queue_name=f"{name}-fail"
    )
    subscribe(moto_url, REGION, [(TRIGGER, created)])
    return created


FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:house-prices-local-ModelSyncFunction"


class Recorder:
    """A fake model-sync handler: fails the first ``failures`` calls, then succeeds."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.events: list[dict[str, Any]] = []

    def __call__(self, event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        self.events.append(event)
        if len(self.events) <= self.failures:
            raise RuntimeError(f"transient failure {len(self.events)}")
        return {"ok": True}


def _drain(dispatcher: Dispatcher, rounds: int = 10) -> list[str]:
    statuses: list[str] = []
    for _ in range(rounds):
        statuses.extend(outcome.status for outcome in dispatcher.poll_once())
    return statuses


def _count(moto_url: str, queue_url: str) -> int:
    attributes = client("sqs", moto_url, REGION).get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


def _dispatcher(moto_url: str, queue: EventQueue, handler: Recorder) -> Dispatcher:
    # Backoff 0: a failed message is visible again at once, so the test needs no sleeps.
    return Dispatcher(
        client("sqs", moto_url, REGION),
        queue.queue_url,
        handler,
        partial(lambda_context, "ModelSyncFunction"),
        wait_seconds=0,
        backoff_base_seconds=0,
        backoff_cap_seconds=0,
        max_attempts=queue.max_attempts,
        on_failure_queue_url=queue.on_failure_url,
        function_arn=FUNCTION_ARN,
    )


def _upload_and_drain(moto_url: str, queue: EventQueue, handler: Recorder) -> list[str]:
    """Upload one artifact the trigger matches, then poll until its event is done; every outcome's status."""
    client("s3", moto_url, REGION).put_object(Bucket=BUCKET, Key=MATCHING_KEY, Body=b"artifact")
    return _drain(_dispatcher(moto_url, queue, handler))


def _the_failure_record(moto_url: str, queue: EventQueue) -> dict[str, Any]:
    """The one invocation record on the queue's on-failure destination (the test fails if there are more)."""
    dead = client("sqs", moto_url, REGION).receive_message(QueueUrl=queue.on_failure_url, MaxNumberOfMessages=10)
    (message,) = dead["Messages"]
    record: dict[str, Any] = json.loads(message["Body"])
    return record


def test_matching_upload_invokes_the_handler_once_and_is_deleted(moto_url: str, queue: EventQueue) -> None:
    # Given a handler that succeeds, and an upload matching the template's prefix and suffix
    handler = Recorder()
    s3 = client("s3", moto_url, REGION)
    s3.put_object(Bucket=BUCKET, Key=MATCHING_KEY, Body=b"artifact")
    s3.put_object(Bucket=BUCKET, Key="P/multi_model_artifacts/Chicago_IL.v.tar.gz", Body=b"not a trigger")
    s3.put_object(Bucket=BUCKET, Key="P/model_artifacts/Chicago_IL/job-1/output/notes.txt", Body=b"wrong suffix")
    # When the dispatcher polls
    statuses = _drain(_dispatcher(moto_url, queue, handler), rounds=3)
    # Then S3's test event was skipped and only the matching key reached the handler, as S3 sends it
    assert statuses == ["skipped", "succeeded"]
    (event,) = handler.events
    (record,) = event["Records"]
    assert record["eventName"].startswith("ObjectCreated:")
    assert record["s3"]["bucket"]["name"] == BUCKET
    # moto URL-encodes the key like S3 does ('/' as %2F); the stand-in passes it through untouched
    assert record["s3"]["object"]["key"] == MATCHING_KEY.replace("/", "%2F")
    assert _count(moto_url, queue.queue_url) == 0


def test_failures_are_retried_then_succeed(moto_url: str, queue: EventQueue) -> None:
    # Given a handler that fails twice, when an upload's event is polled
    handler = Recorder(failures=2)
    statuses = _upload_and_drain(moto_url, queue, handler)
    # Then two failures, then the third attempt (Lambda's 1 + 2 retries) succeeds and deletes the message
    assert statuses == ["skipped", "failed", "failed", "succeeded"]
    assert len(handler.events) == 3
    assert _count(moto_url, queue.queue_url) == 0
    assert _count(moto_url, queue.on_failure_url) == 0


def test_an_event_that_keeps_failing_becomes_an_invocation_record_with_its_error(
    moto_url: str, queue: EventQueue
) -> None:
    # Given a handler that always fails
    handler = Recorder(failures=100)
    # When an upload's event is polled until the attempts (1 + MaximumRetryAttempts) are used up
    statuses = _upload_and_drain(moto_url, queue, handler)
    # Then exactly 3 invocations ran, the event left the queue, and one record went to the destination
    assert statuses == ["skipped", "failed", "failed", "dead"]
    assert len(handler.events) == 3
    assert _count(moto_url, queue.queue_url) == 0
    record = _the_failure_record(moto_url, queue)
    # shaped like Lambda's on-failure record: the event, the attempts and the error with its trace
    assert record["version"] == "1.0"
    assert record["timestamp"].endswith("Z")
    context = record["requestContext"]
    assert context["condition"] == "RetriesExhausted"
    assert context["approximateInvokeCount"] == 3
    assert context["functionArn"] == f"{FUNCTION_ARN}:$LATEST"
    assert context["requestId"]
    assert record["requestPayload"]["Records"][0]["s3"]["object"]["key"] == MATCHING_KEY.replace("/", "%2F")
    assert record["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"}
    error = record["responsePayload"]
    assert error["errorType"] == "RuntimeError"
    assert error["errorMessage"] == "transient failure 3"
    assert error["requestId"] == context["requestId"]
    assert any("Recorder.__call__" in frame or "in __call__" in frame for frame in error["stackTrace"])


def test_a_body_that_is_not_json_ends_as_a_record_keeping_the_body(moto_url: str, queue: EventQueue) -> None:
    handler = Recorder()
    client("sqs", moto_url, REGION).send_message(QueueUrl=queue.queue_url, MessageBody="not json")
    statuses = _drain(_dispatcher(moto_url, queue, handler))
    assert statuses == ["skipped", "failed", "failed", "dead"]
    assert handler.events == []
    record = _the_failure_record(moto_url, queue)
    assert record["requestPayload"] == "not json"
    assert record["responsePayload"]["errorType"] == "JSONDecodeError"
