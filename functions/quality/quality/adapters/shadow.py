"""S3 adapter of shadow scoring: write a capture object's shadow records, read a (city, day) partition of them.

Every botocore failure becomes a ``DependencyFailure`` (the event or the queue message is retried).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from house_prices.errors import DependencyFailure
from house_prices.naming import KeyLayout
from quality.rollout_labels import ShadowRecord
from quality.shadow import parse_records


class S3ShadowRecords:
    """``KeyLayout.shadow_key`` objects: one PutObject per (capture object, partition); a partition's reads."""

    def __init__(self, s3_client: Any, bucket: str, layout: KeyLayout) -> None:
        self._s3 = s3_client
        self._bucket = bucket
        self._layout = layout

    def write(self, key: str, body: bytes) -> None:
        try:
            self._s3.put_object(
                Bucket=self._bucket, Key=key, Body=body, ContentType="application/x-ndjson", ContentEncoding="gzip"
            )
        except (BotoCoreError, ClientError) as error:
            raise DependencyFailure(f"S3 PutObject s3://{self._bucket}/{key} failed: {error}") from error

    def partition(self, city: str, day: str) -> Iterator[ShadowRecord]:
        prefix = self._layout.shadow_prefix(city, day)
        try:
            keys = [
                item["Key"]
                for page in self._s3.get_paginator("list_objects_v2").paginate(Bucket=self._bucket, Prefix=prefix)
                for item in page.get("Contents", [])
            ]
            for key in keys:
                yield from parse_records(self._s3.get_object(Bucket=self._bucket, Key=key)["Body"].read())
        except (BotoCoreError, ClientError) as error:
            raise DependencyFailure(f"S3 read of s3://{self._bucket}/{prefix} failed: {error}") from error
