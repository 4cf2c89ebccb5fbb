"""The S3 adapter and the registry's promotion rules against moto (mock_aws)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.exceptions import EndpointConnectionError
from moto import mock_aws

from house_prices.errors import DependencyFailure, PromotionRefused
from house_prices.registry import ModelRegistry, ModelVersion, create_table
from model_sync.adapters.s3 import S3Artifacts

BUCKET = "adapter-bucket"
TABLE = "adapter-registry"


@pytest.fixture
def aws() -> Iterator[tuple[Any, Any]]:
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        dynamodb = boto3.client("dynamodb")
        create_table(dynamodb, TABLE)
        yield s3, dynamodb


def test_head_of_a_missing_object_is_none_and_network_failures_are_transient(aws: tuple[Any, Any]) -> None:
    s3, _ = aws
    store = S3Artifacts(s3)
    assert store.head(BUCKET, "missing/key") is None

    def unreachable(**_: Any) -> None:
        raise EndpointConnectionError(endpoint_url="https://s3.example")

    s3.meta.events.register("before-call.s3.HeadObject", unreachable)
    with pytest.raises(DependencyFailure, match="HeadObject s3://adapter-bucket/any"):
        store.head(BUCKET, "any")


def test_small_copy_sends_copy_source_if_match_and_metadata(aws: tuple[Any, Any]) -> None:
    # Given an object and a recorder of the CopyObject parameters botocore sends
    s3, _ = aws
    s3.put_object(Bucket=BUCKET, Key="src/model.tar.gz", Body=b"artifact")
    sent: list[dict[str, Any]] = []
    s3.meta.events.register("provide-client-params.s3.CopyObject", lambda params, **_: sent.append(dict(params)))
    store = S3Artifacts(s3)
    source = store.head(BUCKET, "src/model.tar.gz")
    assert source is not None
    # When it is copied
    store.copy(source, BUCKET, "dst/model.tar.gz", metadata={"sha256": "ab" * 32})
    # Then the copy is conditional on the inspected ETag and carries our metadata
    assert sent[0]["CopySourceIfMatch"] == source.etag
    assert sent[0]["MetadataDirective"] == "REPLACE"
    copied = store.head(BUCKET, "dst/model.tar.gz")
    assert copied is not None
    assert copied.metadata == {"sha256": "ab" * 32}
    assert s3.get_object(Bucket=BUCKET, Key="dst/model.tar.gz")["Body"].read() == b"artifact"


def test_large_objects_use_the_managed_multipart_copy(aws: tuple[Any, Any]) -> None:
    # Given a copy_object limit lowered to 5 MiB (the real one is 5 GiB) and a 12 MiB object
    s3, _ = aws
    data = os.urandom(12 * 1024 * 1024)
    s3.put_object(Bucket=BUCKET, Key="src/big.tar.gz", Body=data)
    operations: list[str] = []
    s3.meta.events.register("before-call.s3.*", lambda model, **_: operations.append(model.name))
    store = S3Artifacts(s3, copy_object_limit=5 * 1024 * 1024)
    source = store.head(BUCKET, "src/big.tar.gz")
    assert source is not None
    # When it is copied
    store.copy(source, BUCKET, "dst/big.tar.gz", metadata={"sha256": hashlib.sha256(data).hexdigest()})
    # Then parts were copied server-side and the result is identical, with metadata
    assert "UploadPartCopy" in operations
    assert "CopyObject" not in operations
    assert s3.get_object(Bucket=BUCKET, Key="dst/big.tar.gz")["Body"].read() == data
    copied = store.head(BUCKET, "dst/big.tar.gz")
    assert copied is not None
    assert copied.metadata["sha256"] == hashlib.sha256(data).hexdigest()


def test_open_streams_exactly_the_headed_object(aws: tuple[Any, Any]) -> None:
    s3, _ = aws
    s3.put_object(Bucket=BUCKET, Key="k", Body=b"first")
    store = S3Artifacts(s3)
    source = store.head(BUCKET, "k")
    assert source is not None
    assert store.open(source).read() == b"first"
    # Replaced after the HEAD: the read fails transiently instead of validating other bytes
    s3.put_object(Bucket=BUCKET, Key="k", Body=b"second")
    with pytest.raises(DependencyFailure, match="GetObject s3://adapter-bucket/k"):
        store.open(source)


def _version(city: str, version: str) -> ModelVersion:
    return ModelVersion(
        city=city,
        version=version,
        status="standby",
        artifact_key=f"p/multi_model_artifacts/{city}.{version}.tar.gz",
        source_key="p/model_artifacts/x/job/output/model.tar.gz",
        sha256="0" * 64,
        created_at=datetime(2026, 1, 1, tzinfo=UTC).isoformat(),
        metrics={"validation": {"ae_p50": 1.5}},
        reason="pending",
    )


V1, V2, V3 = "20260101T000000Z-aaaaaaaa", "20260102T000000Z-bbbbbbbb", "20260103T000000Z-cccccccc"


def test_promote_stores_the_reason_and_demotes_exactly_the_replaced_version(aws: tuple[Any, Any]) -> None:
    _, dynamodb = aws
    registry = ModelRegistry(dynamodb, TABLE)
    for version in (V1, V2, V3):
        registry.record_version(_version("Dallas_TX", version))
    registry.promote("Dallas_TX", V1, reason="first")
    registry.promote("Dallas_TX", V3, reason="third")
    # An older version can never replace a newer live one without force
    with pytest.raises(PromotionRefused, match=f"newer version {V3} is live"):
        registry.promote("Dallas_TX", V2)
    statuses = {v.version: (v.status, v.reason) for v in registry.versions("Dallas_TX")}
    assert statuses == {V1: ("standby", "first"), V2: ("standby", "pending"), V3: ("live", "third")}


def test_promotion_racing_a_concurrent_one_is_refused_not_doubly_live(aws: tuple[Any, Any]) -> None:
    # Given V1 live and another writer promoting V2 between our read and our write
    _, dynamodb = aws
    registry = ModelRegistry(dynamodb, TABLE)
    for version in (V1, V2, V3):
        registry.record_version(_version("Dallas_TX", version))
    registry.promote("Dallas_TX", V1)
    other = ModelRegistry(dynamodb, TABLE)
    real_live_model = registry.live_model

    def stale_read(city: str) -> Any:
        seen = real_live_model(city)
        other.promote(city, V2)  # lands after our read
        return seen

    registry.live_model = stale_read  # type: ignore[method-assign]
    # When we try to promote V3 on the stale view
    with pytest.raises(PromotionRefused):
        registry.promote("Dallas_TX", V3)
    # Then exactly one version is live (V2), and a fresh attempt succeeds and demotes V2
    assert [v.version for v in other.versions("Dallas_TX") if v.status == "live"] == [V2]
    other.promote("Dallas_TX", V3)
    assert [v.version for v in other.versions("Dallas_TX") if v.status == "live"] == [V3]


def test_forced_rollback_requires_the_expected_live_version(aws: tuple[Any, Any]) -> None:
    _, dynamodb = aws
    registry = ModelRegistry(dynamodb, TABLE)
    for version in (V1, V2):
        registry.record_version(_version("Dallas_TX", version))
    registry.promote("Dallas_TX", V2)
    with pytest.raises(PromotionRefused, match="expected"):
        registry.promote("Dallas_TX", V1, force=True, expected_live=V1)
    registry.promote("Dallas_TX", V1, force=True, expected_live=V2)
    live = registry.live_model("Dallas_TX")
    assert live.version == V1
    assert registry.version("Dallas_TX", V2).status == "standby"
