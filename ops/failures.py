"""``python -m ops failed`` / ``python -m ops redrive``: model-sync events that exhausted their attempts.

They sit in the function's OnFailure destination (an SQS queue, template ``ModelSyncDeadLetterQueue``)
as Lambda invocation records: the S3 event (``requestPayload``), the attempt count and the error
(``responsePayload``). ``failed`` lists them without consuming them. ``redrive`` runs model-sync's
logic here, with the operator's credentials, on each record's S3 event (exactly what the function
would do, as ``ops sync`` does) and deletes the record once the event is handled; a record whose
event fails again stays in the queue, and the new error is shown.

Queue: as for ``ops status`` (ops.config): ``--queue-url``, else ``MODEL_SYNC_FAILURE_QUEUE_URL``, else
the deployed stack's output ``ModelSyncDeadLetterQueueUrl`` (``--stack``), else ``.local/stack.json``.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Sequence
from typing import Any

import boto3
from botocore.exceptions import ClientError

from ops.config import ConfigError, OpsConfig
from ops.failure_records import FailureRecord

COMMANDS = ("failed", "redrive")
# Long enough for a redrive to finish a record before anyone else sees it again.
_REDRIVE_VISIBILITY_SECONDS = 300
_LIST_VISIBILITY_SECONDS = 10


def add_commands(commands: Any) -> None:
    for name, text in (
        ("failed", "list model-sync events that exhausted their attempts, with their error"),
        ("redrive", "run model-sync again on failed events; delete each record once handled"),
    ):
        command = commands.add_parser(name, help=text)
        if name == "redrive":
            command.add_argument("ids", nargs="*", help="record message ids (default: every record)")


class FailureQueue:
    def __init__(self, sqs: Any, url: str) -> None:
        self._sqs = sqs
        self._url = url

    def receive_all(self, visibility_seconds: int) -> Iterator[FailureRecord]:
        """Every record now visible, once each (they stay hidden for ``visibility_seconds``)."""
        seen: set[str] = set()
        while True:
            messages = self._sqs.receive_message(
                QueueUrl=self._url, MaxNumberOfMessages=10, WaitTimeSeconds=0, VisibilityTimeout=visibility_seconds
            ).get("Messages", [])
            fresh = [m for m in messages if m["MessageId"] not in seen]
            if not fresh:
                return
            for message in fresh:
                seen.add(message["MessageId"])
                yield FailureRecord.from_message(message)

    def release(self, event: FailureRecord) -> None:
        self._sqs.change_message_visibility(QueueUrl=self._url, ReceiptHandle=event.receipt_handle, VisibilityTimeout=0)

    def delete(self, event: FailureRecord) -> None:
        self._sqs.delete_message(QueueUrl=self._url, ReceiptHandle=event.receipt_handle)


def list_failed(queue: FailureQueue) -> list[dict[str, Any]]:
    events = list(queue.receive_all(_LIST_VISIBILITY_SECONDS))
    for event in events:
        queue.release(event)
    return sorted((event.row() for event in events), key=lambda row: str(row["timestamp"]))


def redrive(queue: FailureQueue, sync: Any, ids: Sequence[str]) -> list[dict[str, Any]]:
    """Re-run ``sync`` (model-sync's ``sync_event_records``) on each selected record's S3 event."""
    results: list[dict[str, Any]] = []
    wanted = set(ids)
    for event in list(queue.receive_all(_REDRIVE_VISIBILITY_SECONDS)):
        if wanted and event.message_id not in wanted:
            queue.release(event)
            continue
        records = event.s3_records
        if records is None:
            queue.release(event)
            results.append({"id": event.message_id, "outcome": "kept", "detail": "payload is not an S3 event"})
            continue
        try:
            synced = sync(records)
        except Exception as error:  # the event failed again: keep its record, show why
            queue.release(event)
            results.append(
                {"id": event.message_id, "outcome": "failed again", "detail": f"{type(error).__name__}: {error}"}
            )
            continue
        queue.delete(event)
        detail = "; ".join(f"{r.action} {r.city or ''} {r.version or ''}: {r.reason}".strip() for r in synced)
        results.append({"id": event.message_id, "outcome": "redriven", "detail": detail})
    missing = wanted - {row["id"] for row in results}
    results.extend({"id": i, "outcome": "not found", "detail": "no such record in the queue"} for i in sorted(missing))
    return results


def run(args: argparse.Namespace, config: OpsConfig) -> tuple[Any, list[dict[str, Any]], Sequence[str], str, int]:
    """Returns (JSON result, table rows, columns, title, exit code)."""
    url = config.require_failure_queue()
    try:
        queue = FailureQueue(boto3.client("sqs"), url)
        if args.command == "failed":
            rows = list_failed(queue)
            columns: Sequence[str] = ("id", "timestamp", "attempts", "keys", "error_type", "error")
            title = f"Failed model-sync events ({len(rows)})" if rows else "Failed model-sync events"
            return rows, rows, columns, title, 0
        service = _model_sync(config)
        rows = redrive(queue, service.sync_event_records, args.ids)
    except ClientError as error:
        raise ConfigError(f"failure queue {url}: {error}") from error
    bad = any(row["outcome"] != "redriven" for row in rows)
    title = f"Redriven ({len(rows)})" if rows else "Redriven"
    return rows, rows, ("id", "outcome", "detail"), title, 1 if bad else 0


def _model_sync(config: OpsConfig) -> Any:
    from model_sync.wiring import assemble

    return assemble(config.sync_settings(), boto3.client("s3"), boto3.client("dynamodb"))
