"""CloudWatch Logs: does a log group exist, and with which retention."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ops.errors import aws_error


@dataclass(frozen=True)
class LogGroupInfo:
    name: str
    retention_days: int | None  # None: never expires


class LogGroups:
    def __init__(self, logs_client: Any) -> None:
        self._logs = logs_client

    def find(self, name: str) -> LogGroupInfo | None:
        try:
            for page in self._logs.get_paginator("describe_log_groups").paginate(logGroupNamePrefix=name):
                for group in page.get("logGroups", []):
                    if group.get("logGroupName") == name:
                        retention = group.get("retentionInDays")
                        return LogGroupInfo(name, int(retention) if retention is not None else None)
        except (BotoCoreError, ClientError) as error:
            raise aws_error("logs:DescribeLogGroups", error) from error
        return None
