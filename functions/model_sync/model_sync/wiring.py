"""Composition root: settings -> boto3 clients -> adapters -> ModelSync (once per execution environment)."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

from house_prices.observability import traced
from house_prices.registry import ModelRegistry
from model_sync.adapters.endpoint import EndpointWarmer
from model_sync.adapters.s3 import S3Artifacts
from model_sync.logic import ModelSync
from model_sync.settings import SyncSettings

# Transient S3/DynamoDB failures are retried here first, then by Lambda's async retries (the handler raises).
_CLIENT_CONFIG = Config(retries={"mode": "standard", "total_max_attempts": 3}, connect_timeout=2, read_timeout=30)
# Pre-warming is best effort: one attempt, bounded well inside the function's timeout (MME cold loads
# take seconds on AWS; a slower one is still loading when the client gives up, which is fine).
_WARM_CONFIG = Config(retries={"mode": "standard", "total_max_attempts": 1}, connect_timeout=2, read_timeout=20)


def build_service(settings: SyncSettings) -> ModelSync:
    """The function's ModelSync: traced clients with the budgets above."""
    return assemble(
        settings,
        s3_client=traced(boto3.client("s3", config=_CLIENT_CONFIG)),
        dynamodb_client=traced(boto3.client("dynamodb", config=_CLIENT_CONFIG)),
        sagemaker_runtime_client=(
            traced(boto3.client("sagemaker-runtime", config=_WARM_CONFIG)) if settings.endpoint_name else None
        ),
    )


def assemble(
    settings: SyncSettings, s3_client: Any, dynamodb_client: Any, sagemaker_runtime_client: Any | None = None
) -> ModelSync:
    """The one way a ModelSync is put together: the function, and the operator's ``ops sync`` and ``ops redrive``
    (their own clients and credentials), so a setting reaches all three alike."""
    return ModelSync(
        store=S3Artifacts(s3_client),
        registry=ModelRegistry(dynamodb_client, settings.registry_table),
        bucket=settings.artifact_bucket,
        layout=settings.layout,
        gate=settings.gate,
        max_unpacked_bytes=settings.max_unpacked_bytes,
        rollout=settings.rollout,
        rollout_max_days=settings.rollout_max_days,
        warmer=(
            EndpointWarmer(sagemaker_runtime_client, settings.endpoint_name)
            if settings.endpoint_name and sagemaker_runtime_client is not None
            else None
        ),
    )
