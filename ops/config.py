"""Where the operator CLI finds its bucket, prefix and table: flags, then env, then .local/stack.json."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from house_prices.naming import DEFAULT_PREFIX, KeyLayout

DEFAULT_STACK_FILE = Path(".local/stack.json")


@dataclass(frozen=True)
class OpsConfig:
    bucket: str | None
    layout: KeyLayout
    registry_table: str | None
    stack_file: Path | None = None

    def require_bucket(self) -> str:
        if not self.bucket:
            raise ConfigError("no bucket: pass --bucket, set ARTIFACT_BUCKET, or run `make up` (.local/stack.json)")
        return self.bucket

    def require_table(self) -> str:
        if not self.registry_table:
            raise ConfigError(
                "no registry table: pass --table, set REGISTRY_TABLE, or run `make up` (.local/stack.json)"
            )
        return self.registry_table


class ConfigError(Exception):
    pass


def load_stack_file(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ConfigError(f"cannot read {path}: {error}") from error
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a JSON object")
    return data


def resolve(
    bucket: str | None,
    prefix: str | None,
    table: str | None,
    stack_file: Path | None,
    environ: MutableMapping[str, str],
) -> OpsConfig:
    """Combine flags, environment and the local stack file; point boto3 at the local stack if used.

    The stack file only fills what flags and env leave open, and its endpoints go into the process
    environment (``AWS_ENDPOINT_URL_S3``/``_DYNAMODB``) so boto3 needs no special casing.
    """
    stack: Mapping[str, Any] = {}
    path = stack_file if stack_file is not None else DEFAULT_STACK_FILE
    used_file: Path | None = None
    if path.is_file():
        stack = load_stack_file(path)
        used_file = path
    elif stack_file is not None:
        raise ConfigError(f"stack file {stack_file} does not exist")
    endpoint = stack.get("s3_endpoint_url")
    if endpoint:
        environ.setdefault("AWS_ENDPOINT_URL_S3", str(endpoint))
        # moto serves DynamoDB on the same port.
        environ.setdefault("AWS_ENDPOINT_URL_DYNAMODB", str(endpoint))
        # moto accepts any credentials; without some, botocore refuses to sign.
        environ.setdefault("AWS_ACCESS_KEY_ID", "local")
        environ.setdefault("AWS_SECRET_ACCESS_KEY", "local")
    if stack.get("region"):
        environ.setdefault("AWS_DEFAULT_REGION", str(stack["region"]))
    chosen_prefix = prefix or environ.get("MODEL_PREFIX") or stack.get("prefix") or DEFAULT_PREFIX
    try:
        layout = KeyLayout(str(chosen_prefix))
    except ValueError as error:
        raise ConfigError(str(error)) from error
    return OpsConfig(
        bucket=bucket or environ.get("ARTIFACT_BUCKET") or stack.get("bucket"),
        layout=layout,
        registry_table=table or environ.get("REGISTRY_TABLE") or stack.get("registry_table"),
        stack_file=used_file,
    )


def process_environ() -> MutableMapping[str, str]:
    return os.environ
