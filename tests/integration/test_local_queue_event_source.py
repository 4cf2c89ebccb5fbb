"""local.dispatcher.QueueEventSource against a real moto server: SQS batches, partial batch failures, retries."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from local.dispatcher import QueueEventSource
from local.moto_services import MotoServer, client
from tests.lambda_contexts import lambda_context

REGION = "us-east-1"


@pytest.fixture(scope="module")
def sqs() -> Iterator[Any]:
    with MotoServer() as server:
        yield client("sqs", server.url, REGION)


class Function:
    """Fails the messages whose body is in ``failing`` (partial batch response) while they are there."""

    def __init__(self, failing: set[str] | None = None, raises: bool = False) -> None:
        self.failing = failing or set()
        self.raises = raises
        self.events: list[dict[str, Any]] = []

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        self.events.append(event)
        if self.raises:
            raise RuntimeError("boom")
        return {
            "batchItemFailures": [
                {"itemIdentifier": r["messageId"]} for r in event["Records"] if r["body"] in self.failing
            ]
        }


def source(sqs: Any, name: str, function: Function) -> tuple[QueueEventSource, str]:
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    poller = QueueEventSource(
        sqs, url, function, lambda: lambda_context("QualityFunction"), arn, REGION, backoff_base_seconds=0
    )
    return poller, url


def visible(sqs: Any, url: str) -> int:
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    return int(attributes["Attributes"]["ApproximateNumberOfMessages"])


def test_a_batch_is_one_sqs_event_and_only_reported_failures_stay(sqs: Any) -> None:
    # Given three messages, one of which the function reports failed
    function = Function(failing={"b"})
    poller, url = source(sqs, "esm-partial", function)
    for body in ("a", "b", "c"):
        sqs.send_message(QueueUrl=url, MessageBody=body)
    # When the source polls until the queue is drained of what succeeded
    outcomes = []
    while len(outcomes) < 3:
        outcomes += poller.poll_once()
    # Then the function saw SQS's event shape, and only "b" is back in the queue
    record = function.events[0]["Records"][0]
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"].endswith(":esm-partial")
    assert sorted(o.status for o in outcomes) == ["failed", "succeeded", "succeeded"]
    function.failing.clear()
    retried = []
    while not retried:
        retried = poller.poll_once()
    assert [o.status for o in retried] == ["succeeded"]
    assert retried[0].receive_count == 2
    assert visible(sqs, url) == 0


def test_an_invocation_that_raises_leaves_the_whole_batch(sqs: Any) -> None:
    poller, url = source(sqs, "esm-raises", Function(raises=True))
    sqs.send_message(QueueUrl=url, MessageBody="x")
    outcomes = []
    while not outcomes:
        outcomes = poller.poll_once()
    assert outcomes[0].status == "failed"
    assert "RuntimeError" in outcomes[0].error
