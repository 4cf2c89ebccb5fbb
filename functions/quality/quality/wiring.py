"""Composition root: settings -> boto3 clients -> adapters -> QualityService (once per execution environment)."""

from __future__ import annotations

import boto3
from botocore.config import Config

from house_prices.observability import traced
from house_prices.registry import ModelRegistry
from quality.adapters.dynamodb import (
    DynamoDriftStore,
    DynamoHouseIndex,
    DynamoQualityStore,
    RegistryOfflineFigures,
    RegistryReferences,
)
from quality.adapters.endpoint import SageMakerScorer
from quality.adapters.s3 import S3Captures, S3LabelFiles
from quality.adapters.shadow import S3ShadowRecords
from quality.adapters.sqs import SqsLabelQueue
from quality.logic import QualityService
from quality.rollout_labels import RolloutLabels
from quality.settings import QualitySettings
from quality.shadow import RolloutCaptures

# Transient failures are retried here first, then by the queue (the message becomes visible again).
_CLIENT_CONFIG = Config(retries={"mode": "standard", "total_max_attempts": 3}, connect_timeout=2, read_timeout=20)


def build_service(settings: QualitySettings) -> QualityService:
    s3 = traced(boto3.client("s3", config=_CLIENT_CONFIG))
    dynamodb = traced(boto3.client("dynamodb", config=_CLIENT_CONFIG))
    captures = S3Captures(s3, settings.artifact_bucket, settings.layout)
    registry = ModelRegistry(dynamodb, settings.registry_table)
    shadows = S3ShadowRecords(s3, settings.artifact_bucket, settings.layout)
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
        houses=DynamoHouseIndex(dynamodb, settings.house_index_table),
        degradation=settings.degradation,
        rollouts=RolloutCaptures(
            # The rollouts' evidence items are ADDed with their object's claim as drift's counts are.
            DynamoDriftStore(dynamodb, settings.quality_table, settings.ledger_table),
            settings.layout,
            scorer=build_scorer(settings),
            writer=shadows,
        ),
        rollout_labels=RolloutLabels(shadows, settings.capture_wait),
    )


def build_scorer(settings: QualitySettings) -> SageMakerScorer | None:
    """The endpoint client with the shadow timeouts (a slow candidate must not eat the function's budget)."""
    if not settings.endpoint_name:
        return None
    config = Config(
        connect_timeout=settings.shadow_connect_timeout_seconds,
        read_timeout=settings.shadow_read_timeout_seconds,
        # botocore's "max_attempts" counts retries only; the setting is the total, first try included.
        retries={"mode": "standard", "total_max_attempts": settings.shadow_max_attempts},
    )
    return SageMakerScorer(traced(boto3.client("sagemaker-runtime", config=config)), settings.endpoint_name)
