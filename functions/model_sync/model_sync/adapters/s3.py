"""S3 adapter for model-sync: HEAD, small bounded reads, streaming GET, conditional server-side copy.

``model_sync.wiring`` creates the boto3 client the ordinary way, so ``AWS_ENDPOINT_URL_S3`` points it at a local S3
without any branch here. Every botocore failure becomes a DependencyFailure (Lambda retries); a
missing object is a normal answer (None), not an error.
"""

from __future__ import annotations

from typing import Any

from boto3.s3.transfer import TransferConfig
from botocore.exceptions import BotoCoreError, ClientError

from house_prices.errors import DependencyFailure
from model_sync.logic import ObjectInfo

# CopyObject copies at most 5 GiB in one request; above that only multipart UploadPartCopy works.
COPY_OBJECT_LIMIT = 5 * 1024**3
_MULTIPART_CHUNK = 256 * 1024**2
_NOT_FOUND = {"404", "NoSuchKey", "NotFound"}
_SNAKE = {"HeadObject": "head_object", "GetObject": "get_object"}


class _GuardedBody:
    """A streaming body whose network failures surface as DependencyFailure, never as a short read."""

    def __init__(self, body: Any, where: str) -> None:
        self._body = body
        self._where = where

    def read(self, size: int = -1, /) -> bytes:
        try:
            return self._body.read(None if size is None or size < 0 else size)
        except (BotoCoreError, ClientError, OSError) as error:
            raise DependencyFailure(f"S3 read of {self._where} failed: {error}") from error

    def close(self) -> None:
        self._body.close()


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


class S3Artifacts:
    def __init__(self, s3_client: Any, copy_object_limit: int = COPY_OBJECT_LIMIT) -> None:
        self._s3 = s3_client
        self._copy_object_limit = copy_object_limit

    def _unless_missing(self, operation: str, bucket: str, key: str) -> dict[str, Any] | None:
        """``operation``'s response (e.g. HeadObject), or None for a missing object; other failures are transient."""
        try:
            response: dict[str, Any] = getattr(self._s3, _SNAKE[operation])(Bucket=bucket, Key=key)
        except ClientError as error:
            if _code(error) in _NOT_FOUND:
                return None
            raise DependencyFailure(f"S3 {operation} s3://{bucket}/{key} failed: {error}") from error
        except BotoCoreError as error:
            raise DependencyFailure(f"S3 {operation} s3://{bucket}/{key} failed: {error}") from error
        return response

    def head(self, bucket: str, key: str) -> ObjectInfo | None:
        response = self._unless_missing("HeadObject", bucket, key)
        if response is None:
            return None
        return ObjectInfo(
            bucket=bucket,
            key=key,
            size=int(response["ContentLength"]),
            etag=str(response["ETag"]),
            last_modified=response["LastModified"],
            metadata=dict(response.get("Metadata", {})),
            content_type=str(response.get("ContentType", "")),
        )

    def read_bytes(self, bucket: str, key: str, max_bytes: int) -> bytes | None:
        """At most ``max_bytes + 1`` bytes of an object (so the caller sees it was too big), None if absent."""
        response = self._unless_missing("GetObject", bucket, key)
        if response is None:
            return None
        body = _GuardedBody(response["Body"], f"s3://{bucket}/{key}")
        try:
            return body.read(max_bytes + 1)
        finally:
            body.close()

    def open(self, source: ObjectInfo) -> _GuardedBody:
        """Stream exactly the object version that was HEADed (IfMatch), or fail transiently."""
        where = f"s3://{source.bucket}/{source.key}"
        try:
            response = self._s3.get_object(Bucket=source.bucket, Key=source.key, IfMatch=source.etag)
        except (ClientError, BotoCoreError) as error:
            # 412: replaced since the HEAD; 404: deleted since. A retry re-reads the current state.
            raise DependencyFailure(f"S3 GetObject {where} failed: {error}") from error
        return _GuardedBody(response["Body"], where)

    def copy(self, source: ObjectInfo, bucket: str, key: str, metadata: dict[str, str]) -> None:
        """Server-side copy of exactly ``source`` (CopySourceIfMatch) with our metadata."""
        copy_source = {"Bucket": source.bucket, "Key": source.key}
        extra: dict[str, Any] = {
            "CopySourceIfMatch": source.etag,
            # Also tells the managed (multipart) copy to use our metadata instead of the source's.
            "MetadataDirective": "REPLACE",
            "Metadata": metadata,
            "ContentType": source.content_type or "application/gzip",
        }
        try:
            if source.size < self._copy_object_limit:
                self._s3.copy_object(Bucket=bucket, Key=key, CopySource=copy_source, **extra)
            else:
                config = TransferConfig(
                    multipart_threshold=self._copy_object_limit,
                    multipart_chunksize=max(_MULTIPART_CHUNK, -(-source.size // 10_000)),
                )
                self._s3.copy(copy_source, bucket, key, ExtraArgs=extra, Config=config)
        except (ClientError, BotoCoreError) as error:
            raise DependencyFailure(
                f"S3 copy s3://{source.bucket}/{source.key} -> s3://{bucket}/{key} failed: {error}"
            ) from error
