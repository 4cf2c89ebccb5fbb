"""Service Quotas: an account's quota by name (applied value if the service reports one, else the default)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ops.errors import aws_error


@dataclass(frozen=True)
class Quota:
    name: str
    code: str
    value: float
    # False: the default, because Service Quotas reported no applied value for this account.
    applied: bool


class ServiceQuotas:
    def __init__(self, service_quotas_client: Any, service_code: str) -> None:
        self._client = service_quotas_client
        self._service_code = service_code
        self._listed: dict[str, dict[str, Quota]] = {}

    def _list(self, operation: str, action: str, applied: bool) -> dict[str, Quota]:
        if operation not in self._listed:
            found: dict[str, Quota] = {}
            try:
                for page in self._client.get_paginator(operation).paginate(ServiceCode=self._service_code):
                    for quota in page.get("Quotas", []):
                        if "Value" in quota:
                            name = str(quota["QuotaName"])
                            found[name] = Quota(name, str(quota["QuotaCode"]), float(quota["Value"]), applied)
            except (BotoCoreError, ClientError) as error:
                raise aws_error(action, error) from error
            self._listed[operation] = found
        return self._listed[operation]

    def find(self, name: str) -> Quota | None:
        """ListServiceQuotas omits quotas without an applied value, so fall back to the AWS default."""
        applied = self._list("list_service_quotas", "servicequotas:ListServiceQuotas", applied=True)
        if name in applied:
            return applied[name]
        defaults = self._list(
            "list_aws_default_service_quotas", "servicequotas:ListAWSDefaultServiceQuotas", applied=False
        )
        return defaults.get(name)
