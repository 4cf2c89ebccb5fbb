"""Composition root: settings -> boto3 clients -> adapters -> ModelSync (once per execution environment)."""

from __future__ import annotations

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
    return ModelSync(
        store=S3Artifacts(traced(boto3.client("s3", config=_CLIENT_CONFIG))),
        registry=ModelRegistry(traced(boto3.client("dynamodb", config=_CLIENT_CONFIG)), settings.registry_table),
        bucket=settings.artifact_bucket,
        layout=settings.layout,
        gate=settings.gate,
        max_unpacked_bytes=settings.max_unpacked_bytes,
        rollout=settings.rollout,
        rollout_max_days=settings.rollout_max_days,
        warmer=(
            EndpointWarmer(traced(boto3.client("sagemaker-runtime", config=_WARM_CONFIG)), settings.endpoint_name)
            if settings.endpoint_name
            else None
        ),
    )
