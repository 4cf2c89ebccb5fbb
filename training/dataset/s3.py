"""The S3 side of a source: what a URI names (one object or the files under a prefix), their sizes, their bytes.

Every botocore failure becomes a DatasetError naming the URI, so a typo in a bucket name reads like
one. boto3 is imported only when the caller did not build a client (local files never need it).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.dataset.errors import DatasetError

_NOT_FOUND = {"404", "NoSuchKey", "NotFound"}
_COPY_CHUNK = 1 << 20


@dataclass(frozen=True)
class S3Object:
    bucket: str
    key: str
    size: int

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def parse_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` → (bucket, key); the key may be empty or end with "/" (a prefix)."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not bucket:
        raise DatasetError(f"{uri!r} names no bucket; use s3://BUCKET/KEY or s3://BUCKET/PREFIX/")
    return bucket, key


def default_client() -> Any:
    import boto3

    return boto3.client("s3")


@contextmanager
def _s3_errors(uri: str) -> Iterator[None]:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as error:
        code = str(error.response.get("Error", {}).get("Code", ""))
        if code == "NoSuchBucket":
            raise DatasetError(f"{uri}: the bucket does not exist") from None
        if code in {"403", "AccessDenied", "AllAccessDisabled"}:
            raise DatasetError(f"{uri}: access denied (check the credentials' s3:GetObject/s3:ListBucket)") from None
        raise DatasetError(f"{uri}: S3 answered {code or 'an error'}: {error}") from None
    except BotoCoreError as error:
        raise DatasetError(f"{uri}: cannot reach S3: {error}") from None


def head(client: Any, bucket: str, key: str) -> S3Object | None:
    """The object, or None when there is none at that key (the URI may then be a prefix)."""
    from botocore.exceptions import ClientError

    uri = f"s3://{bucket}/{key}"
    with _s3_errors(uri):
        try:
            response = client.head_object(Bucket=bucket, Key=key)
        except ClientError as error:
            if str(error.response.get("Error", {}).get("Code", "")) in _NOT_FOUND:
                return None
            raise
    return S3Object(bucket, key, int(response["ContentLength"]))


def list_files(client: Any, bucket: str, prefix: str) -> list[S3Object]:
    """The objects directly under ``prefix`` (not in "subfolders"), like the files of a local folder."""
    found: list[S3Object] = []
    with _s3_errors(f"s3://{bucket}/{prefix}"):
        paginator = client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
            found.extend(S3Object(bucket, item["Key"], int(item["Size"])) for item in page.get("Contents", ()))
    return found


class _Body:
    """A GetObject body that pyarrow can read safely.

    Read failures (a reset connection, a timeout) become OSErrors naming the object: pyarrow re-raises
    what ``read`` raised, and an OSError is what the CSV reader turns into a DatasetError. A read never
    returns more than asked: pyarrow copies the result into a buffer of the size it asked for, and a
    longer answer corrupts memory (a segfault later, seen with a stub body).
    """

    def __init__(self, body: Any, uri: str) -> None:
        self._body = body
        self._uri = uri
        self._pending = b""
        self.closed = False

    def read(self, size: int | None = -1) -> bytes:
        from botocore.exceptions import BotoCoreError
        from urllib3.exceptions import HTTPError

        whole = size is None or size < 0
        if self._pending and not whole:
            chunk, self._pending = self._pending[:size], self._pending[size:]
            return chunk
        try:
            data = self._pending + bytes(self._body.read(None if whole else size))
        except (BotoCoreError, HTTPError) as error:
            raise OSError(f"reading {self._uri} failed: {error}") from None
        self._pending = b""
        if not whole and size is not None and len(data) > size:
            data, self._pending = data[:size], data[size:]
        return data

    def close(self) -> None:
        self.closed = True
        self._body.close()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def writable(self) -> bool:
        return False


def open_stream(client: Any, item: S3Object) -> Any:
    """The object's body as a file-like stream: CSV is parsed as it arrives, never held whole."""
    with _s3_errors(item.uri):
        return _Body(client.get_object(Bucket=item.bucket, Key=item.key)["Body"], item.uri)


def download(client: Any, item: S3Object, destination: Path, max_bytes: int) -> Path:
    """Copy the object to ``destination`` (Parquet needs a seekable file), refusing more than ``max_bytes``.

    The size was checked with HEAD already; counting again guards an object replaced in between.
    """
    body = open_stream(client, item)
    try:
        written = 0
        with destination.open("wb") as out:
            while chunk := body.read(_COPY_CHUNK):
                written += len(chunk)
                if written > max_bytes:
                    raise DatasetError(f"{item.uri} grew past --max-bytes {max_bytes:,} while downloading it")
                out.write(chunk)
    except OSError as error:
        raise DatasetError(str(error)) from None
    finally:
        body.close()
    return destination
