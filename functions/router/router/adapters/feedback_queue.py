"""SQS adapter: one SendMessage per POST /feedback, bounded like the router's other clients."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from house_prices.errors import DependencyFailure


class SqsLabelQueue:
    def __init__(self, sqs_client: Any, queue_url: str) -> None:
        self._sqs = sqs_client
        self._queue_url = queue_url

    def send(self, message: str) -> None:
        try:
            self._sqs.send_message(QueueUrl=self._queue_url, MessageBody=message)
        except (BotoCoreError, ClientError) as error:
            raise DependencyFailure(f"SQS SendMessage failed: {error}") from error
