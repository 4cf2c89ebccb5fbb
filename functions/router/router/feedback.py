"""``POST /feedback``: validate late labels and hand them to the feedback queue (free of HTTP and boto3).

One SendMessage per request, nothing else on the request path: joining a label to its prediction and
counting it once is the quality function's work (docs/quality.md). A body with any bad label is
refused whole (400 naming each field), so a caller never has to guess which labels were taken.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from house_prices import labels
from house_prices.errors import DependencyFailure
from house_prices.observability import MetricUnit, logger, metrics, tracer
from router.logic import parse_json_body

# 1,000 labels by prediction id are ~110 KB of JSON; SQS takes 256 KiB per message.
MAX_FEEDBACK_BODY_BYTES = 200_000


class LabelQueue(Protocol):
    def send(self, message: str) -> None: ...


class FeedbackService:
    def __init__(
        self,
        queue: LabelQueue | None,
        retention_days: int = labels.DEFAULT_RETENTION_DAYS,
        max_labels: int = labels.DEFAULT_MAX_LABELS_PER_REQUEST,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.queue = queue
        self.retention_days = retention_days
        self.max_labels = max_labels
        self._now = now

    @tracer.capture_method
    def accept(self, body: str | bytes | None, base64_encoded: bool = False) -> dict[str, Any]:
        payload = parse_json_body(body, base64_encoded, MAX_FEEDBACK_BODY_BYTES, 'a label object or {"labels": [...]}')
        now = self._now()
        accepted = labels.parse_feedback(payload, now, self.retention_days, self.max_labels)
        if self.queue is None:
            raise DependencyFailure("FEEDBACK_QUEUE_URL is not set: labels cannot be queued")
        self.queue.send(labels.label_message(accepted, now))
        metrics.add_metric(name="LabelsAccepted", unit=MetricUnit.Count, value=len(accepted))
        logger.info("Labels queued", extra={"labels": len(accepted)})
        return {"accepted": len(accepted)}
