"""Lambda's asynchronous invoker for S3 events, fed by the SQS queue moto notifies.

For each message: skip S3's ``s3:TestEvent``, run the function's handler in this process with
the S3 event as sent, delete the message only when the handler returns, and otherwise make the
message visible again after an exponential backoff. After 1 + the template's
``MaximumRetryAttempts`` failed attempts it does what Lambda does with an ``EventInvokeConfig``
OnFailure destination: it sends an *invocation record* (the event, the attempt count and the
error with its type and stack trace, :func:`invocation_record`) to the on-failure queue, and only
then deletes the event, so nothing is dropped and every failure keeps its reason. Without a
destination the event is discarded after the attempts, as Lambda discards it, with an error log.
Keys stay exactly as S3 encodes them in events (``/`` as ``%2F`` in moto); decoding is the
handler's job, as on AWS.

``python -m local.dispatcher --function ModelSyncFunction --queue-url URL --ready-file F`` hosts
one function; the stack runs it as a child whose environment points boto3 at moto. With
``--event-source-mapping`` it plays an SQS event source mapping instead (:class:`QueueEventSource`:
the template's ``SQS`` events, e.g. QualityFunction's feedback queue): batches of messages become one
SQS event, and a function may run under both kinds of child at once (one per trigger).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from local.lambda_runtime import Handler, LambdaContext

log = logging.getLogger("local.dispatcher")

TEST_EVENT = "s3:TestEvent"
RECORD_VERSION = "1.0"
# Lambda's conditions for an on-failure record (EventAgeExceeded is not emulated: events are young).
RETRIES_EXHAUSTED = "RetriesExhausted"


@dataclass(frozen=True)
class Outcome:
    message_id: str
    status: str  # "succeeded" | "skipped" | "failed" | "dead" (recorded to the on-failure destination)
    receive_count: int
    error: str = ""


def invocation_record(
    *,
    request_id: str,
    function_arn: str,
    invoke_count: int,
    payload: Any,
    error: BaseException,
    condition: str = RETRIES_EXHAUSTED,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The record Lambda sends to an asynchronous invocation's OnFailure destination.

    Shape from the Lambda developer guide ("Capturing records of Lambda asynchronous invocations");
    ``responsePayload`` is what the Python runtime reports for an unhandled exception.
    """
    stamp = (now or datetime.now(UTC)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {
        "version": RECORD_VERSION,
        "timestamp": stamp,
        "requestContext": {
            "requestId": request_id,
            "functionArn": f"{function_arn}:$LATEST",
            "condition": condition,
            "approximateInvokeCount": invoke_count,
        },
        "requestPayload": payload,
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "responsePayload": {
            "errorMessage": str(error),
            "errorType": type(error).__name__,
            "requestId": request_id,
            "stackTrace": traceback.format_tb(error.__traceback__),
        },
    }


def is_test_event(body: Any) -> bool:
    return isinstance(body, dict) and body.get("Event") == TEST_EVENT


def backoff_seconds(receive_count: int, base: float, cap: float) -> int:
    """Visibility timeout before the next attempt: base, 2×base, 4×base… capped (whole seconds, as SQS wants)."""
    return int(min(cap, base * 2 ** max(0, receive_count - 1)))


class _QueuePoller:
    """Polls one queue until stopped; subclasses say what one poll does."""

    _queue_url: str

    def poll_once(self) -> list[Outcome]:
        raise NotImplementedError

    def run(self, stopped: threading.Event) -> None:
        while not stopped.is_set():
            try:
                self.poll_once()
            except Exception:  # the queue itself failing must not end the loop; retry shortly
                log.exception("polling %s failed", self._queue_url)
                stopped.wait(1.0)


class Dispatcher(_QueuePoller):
    def __init__(
        self,
        sqs_client: Any,
        queue_url: str,
        handler: Handler,
        context_factory: Callable[[], LambdaContext],
        wait_seconds: int = 1,
        backoff_base_seconds: float = 1.0,
        backoff_cap_seconds: float = 60.0,
        max_attempts: int = 3,
        on_failure_queue_url: str | None = None,
        function_arn: str = "",
    ) -> None:
        self._sqs = sqs_client
        self._queue_url = queue_url
        self._handler = handler
        self._context_factory = context_factory
        self._wait_seconds = wait_seconds
        self._backoff_base = backoff_base_seconds
        self._backoff_cap = backoff_cap_seconds
        self._max_attempts = max_attempts
        self._on_failure_url = on_failure_queue_url
        self._function_arn = function_arn

    def poll_once(self) -> list[Outcome]:
        """One long poll; handles every message it receives, one at a time, in order."""
        response = self._sqs.receive_message(
            QueueUrl=self._queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=self._wait_seconds,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        )
        return [self._handle(message) for message in response.get("Messages", [])]

    def _handle(self, message: dict[str, Any]) -> Outcome:
        message_id = message["MessageId"]
        receive_count = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
        event: Any
        try:
            event = json.loads(message["Body"])
        except ValueError as error:
            # Never succeeds: the attempts run out and the record keeps the body and the reason.
            return self._failed(message, receive_count, message["Body"], error, "")
        if is_test_event(event):
            self._delete(message)
            log.info("skipped %s from bucket %s", TEST_EVENT, event.get("Bucket"))
            return Outcome(message_id, "skipped", receive_count)
        started = time.perf_counter()
        context = self._context_factory()
        try:
            result = self._handler(event, context)
        except Exception as error:
            log.exception("invocation failed (attempt %d) for message %s", receive_count, message_id)
            return self._failed(message, receive_count, event, error, context.aws_request_id)
        self._delete(message)
        log.info(
            "invocation succeeded (attempt %d, %.0f ms): %s",
            receive_count,
            (time.perf_counter() - started) * 1000,
            json.dumps(result, default=str)[:500],
        )
        return Outcome(message_id, "succeeded", receive_count)

    def _failed(
        self, message: dict[str, Any], receive_count: int, payload: Any, error: Exception, request_id: str
    ) -> Outcome:
        reason = f"{type(error).__name__}: {error}"
        if receive_count < self._max_attempts:
            delay = backoff_seconds(receive_count, self._backoff_base, self._backoff_cap)
            self._sqs.change_message_visibility(
                QueueUrl=self._queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=delay
            )
            return Outcome(message["MessageId"], "failed", receive_count, reason)
        if self._on_failure_url:
            record = invocation_record(
                request_id=request_id or message["MessageId"],
                function_arn=self._function_arn,
                invoke_count=receive_count,
                payload=payload,
                error=error,
            )
            # Sent before the event is deleted: a crash in between duplicates the record, never loses it.
            self._sqs.send_message(QueueUrl=self._on_failure_url, MessageBody=json.dumps(record, default=str))
            log.error(
                "attempts exhausted (%d); invocation record sent to the on-failure destination: %s",
                receive_count,
                reason,
            )
        else:
            log.error("attempts exhausted (%d); no OnFailure destination, event discarded: %s", receive_count, reason)
        self._delete(message)
        return Outcome(message["MessageId"], "dead", receive_count, reason)

    def _delete(self, message: dict[str, Any]) -> None:
        self._sqs.delete_message(QueueUrl=self._queue_url, ReceiptHandle=message["ReceiptHandle"])


def sqs_event(messages: list[dict[str, Any]], queue_arn: str, region: str) -> dict[str, Any]:
    """The event Lambda's SQS event source mapping sends for ``messages`` (Lambda developer guide)."""
    return {
        "Records": [
            {
                "messageId": message["MessageId"],
                "receiptHandle": message["ReceiptHandle"],
                "body": message["Body"],
                "attributes": dict(message.get("Attributes", {})),
                "messageAttributes": {},
                "md5OfBody": message.get("MD5OfBody", ""),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": region,
            }
            for message in messages
        ]
    }


class QueueEventSource(_QueuePoller):
    """Lambda's SQS event source mapping: poll, invoke with a batch, delete what succeeded.

    With ``report_batch_item_failures`` the function's ``batchItemFailures`` stay in the queue;
    without it, or when the invocation raises, the whole batch does. A message left in the queue
    becomes visible again after a backoff (on AWS: the queue's visibility timeout, whose 180 s would
    only slow the local stack down); the queue's own redrive policy is not emulated.
    """

    def __init__(
        self,
        sqs_client: Any,
        queue_url: str,
        handler: Handler,
        context_factory: Callable[[], LambdaContext],
        queue_arn: str,
        region: str,
        batch_size: int = 10,
        report_batch_item_failures: bool = True,
        wait_seconds: int = 1,
        backoff_base_seconds: float = 1.0,
        backoff_cap_seconds: float = 30.0,
    ) -> None:
        self._sqs = sqs_client
        self._queue_url = queue_url
        self._handler = handler
        self._context_factory = context_factory
        self._queue_arn = queue_arn
        self._region = region
        self._batch_size = batch_size
        self._partial = report_batch_item_failures
        self._wait_seconds = wait_seconds
        self._backoff_base = backoff_base_seconds
        self._backoff_cap = backoff_cap_seconds

    def poll_once(self) -> list[Outcome]:
        response = self._sqs.receive_message(
            QueueUrl=self._queue_url,
            MaxNumberOfMessages=min(10, self._batch_size),
            WaitTimeSeconds=self._wait_seconds,
            MessageSystemAttributeNames=["All"],
        )
        messages = response.get("Messages", [])
        if not messages:
            return []
        failed: set[str]
        error = ""
        try:
            result = self._handler(sqs_event(messages, self._queue_arn, self._region), self._context_factory())
            failed = _batch_item_failures(result) if self._partial else set()
        except Exception as raised:
            log.exception("invocation failed for a batch of %d messages", len(messages))
            failed, error = {m["MessageId"] for m in messages}, f"{type(raised).__name__}: {raised}"
        outcomes = []
        for message in messages:
            count = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
            if message["MessageId"] in failed:
                self._sqs.change_message_visibility(
                    QueueUrl=self._queue_url,
                    ReceiptHandle=message["ReceiptHandle"],
                    VisibilityTimeout=backoff_seconds(count, self._backoff_base, self._backoff_cap),
                )
                outcomes.append(Outcome(message["MessageId"], "failed", count, error or "reported failed"))
            else:
                self._sqs.delete_message(QueueUrl=self._queue_url, ReceiptHandle=message["ReceiptHandle"])
                outcomes.append(Outcome(message["MessageId"], "succeeded", count))
        return outcomes


def _batch_item_failures(result: Any) -> set[str]:
    """The ids a partial batch response names; a malformed response fails the whole batch, as on AWS."""
    if not isinstance(result, dict) or not isinstance(result.get("batchItemFailures", []), list):
        raise ValueError(f"malformed partial batch response: {result!r}")
    return {str(item["itemIdentifier"]) for item in result.get("batchItemFailures", [])}


def main(argv: list[str] | None = None) -> int:
    import boto3

    from local import ready
    from local.lambda_runtime import add_function_arguments, load_function
    from local.process import stop_event

    parser = argparse.ArgumentParser(description="invoke a function for each S3 event on an SQS queue")
    add_function_arguments(parser)
    parser.add_argument("--queue-url", required=True)
    parser.add_argument("--max-attempts", type=int, default=3, help="1 + EventInvokeConfig.MaximumRetryAttempts")
    parser.add_argument("--on-failure-queue-url", help="EventInvokeConfig OnFailure destination (SQS)")
    parser.add_argument("--ready-file", type=Path, required=True)
    parser.add_argument("--backoff-base", type=float, default=1.0)
    parser.add_argument("--backoff-cap", type=float, default=30.0)
    parser.add_argument("--event-source-mapping", help="play the SQS event (by name) of the function instead")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    resources, function, handler = load_function(args)
    # The dispatcher's own client: the queue lives on the same local endpoint as the function's S3.
    sqs = boto3.client("sqs", region_name=resources.region)
    if args.event_source_mapping:
        (trigger,) = [t for t in function.sqs_triggers if t.event_name == args.event_source_mapping]
        arn = sqs.get_queue_attributes(QueueUrl=args.queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        source = QueueEventSource(
            sqs,
            args.queue_url,
            handler,
            lambda: LambdaContext.for_function(function, resources.region, resources.account_id),
            queue_arn=arn,
            region=resources.region,
            batch_size=trigger.batch_size,
            report_batch_item_failures=trigger.report_batch_item_failures,
            backoff_base_seconds=args.backoff_base,
            backoff_cap_seconds=args.backoff_cap,
        )
        stopped = stop_event()
        ready.write(args.ready_file, ready.DispatcherReady(function=function.logical_id, queue_url=args.queue_url))
        source.run(stopped)
        return 0
    dispatcher = Dispatcher(
        sqs,
        args.queue_url,
        handler,
        lambda: LambdaContext.for_function(function, resources.region, resources.account_id),
        backoff_base_seconds=args.backoff_base,
        backoff_cap_seconds=args.backoff_cap,
        max_attempts=args.max_attempts,
        on_failure_queue_url=args.on_failure_queue_url,
        function_arn=f"arn:aws:lambda:{resources.region}:{resources.account_id}:function:{function.function_name}",
    )
    stopped = stop_event()
    ready.write(args.ready_file, ready.DispatcherReady(function=function.logical_id, queue_url=args.queue_url))
    dispatcher.run(stopped)
    return 0


if __name__ == "__main__":
    sys.exit(main())
