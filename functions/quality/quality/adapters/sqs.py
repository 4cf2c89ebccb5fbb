"""SQS adapter of the quality function: a label file's not-yet-joinable labels go to the feedback queue."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from house_prices.errors import DependencyFailure
from house_prices.labels import Label, label_message


class SqsLabelQueue:
    def __init__(self, sqs_client: Any, queue_url: str, delay_seconds: int = 300) -> None:
        self._sqs = sqs_client
        self._queue_url = queue_url
        self._delay = delay_seconds

    def send(self, labels: Sequence[Label]) -> None:
        try:
            self._sqs.send_message(
                QueueUrl=self._queue_url,
                MessageBody=label_message(labels, datetime.now(UTC)),
                DelaySeconds=self._delay,
            )
        except (BotoCoreError, ClientError) as error:
            raise DependencyFailure(f"SQS SendMessage failed: {error}") from error
