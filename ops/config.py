"""Where the operator CLI finds its resources: flags, then env, then a deployed stack's outputs
(``--stack``), then ``.local/stack.json``."""

from __future__ import annotations

import json
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from house_prices.naming import DEFAULT_PREFIX, KeyLayout
from house_prices.settings import EnvReader, SettingsError
from model_sync.settings import SyncSettings

DEFAULT_STACK_FILE = Path(".local/stack.json")


@dataclass(frozen=True)
class OpsConfig:
    bucket: str | None
    layout: KeyLayout
    registry_table: str | None
    stack_file: Path | None = None
    # model-sync's failure destination (the template's ModelSyncDeadLetterQueue) and alarm name prefix.
    failure_queue_url: str | None = None
    alarm_prefix: str | None = None
    # QUALITY_GATE, for `sync`; None leaves model-sync's default.
    quality_gate: str | None = None
    # ROLLOUT_POLICY and ROLLOUT_MAX_DAYS, as the function reads them; None leaves model-sync's defaults.
    rollout_policy: str | None = None
    rollout_max_days: str | None = None

    def sync_settings(
        self, gate: str | None = None, max_unpacked_bytes: int | None = None, bucket: str | None = None
    ) -> SyncSettings:
        """model-sync's settings for a run on the operator's machine (``ops sync``, ``ops redrive``): read
        from the same variables as the function's, so both decide alike; no endpoint, so no pre-warm."""
        environ = {
            "ARTIFACT_BUCKET": bucket or self.require_bucket(),
            "REGISTRY_TABLE": self.require_table(),
            "MODEL_PREFIX": self.layout.prefix,
            **{
                name: value
                for name, value in (
                    ("QUALITY_GATE", gate or self.quality_gate),
                    ("ROLLOUT_POLICY", self.rollout_policy),
                    ("ROLLOUT_MAX_DAYS", self.rollout_max_days),
                    ("MAX_UNPACKED_BYTES", None if max_unpacked_bytes is None else str(max_unpacked_bytes)),
                )
                if value is not None
            },
        }
        try:
            return SyncSettings.from_env(environ)
        except SettingsError as error:
            raise ConfigError(str(error)) from error

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

    def require_failure_queue(self) -> str:
        if not self.failure_queue_url:
            raise ConfigError(
                "no failure queue: pass --queue-url or --stack, set MODEL_SYNC_FAILURE_QUEUE_URL, or run `make up`"
            )
        return self.failure_queue_url


class ConfigError(Exception):
    pass


# CloudFormation outputs of template.yaml -> what they fill in.
STACK_OUTPUTS = {
    "ArtifactBucketName": "bucket",
    "RegistryTableName": "registry_table",
    "ModelSyncDeadLetterQueueUrl": "failure_queue_url",
    "AlarmNamePrefix": "alarm_prefix",
}


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
    *,
    queue_url: str | None = None,
    alarm_prefix: str | None = None,
    stack_outputs: Mapping[str, str] | None = None,
) -> OpsConfig:
    """Combine flags, environment and the local stack file; point boto3 at the local stack if used.

    The stack file only fills what flags and env leave open, and its endpoints go into the process
    environment (``AWS_ENDPOINT_URL_S3``/``_DYNAMODB``/``_SQS``/``_CLOUDWATCH``) so boto3 needs no
    special casing. ``stack_outputs`` (a deployed stack's CloudFormation outputs) rank below env.
    """
    deployed = {STACK_OUTPUTS[key]: value for key, value in (stack_outputs or {}).items() if key in STACK_OUTPUTS}
    stack: Mapping[str, Any] = {}
    path = stack_file if stack_file is not None else DEFAULT_STACK_FILE
    used_file: Path | None = None
    # A deployed stack was named: the local stack's file (and its endpoints) must not leak in.
    if stack_outputs is not None and stack_file is None:
        pass
    elif path.is_file():
        stack = load_stack_file(path)
        used_file = path
    elif stack_file is not None:
        raise ConfigError(f"stack file {stack_file} does not exist")
    endpoint = stack.get("s3_endpoint_url")
    if endpoint:
        environ.setdefault("AWS_ENDPOINT_URL_S3", str(endpoint))
        # moto serves DynamoDB on the same port.
        environ.setdefault("AWS_ENDPOINT_URL_DYNAMODB", str(endpoint))
        environ.setdefault("AWS_ENDPOINT_URL_SQS", str(stack.get("sqs_endpoint_url") or endpoint))
        # The same moto server answers CloudWatch; the local stack creates no alarms in it.
        environ.setdefault("AWS_ENDPOINT_URL_CLOUDWATCH", str(endpoint))
        # moto accepts any credentials; without some, botocore refuses to sign.
        environ.setdefault("AWS_ACCESS_KEY_ID", "local")
        environ.setdefault("AWS_SECRET_ACCESS_KEY", "local")
    if stack.get("region"):
        environ.setdefault("AWS_DEFAULT_REGION", str(stack["region"]))
    env = EnvReader(environ)
    chosen_prefix = prefix or env.optional("MODEL_PREFIX") or stack.get("prefix") or DEFAULT_PREFIX
    try:
        layout = KeyLayout(str(chosen_prefix))
    except ValueError as error:
        raise ConfigError(str(error)) from error
    local_queue = ((stack.get("queues") or {}).get("ModelSyncFunction") or {}).get("on_failure_url")
    local_stack_name = (stack.get("resources") or {}).get("stack_name")
    return OpsConfig(
        bucket=bucket or env.optional("ARTIFACT_BUCKET") or deployed.get("bucket") or stack.get("bucket"),
        layout=layout,
        registry_table=table
        or env.optional("REGISTRY_TABLE")
        or deployed.get("registry_table")
        or stack.get("registry_table"),
        stack_file=used_file,
        failure_queue_url=queue_url
        or env.optional("MODEL_SYNC_FAILURE_QUEUE_URL")
        or deployed.get("failure_queue_url")
        or local_queue,
        alarm_prefix=alarm_prefix
        or env.optional("ALARM_NAME_PREFIX")
        or deployed.get("alarm_prefix")
        or (f"{local_stack_name}-" if local_stack_name else None),
        quality_gate=env.optional("QUALITY_GATE"),
        rollout_policy=env.optional("ROLLOUT_POLICY"),
        rollout_max_days=env.optional("ROLLOUT_MAX_DAYS"),
    )
