"""STS: who the credentials belong to (``GetCallerIdentity`` needs no permission, only valid credentials)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ops.errors import aws_error


@dataclass(frozen=True)
class CallerIdentity:
    account: str
    arn: str


class Identity:
    def __init__(self, sts_client: Any) -> None:
        self._sts = sts_client

    def caller(self) -> CallerIdentity:
        try:
            response = self._sts.get_caller_identity()
        except (BotoCoreError, ClientError) as error:
            raise aws_error("sts:GetCallerIdentity", error) from error
        return CallerIdentity(account=str(response["Account"]), arn=str(response["Arn"]))
