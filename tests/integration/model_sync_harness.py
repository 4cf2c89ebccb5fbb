"""model-sync test harness: S3 and DynamoDB from moto (mock_aws), the real handler, SAM-generated events.

Events start from events/s3-put-training-output.json (the `sam local invoke` input) with
the bucket and key adapted. moto's clock is driven by the test so that each upload gets its own
LastModified second (versions sort by it). Used by the model-sync handler and ops CLI tests; the
`stack` fixture lives in tests/integration/conftest.py.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import pytest

from house_prices.naming import KeyLayout
from house_prices.registry import ModelRegistry
from model_sync import handler
from tests.lambda_contexts import lambda_context

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
EVENTS = Path(__file__).resolve().parents[2] / "events"
BUCKET = "house-prices-artifacts"
TABLE = "house-prices-registry"
LAYOUT = KeyLayout()
CITY = "Chicago_IL"


@dataclass
class Clock:
    """moto's notion of 'now'; every S3 write lands one minute after the previous one."""

    now: datetime = field(default_factory=lambda: datetime(2026, 1, 1, 12, 0, 0))

    def __call__(self) -> datetime:
        self.now += timedelta(minutes=1)
        return self.now


@dataclass
class Stack:
    s3: Any
    dynamodb: Any
    registry: ModelRegistry
    clock: Clock
    bucket: str = BUCKET

    def upload(self, data: bytes, city: str = CITY, job: str = "job-1") -> str:
        key = LAYOUT.training_output_key(city, job)
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=data)
        return key

    def mme_objects(self) -> dict[str, dict[str, Any]]:
        listing = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=LAYOUT.mme_prefix)
        return {item["Key"]: item for item in listing.get("Contents", [])}

    def registry_snapshot(self) -> list[dict[str, Any]]:
        return sorted(self.dynamodb.scan(TableName=TABLE)["Items"], key=lambda item: item["record"]["S"])


def s3_put_event(key: str, bucket: str = BUCKET, encode: Callable[[str], str] = quote_plus) -> dict[str, Any]:
    """events/s3-put-training-output.json with our bucket and key; moto encodes '/' as %2F (quote_plus), S3 keeps it."""
    event = json.loads((EVENTS / "s3-put-training-output.json").read_text())
    record = event["Records"][0]
    record["s3"]["bucket"]["name"] = bucket
    record["s3"]["bucket"]["arn"] = f"arn:aws:s3:::{bucket}"
    record["s3"]["object"]["key"] = encode(key)
    return event


def invoke(event: dict[str, Any]) -> dict[str, Any]:
    return handler.lambda_handler(copy.deepcopy(event), lambda_context("ModelSyncFunction"))


def environment(monkeypatch: pytest.MonkeyPatch, gate: str = "not-worse-than-live-by:5") -> None:
    monkeypatch.setenv("ARTIFACT_BUCKET", BUCKET)
    monkeypatch.setenv("MODEL_PREFIX", LAYOUT.prefix)
    monkeypatch.setenv("REGISTRY_TABLE", TABLE)
    monkeypatch.setenv("QUALITY_GATE", gate)
    monkeypatch.setenv("MAX_UNPACKED_BYTES", str(8 * 1024 * 1024))


def only(result: dict[str, Any]) -> dict[str, Any]:
    assert len(result["results"]) == 1, result
    return result["results"][0]
