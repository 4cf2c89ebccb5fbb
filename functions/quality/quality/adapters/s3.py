"""S3 adapter of the quality function: a capture partition's predictions, a label file's bytes.

Every botocore failure becomes a ``DependencyFailure`` (the queue redelivers the source later).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from house_prices.captures import CapturedPrediction, CaptureLines, decode_capture_object
from house_prices.errors import DependencyFailure
from house_prices.naming import KeyLayout

# A label file is read whole: 1 million labels as CSV are ~90 MB, inside the function's memory.
MAX_LABEL_FILE_BYTES = 256 * 1024**2
# What GetObject answers for an object deleted after its event.
_MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})


def _read_object(s3_client: Any, bucket: str, key: str, max_bytes: int | None = None) -> tuple[bytes, str] | None:
    """The object's bytes and ETag, or None when it is gone (deleted after the event) or over ``max_bytes``."""
    try:
        response = s3_client.get_object(Bucket=bucket, Key=key)
        if max_bytes is not None and int(response.get("ContentLength", 0)) > max_bytes:
            return None
        return response["Body"].read(), str(response.get("ETag", "")).strip('"')
    except ClientError as error:
        if str(error.response.get("Error", {}).get("Code", "")) in _MISSING_CODES:
            return None
        raise DependencyFailure(f"S3 GetObject s3://{bucket}/{key} failed: {error}") from error
    except BotoCoreError as error:
        raise DependencyFailure(f"S3 GetObject s3://{bucket}/{key} failed: {error}") from error


class S3Captures:
    """Reads ``KeyLayout.capture_prefix(city, day)``: every object, every capture line, in key order."""

    def __init__(self, s3_client: Any, bucket: str, layout: KeyLayout) -> None:
        self._s3 = s3_client
        self._bucket = bucket
        self._layout = layout

    def partition(self, city: str, day: str) -> CaptureLines:
        """The partition's lines, parsed only as far as asked (``CaptureLines.get``, or iterated whole)."""
        prefix = self._layout.capture_prefix(city, day)
        try:
            keys = [
                item["Key"]
                for page in self._s3.get_paginator("list_objects_v2").paginate(Bucket=self._bucket, Prefix=prefix)
                for item in page.get("Contents", [])
            ]
            bodies = [self._s3.get_object(Bucket=self._bucket, Key=key)["Body"].read() for key in keys]
        except (BotoCoreError, ClientError) as error:
            raise DependencyFailure(f"S3 read of s3://{self._bucket}/{prefix} failed: {error}") from error
        return CaptureLines([text for text in map(decode_capture_object, bodies) if text is not None])

    def read_object(self, bucket: str, key: str) -> tuple[list[CapturedPrediction], str] | None:
        """One delivered capture object's predictions and ETag, or None when it is gone."""
        found = _read_object(self._s3, bucket, key)
        if found is None:
            return None
        body, etag = found
        return list(_predictions(body)), etag


def _predictions(body: bytes) -> Iterator[CapturedPrediction]:
    """Every readable line's predictions; a torn or foreign line is skipped (its labels stay unknown, reported)."""
    text = decode_capture_object(body)
    return iter(CaptureLines([] if text is None else [text]))


class S3LabelFiles:
    def __init__(self, s3_client: Any) -> None:
        self._s3 = s3_client

    def read(self, bucket: str, key: str) -> tuple[bytes, str] | None:
        """The object's bytes and ETag, or None when it is gone (deleted after the event) or too large."""
        return _read_object(self._s3, bucket, key, MAX_LABEL_FILE_BYTES)
