"""The S3 adapter against moto (mock_aws)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import EndpointConnectionError
from moto import mock_aws

from house_prices.errors import DependencyFailure
from model_sync.adapters.s3 import S3Artifacts

BUCKET = "adapter-bucket"


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3")
        client.create_bucket(Bucket=BUCKET)
        yield client


def test_head_of_a_missing_object_is_none_and_network_failures_are_transient(s3: Any) -> None:
    store = S3Artifacts(s3)
    assert store.head(BUCKET, "missing/key") is None

    def unreachable(**_: Any) -> None:
        raise EndpointConnectionError(endpoint_url="https://s3.example")

    s3.meta.events.register("before-call.s3.HeadObject", unreachable)
    with pytest.raises(DependencyFailure, match="HeadObject s3://adapter-bucket/any"):
        store.head(BUCKET, "any")


def test_small_copy_sends_copy_source_if_match_and_metadata(s3: Any) -> None:
    # Given an object and a recorder of the CopyObject parameters botocore sends
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


def test_large_objects_use_the_managed_multipart_copy(s3: Any) -> None:
    # Given a copy_object limit lowered to 5 MiB (the real one is 5 GiB) and a 12 MiB object
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


def test_open_streams_exactly_the_headed_object(s3: Any) -> None:
    s3.put_object(Bucket=BUCKET, Key="k", Body=b"first")
    store = S3Artifacts(s3)
    source = store.head(BUCKET, "k")
    assert source is not None
    assert store.open(source).read() == b"first"
    # Replaced after the HEAD: the read fails transiently instead of validating other bytes
    s3.put_object(Bucket=BUCKET, Key="k", Body=b"second")
    with pytest.raises(DependencyFailure, match="GetObject s3://adapter-bucket/k"):
        store.open(source)
