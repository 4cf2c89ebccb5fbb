"""Fixtures shared by integration tests."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import moto.s3.models
import pytest
from moto import mock_aws

from house_prices.observability import metrics
from house_prices.registry import ModelRegistry, create_table
from house_prices.schema import SEED_CITIES
from tests.integration.model_sync_harness import BUCKET, LAYOUT, TABLE, Clock, Stack, environment
from tests.unit.test_artifacts_inspection import validation_csv


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    environment(monkeypatch)
    clock = Clock()
    monkeypatch.setattr(moto.s3.models, "utcnow", clock)
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    from model_sync import handler

    handler.service.cache_clear()
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        # Every city's held-out rows, which the quality gate measures candidate and live models on.
        for city in SEED_CITIES:
            s3.put_object(Bucket=BUCKET, Key=LAYOUT.prep_key(city, "val"), Body=validation_csv())
        clock.now = Clock().now  # tests read versions off the clock: start it after the fixture's writes
        dynamodb = boto3.client("dynamodb")
        create_table(dynamodb, TABLE)
        yield Stack(s3, dynamodb, ModelRegistry(dynamodb, TABLE), clock)
    handler.service.cache_clear()
    metrics.clear_metrics()
