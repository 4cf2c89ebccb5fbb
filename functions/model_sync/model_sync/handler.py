"""Lambda entry point: S3 ObjectCreated events on training outputs -> model_sync.logic."""

from __future__ import annotations

import functools
import os
from typing import Any

import boto3
from aws_lambda_powertools.utilities.data_classes import S3Event, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config

from house_prices.observability import logger, metrics, tracer
from house_prices.registry import ModelRegistry
from model_sync.adapters.s3 import S3Artifacts
from model_sync.logic import ModelSync, summarize
from model_sync.settings import SyncSettings

_CLIENT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=2, read_timeout=30)


@functools.cache
def service() -> ModelSync:
    """Built once per execution environment; a bad setting fails here with the variable's name."""
    settings = SyncSettings.from_env(os.environ)
    return ModelSync(
        store=S3Artifacts(boto3.client("s3", config=_CLIENT_CONFIG)),
        registry=ModelRegistry(boto3.client("dynamodb", config=_CLIENT_CONFIG), settings.registry_table),
        bucket=settings.artifact_bucket,
        layout=settings.layout,
        gate=settings.gate,
        max_unpacked_bytes=settings.max_unpacked_bytes,
        serving_sklearn_version=settings.serving_sklearn_version,
    )


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
@event_source(data_class=S3Event)
def lambda_handler(event: S3Event, context: LambdaContext) -> dict[str, Any]:
    return summarize(service().sync_event_records(event.records))
