"""Composition root: settings -> boto3 clients -> adapters -> QualityService (once per execution environment)."""

from __future__ import annotations

import boto3
from botocore.config import Config

from house_prices.observability import traced
from house_prices.registry import ModelRegistry
from quality.adapters.dynamodb import DynamoDriftStore, DynamoQualityStore, RegistryOfflineFigures, RegistryReferences
from quality.adapters.s3 import S3Captures, S3LabelFiles
from quality.adapters.sqs import SqsLabelQueue
from quality.logic import QualityService
from quality.settings import QualitySettings

# Transient failures are retried here first, then by the queue (the message becomes visible again).
_CLIENT_CONFIG = Config(retries={"mode": "standard", "total_max_attempts": 3}, connect_timeout=2, read_timeout=20)


def build_service(settings: QualitySettings) -> QualityService:
    s3 = traced(boto3.client("s3", config=_CLIENT_CONFIG))
    dynamodb = traced(boto3.client("dynamodb", config=_CLIENT_CONFIG))
    captures = S3Captures(s3, settings.artifact_bucket, settings.layout)
    registry = ModelRegistry(dynamodb, settings.registry_table)
    return QualityService(
        captures=captures,
        store=DynamoQualityStore(dynamodb, settings.quality_table, settings.ledger_table),
        offline=RegistryOfflineFigures(registry),
        retention_days=settings.retention_days,
        capture_wait=settings.capture_wait,
        files=S3LabelFiles(s3),
        labels_prefix=settings.layout.labels_prefix,
        queue=SqsLabelQueue(traced(boto3.client("sqs", config=_CLIENT_CONFIG)), settings.feedback_queue_url),
        capture_objects=captures,
        captures_prefix=settings.layout.captures_prefix,
        references=RegistryReferences(registry),
        drift_store=DynamoDriftStore(dynamodb, settings.quality_table, settings.ledger_table),
        drift_thresholds=settings.drift_thresholds,
    )
