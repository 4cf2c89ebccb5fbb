"""One message of model-sync's failure destination, parsed once: ``ops failed``, ``ops redrive``, ``ops status``.

The destination (template ``ModelSyncDeadLetterQueue``) holds Lambda invocation records: the S3 event
(``requestPayload``), the attempt count and condition (``requestContext``) and the error
(``responsePayload``). Anything else that lands there (a bare S3 event, a hand-sent message) is read
generically: well-known fields where present, the raw body otherwise, so nothing is hidden.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

MAX_SUMMARY_CHARS = 200
# Paths tried in order, in the JSON object of a message body.
_ERROR_PATHS = (
    ("responsePayload", "errorMessage"),
    ("responsePayload", "errorType"),
    ("errorMessage",),
    ("reason",),
)
_KEY_PATHS = (
    ("requestPayload", "Records", 0, "s3", "object", "key"),
    ("Records", 0, "s3", "object", "key"),
)
_CONDITION_PATHS = (("requestContext", "condition"),)


@dataclass(frozen=True)
class FailureSummary:
    """What ``ops status`` shows of a record (each text clipped to ``MAX_SUMMARY_CHARS``)."""

    message_id: str
    sent_at: str | None
    receive_count: int | None
    key: str | None
    condition: str | None
    error: str | None
    attributes: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class FailureRecord:
    message_id: str
    receipt_handle: str
    body: str
    # The body's JSON object; an invocation record when Lambda wrote it ({"requestPayload": body} otherwise).
    record: dict[str, Any]
    attributes: Mapping[str, str] = field(default_factory=dict)
    sent_at: str | None = None
    receive_count: int | None = None

    @classmethod
    def from_message(cls, message: Mapping[str, Any]) -> FailureRecord:
        body = str(message.get("Body", ""))
        try:
            document: Any = json.loads(body)
        except ValueError:
            document = None
        system = message.get("Attributes") or {}
        sent = system.get("SentTimestamp")
        count = system.get("ApproximateReceiveCount")
        return cls(
            message_id=str(message.get("MessageId", "")),
            receipt_handle=str(message.get("ReceiptHandle", "")),
            body=body,
            record=document if isinstance(document, dict) else {"requestPayload": body},
            attributes={
                name: str(value.get("StringValue"))
                for name, value in (message.get("MessageAttributes") or {}).items()
                if value.get("StringValue") is not None
            },
            sent_at=datetime.fromtimestamp(int(sent) / 1000, UTC).isoformat(timespec="seconds") if sent else None,
            receive_count=int(count) if count is not None else None,
        )

    @property
    def s3_records(self) -> list[Any] | None:
        """The S3 event records model-sync failed on (``requestPayload.Records``), or None if there are none."""
        payload = self.record.get("requestPayload")
        records = payload.get("Records") if isinstance(payload, dict) else None
        return records if isinstance(records, list) else None

    @property
    def keys(self) -> list[str]:
        return [
            str(record.get("s3", {}).get("object", {}).get("key", ""))
            for record in self.s3_records or []
            if isinstance(record, dict)
        ]

    def row(self) -> dict[str, Any]:
        """``ops failed``'s row: the invocation record's own fields, unclipped."""
        context = self.record.get("requestContext") or {}
        error = self.record.get("responsePayload") or {}
        if not isinstance(error, dict):
            error = {}
        return {
            "id": self.message_id,
            "timestamp": self.record.get("timestamp"),
            "condition": context.get("condition") if isinstance(context, dict) else None,
            "attempts": context.get("approximateInvokeCount") if isinstance(context, dict) else None,
            "keys": self.keys,
            "error_type": error.get("errorType"),
            "error": error.get("errorMessage"),
        }

    def summary(self) -> FailureSummary:
        """``ops status``'s view: key, condition and error where recognisable, else the raw body."""
        document = self.record if self.record.get("requestPayload") != self.body else None
        key = _first(document, _KEY_PATHS)
        error = _first(document, _ERROR_PATHS)
        if key is None and error is None:
            error = clip(self.body)  # an unknown shape: show it rather than hide it
        return FailureSummary(
            message_id=self.message_id,
            sent_at=self.sent_at,
            receive_count=self.receive_count,
            key=key,
            condition=_first(document, _CONDITION_PATHS),
            error=error,
            attributes={name: clip(value) for name, value in self.attributes.items()},
        )


def _dig(document: Any, path: Sequence[str | int]) -> Any:
    for step in path:
        if isinstance(step, int):
            if not (isinstance(document, list) and len(document) > step):
                return None
            document = document[step]
        elif isinstance(document, dict) and step in document:
            document = document[step]
        else:
            return None
    return document


def _first(document: Any, paths: Sequence[Sequence[str | int]]) -> str | None:
    for path in paths:
        value = _dig(document, path)
        if value not in (None, ""):
            return clip(str(value))
    return None


def clip(text: str) -> str:
    """``text`` cut to ``MAX_SUMMARY_CHARS`` (an ellipsis marks the cut)."""
    return text if len(text) <= MAX_SUMMARY_CHARS else text[:MAX_SUMMARY_CHARS] + "…"
