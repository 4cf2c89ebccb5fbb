"""Fetching a TargetModel from S3 into a bounded on-disk cache, extracted safely.

A model's directory is ``cache_dir/models/<digest>`` (digest of the TargetModel name, so any legal
name maps to one safe path). Like SageMaker, a TargetModel name is assumed immutable: once on disk
it is not fetched again until evicted from the disk cache (publish new artifacts under new names).
Downloads stream to a temporary file with a byte cap; extraction checks every member's size before
writing and uses ``tarfile``'s ``data`` filter (no absolute paths, no links out, no devices).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from endpoint.config import ModelDataUrl
from endpoint.errors import ArtifactInvalid, ArtifactMissing, StorageUnavailable

_CHUNK = 1024 * 1024
_MAX_MEMBERS = 10_000
# S3 answers these when the object is absent or unreadable: the caller's fault, not a transient one.
S3_CONNECT_TIMEOUT_SECONDS = 2.0
S3_READ_TIMEOUT_SECONDS = 2.0
_MISSING_CODES = {"404", "NoSuchKey", "NotFound", "NoSuchBucket", "403", "AccessDenied", "Forbidden"}


def make_s3_client(max_pool_connections: int = 16) -> Any:
    """A normal boto3 S3 client: ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` point it at a local S3."""
    session = boto3.session.Session()
    # One retry only: the InvokeEndpoint caller retries the 503 we answer with, so retries would multiply.
    retries: Any = {"mode": "standard", "total_max_attempts": 2}
    # Bounded socket waits (botocore's default read timeout is 60 s): with S3 frozen, a cold request
    # fails in ~2 × 2 s with a retryable StorageUnavailable instead of hanging. The read timeout is per
    # socket read, not per download, so large artifacts are unaffected.
    return session.client(
        "s3",
        config=Config(
            max_pool_connections=max_pool_connections,
            retries=retries,
            connect_timeout=S3_CONNECT_TIMEOUT_SECONDS,
            read_timeout=S3_READ_TIMEOUT_SECONDS,
        ),
    )


@dataclass(frozen=True)
class FetchResult:
    model_dir: Path
    downloaded: bool
    seconds: float


def safe_extract(archive: Path, dest: Path, max_unpacked_bytes: int) -> int:
    """Extract a ``.tar.gz`` into ``dest``; refuse unsafe or oversized archives. Returns unpacked bytes."""
    total = 0
    try:
        with tarfile.open(archive, mode="r:gz") as tar:
            members = []
            for count, member in enumerate(tar, start=1):
                if count > _MAX_MEMBERS:
                    raise ArtifactInvalid(f"archive has more than {_MAX_MEMBERS} members")
                if member.name.startswith("/") or ".." in member.name.split("/"):
                    raise ArtifactInvalid(f"archive member {member.name!r} escapes the model directory")
                if not (member.isfile() or member.isdir()):
                    raise ArtifactInvalid(f"archive member {member.name!r} is not a regular file or directory")
                total += member.size
                if total > max_unpacked_bytes:
                    raise ArtifactInvalid(f"archive unpacks to more than {max_unpacked_bytes} bytes")
                members.append(member)
            tar.extractall(dest, members=members, filter="data")
    except (tarfile.TarError, EOFError, OSError) as error:
        raise ArtifactInvalid(f"cannot extract model archive: {error}") from error
    return total


class ArtifactCache:
    """Downloads and unpacks TargetModels under ``root``, keeping at most ``max_bytes`` on disk."""

    def __init__(
        self,
        s3: Any,
        model_data_url: ModelDataUrl,
        root: Path,
        max_bytes: int,
        max_artifact_bytes: int,
        max_unpacked_bytes: int,
    ) -> None:
        self._s3 = s3
        self._url = model_data_url
        self._root = Path(root)
        self._models = self._root / "models"
        self._tmp = self._root / "tmp"
        self._models.mkdir(parents=True, exist_ok=True)
        self._tmp.mkdir(parents=True, exist_ok=True)
        self._max_bytes = max_bytes
        self._max_artifact_bytes = max_artifact_bytes
        self._max_unpacked_bytes = max_unpacked_bytes
        self._lock = threading.Lock()
        self._sizes: dict[Path, int] = {}
        self._pinned: dict[Path, int] = {}

    def location(self, target_model: str) -> tuple[str, str]:
        return self._url.bucket, self._url.key_for(target_model)

    def directory_for(self, target_model: str) -> Path:
        return self._models / hashlib.sha256(target_model.encode("utf-8")).hexdigest()[:32]

    def fetch(self, target_model: str) -> FetchResult:
        """Make ``target_model`` available on disk (downloading if needed) and pin it until ``unpin``."""
        final = self.directory_for(target_model)
        with self._lock:
            if final.is_dir():
                self._pin(final)
                os.utime(final)  # disk LRU order
                return FetchResult(final, downloaded=False, seconds=0.0)
        started = time.perf_counter()
        bucket, key = self.location(target_model)
        with tempfile.TemporaryDirectory(dir=self._tmp) as work:
            archive = Path(work) / "model.tar.gz"
            self._download(bucket, key, archive)
            staging = Path(work) / "model"
            staging.mkdir()
            unpacked = safe_extract(archive, staging, self._max_unpacked_bytes)
            with self._lock:
                if not final.is_dir():
                    os.replace(staging, final)
                self._sizes[final] = unpacked
                self._pin(final)
        self._evict_disk()
        return FetchResult(final, downloaded=True, seconds=time.perf_counter() - started)

    def unpin(self, model_dir: Path) -> None:
        with self._lock:
            left = self._pinned.get(model_dir, 0) - 1
            if left > 0:
                self._pinned[model_dir] = left
            else:
                self._pinned.pop(model_dir, None)
        self._evict_disk()

    def _pin(self, model_dir: Path) -> None:
        self._pinned[model_dir] = self._pinned.get(model_dir, 0) + 1

    def _download(self, bucket: str, key: str, dest: Path) -> None:
        try:
            response = self._s3.get_object(Bucket=bucket, Key=key)
        except ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", ""))
            if code in _MISSING_CODES:
                raise ArtifactMissing(bucket, key, code) from error
            raise StorageUnavailable(f"S3 GetObject s3://{bucket}/{key} failed: {error}") from error
        except BotoCoreError as error:
            raise StorageUnavailable(f"S3 GetObject s3://{bucket}/{key} failed: {error}") from error
        declared = int(response.get("ContentLength") or 0)
        body = response["Body"]
        if declared > self._max_artifact_bytes:
            body.close()
            raise ArtifactInvalid(f"artifact is {declared} bytes, more than the {self._max_artifact_bytes} allowed")
        written = 0
        try:
            with open(dest, "wb") as out:
                for chunk in _chunks(body):
                    written += len(chunk)
                    if written > self._max_artifact_bytes:
                        raise ArtifactInvalid(f"artifact is more than {self._max_artifact_bytes} bytes")
                    out.write(chunk)
        except BotoCoreError as error:
            raise StorageUnavailable(f"S3 download of s3://{bucket}/{key} failed: {error}") from error
        finally:
            body.close()

    def _evict_disk(self) -> None:
        """Remove least recently used unpinned model directories while over the disk budget."""
        with self._lock:
            entries = []
            for path in self._models.iterdir():
                if path not in self._sizes:
                    self._sizes[path] = _tree_size(path)
                entries.append((path.stat().st_mtime, path))
            total = sum(self._sizes.get(path, 0) for _, path in entries)
            for _, path in sorted(entries):
                if total <= self._max_bytes:
                    break
                if path in self._pinned:
                    continue
                total -= self._sizes.pop(path, 0)
                shutil.rmtree(path, ignore_errors=True)


def _chunks(body: Any) -> Iterable[bytes]:
    while chunk := body.read(_CHUNK):
        yield chunk


def _tree_size(path: Path) -> int:
    return sum(entry.stat().st_size for entry in path.rglob("*") if entry.is_file())
