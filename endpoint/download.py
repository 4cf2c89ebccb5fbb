"""Fetching a TargetModel from S3 into a bounded on-disk cache, extracted safely.

A model's directory is ``cache_dir/models/<digest>`` (digest of the TargetModel name, so any legal
name maps to one safe path); in dense serving the archive is extracted into its ``model``
subdirectory, SageMaker's ``/opt/ml/models/{model_name}/model`` layout, with the digest as
``model_name``. Like SageMaker, a TargetModel name is assumed immutable: once on disk it is not
fetched again until evicted from the disk cache (publish new artifacts under new names).
The download streams straight through gunzip and tar into a staging directory (one decompression,
no archive on disk), under a byte cap on the compressed stream; every member is checked before it is
written, with ``tarfile``'s ``data`` filter on top (no absolute paths, no links out, no devices). Only
a complete extraction is renamed into place.

Several worker processes may share one cache directory. A directory in use (being fetched or
loaded) holds a shared ``flock`` on ``locks/<digest>``; eviction takes it exclusively without
waiting and skips the directory if it cannot, so no process deletes files another is loading.
Eviction deletes the lock file too, while it still holds it exclusively; a process that opened the
old file before it went re-checks, once its shared lock is granted, that the file it locked is still
the one at the path, and starts over if not, so two processes never lock different files for one
directory and ``locks/`` holds no more entries than the models on disk. Files already memory-mapped
by a loaded model survive eviction (Linux keeps an unlinked file until it is unmapped).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import shutil
import tarfile
import tempfile
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from endpoint.config import ModelDataUrl
from endpoint.errors import ArtifactInvalid, ArtifactMissing, StorageUnavailable

_CHUNK = 1024 * 1024
_MAX_MEMBERS = 10_000
# S3 answers these when the object is absent or unreadable: the caller's fault, not a transient one.
_MISSING_CODES = {"404", "NoSuchKey", "NotFound", "NoSuchBucket", "403", "AccessDenied", "Forbidden"}


def make_s3_client(
    *,
    max_pool_connections: int = 16,
    connect_timeout: float = 1.0,
    read_timeout: float = 2.0,
    max_attempts: int = 2,
) -> Any:
    """A normal boto3 S3 client: ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` point it at a local S3.

    Bounded: a frozen S3 fails a cold load within about ``max_attempts`` x (connect + read timeout),
    and the caller gets a retryable 503 instead of a request hanging on a socket. Few attempts: the
    InvokeEndpoint caller retries the 503 we answer with, so retries here would multiply.
    """
    session = boto3.session.Session()
    retries: Any = {"mode": "standard", "total_max_attempts": max_attempts}
    return session.client(
        "s3",
        config=Config(
            max_pool_connections=max_pool_connections,
            retries=retries,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
        ),
    )


@dataclass(frozen=True)
class FetchResult:
    model_dir: Path
    downloaded: bool
    seconds: float


def safe_extract(source: Path | BinaryIO, dest: Path, max_unpacked_bytes: int) -> int:
    """Extract a ``.tar.gz`` (a path, or a stream such as an S3 body) into ``dest``; returns unpacked bytes.

    One streaming pass: each member is checked (no absolute paths, ``..``, links or devices; a member
    count and a running size cap) before it is written, with ``tarfile``'s ``data`` filter on top.
    Decompressing once, straight from the download, halves the work of listing the archive first and
    extracting it after. A refused archive may leave part of itself in ``dest``: extract into a staging
    directory and discard it on error.
    """
    total = 0
    with contextlib.ExitStack() as stack:
        fileobj = stack.enter_context(open(source, "rb")) if isinstance(source, Path) else source
        try:
            with tarfile.open(fileobj=fileobj, mode="r|gz") as tar:
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
                    tar.extract(member, dest, filter="data")
        except BotoCoreError as error:  # the S3 body failed mid-stream (some of these are OSErrors too)
            raise StorageUnavailable(f"S3 download failed mid-stream: {error}") from error
        except (tarfile.TarError, EOFError, zlib.error, OSError) as error:
            raise ArtifactInvalid(f"cannot extract model archive: {error}") from error
    return total


class _CappedReader:
    """A read-only stream over ``body`` that refuses to deliver more than ``limit`` bytes."""

    def __init__(self, body: Any, limit: int) -> None:
        self._body = body
        self._limit = limit
        self._read = 0

    def read(self, size: int = -1) -> bytes:
        chunk: bytes = self._body.read(size if size is not None and size >= 0 else _CHUNK)
        self._read += len(chunk)
        if self._read > self._limit:
            raise ArtifactInvalid(f"artifact is more than {self._limit} bytes")
        return chunk


class ArtifactCache:
    """Downloads and unpacks TargetModels under ``root``, keeping at most ``max_bytes`` on disk (LRU)."""

    def __init__(
        self,
        s3: Any,
        model_data_url: ModelDataUrl,
        root: Path,
        max_bytes: int,
        max_artifact_bytes: int,
        max_unpacked_bytes: int,
        extract_into: str = "",
    ) -> None:
        self._s3 = s3
        # A subdirectory of each model's directory that holds the archive's files ("": the directory itself).
        # Dense serving extracts into "model", SageMaker's /opt/ml/models/{model_name}/model layout.
        self._extract_into = extract_into
        self._url = model_data_url
        self._root = Path(root)
        self._models = self._root / "models"
        self._locks = self._root / "locks"
        self._tmp = self._root / "tmp"
        self._models.mkdir(parents=True, exist_ok=True)
        self._locks.mkdir(parents=True, exist_ok=True)
        self._tmp.mkdir(parents=True, exist_ok=True)
        self._max_bytes = max_bytes
        self._max_artifact_bytes = max_artifact_bytes
        self._max_unpacked_bytes = max_unpacked_bytes
        self._lock = threading.Lock()
        # Directory name -> unpacked bytes, least recently used first. Kept in memory: listing and
        # stat-ing thousands of directories on every load would cost more than the load.
        self._index: OrderedDict[str, int] = OrderedDict()
        self._bytes = 0
        # Directory name -> (uses in this process, the open lock file holding the shared flock).
        self._pinned: dict[str, tuple[int, int]] = {}
        for path in sorted(self._models.iterdir(), key=_mtime):
            if path.is_dir():
                self._remember(path.name, _tree_size(path))
        self._remove_orphan_locks()

    @property
    def disk_bytes(self) -> int:
        return self._bytes

    def location(self, target_model: str) -> tuple[str, str]:
        return self._url.bucket, self._url.key_for(target_model)

    def directory_for(self, target_model: str) -> Path:
        return self._models / hashlib.sha256(target_model.encode("utf-8")).hexdigest()[:32]

    def fetch(self, target_model: str) -> FetchResult:
        """Make ``target_model`` available on disk (downloading if needed) and pin it until ``unpin``."""
        final = self.directory_for(target_model)
        self._pin(final.name)
        try:
            with self._lock:
                if final.is_dir():
                    if final.name not in self._index:  # fetched by another worker process
                        self._remember(final.name, _tree_size(final))
                    self._index.move_to_end(final.name)
                    return FetchResult(final, downloaded=False, seconds=0.0)
            started = time.perf_counter()
            bucket, key = self.location(target_model)
            with tempfile.TemporaryDirectory(dir=self._tmp) as work:
                staging = Path(work) / "model"
                into = staging / self._extract_into if self._extract_into else staging
                into.mkdir(parents=True)
                try:
                    unpacked = self._download_into(bucket, key, into)
                except ArtifactInvalid as error:
                    error.bucket, error.key = bucket, key
                    raise
                with self._lock:
                    try:
                        os.rename(staging, final)
                    except OSError as error:
                        # Another thread or worker process unpacked it first: use theirs.
                        if error.errno not in (errno.EEXIST, errno.ENOTEMPTY) or not final.is_dir():
                            raise
                    if final.name not in self._index:
                        self._remember(final.name, unpacked)
            self._evict_disk()
            return FetchResult(final, downloaded=True, seconds=time.perf_counter() - started)
        except BaseException:
            self.unpin(final)
            raise

    def unpin(self, model_dir: Path) -> None:
        name = Path(model_dir).name
        with self._lock:
            uses, fd = self._pinned.get(name, (0, -1))
            if uses > 1:
                self._pinned[name] = (uses - 1, fd)
                return
            self._pinned.pop(name, None)
        if fd >= 0:
            os.close(fd)  # releases the shared flock
        self._evict_disk()

    def _pin(self, name: str) -> None:
        with self._lock:
            uses, fd = self._pinned.get(name, (0, -1))
            if uses:
                self._pinned[name] = (uses + 1, fd)
                return
        fd = _lock_shared(self._locks / name)
        with self._lock:
            uses, held = self._pinned.get(name, (0, -1))
            if uses:  # another thread pinned it meanwhile: keep its lock, drop ours
                self._pinned[name] = (uses + 1, held)
                os.close(fd)
            else:
                self._pinned[name] = (1, fd)

    def _remove_orphan_locks(self) -> None:
        """Drop lock files whose directory is gone (left by a crash mid-fetch, or by older versions)."""
        for lock_path in self._locks.iterdir():
            if (self._models / lock_path.name).is_dir():
                continue
            with _exclusive(lock_path) as locked:
                if locked:  # not held: no process is fetching it right now
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(lock_path)

    def _remember(self, name: str, size: int) -> None:
        self._index[name] = size
        self._bytes += size

    def _download_into(self, bucket: str, key: str, staging: Path) -> int:
        """Stream the object through gunzip and tar into ``staging`` (nothing else touches the disk)."""
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
        try:
            if declared > self._max_artifact_bytes:
                raise ArtifactInvalid(f"artifact is {declared} bytes, more than the {self._max_artifact_bytes} allowed")
            return safe_extract(
                _CappedReader(body, self._max_artifact_bytes),  # type: ignore[arg-type]
                staging,
                self._max_unpacked_bytes,
            )
        finally:
            body.close()

    def _evict_disk(self) -> None:
        """Remove least recently used directories nobody uses while over the disk budget."""
        with self._lock:
            if self._bytes <= self._max_bytes:
                return
            for name in list(self._index):
                if self._bytes <= self._max_bytes:
                    break
                if name in self._pinned:
                    continue
                with _exclusive(self._locks / name) as locked:
                    if not locked:  # another worker process is using it
                        continue
                    shutil.rmtree(self._models / name, ignore_errors=True)
                    # Still held: a process waiting on this file re-opens the path once we let go.
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(self._locks / name)
                self._bytes -= self._index.pop(name)


def _lock_shared(lock_path: Path) -> int:
    """An open descriptor holding a shared flock on the file that is at ``lock_path`` now.

    Blocks only while another process evicts this very directory (a few milliseconds). Eviction
    unlinks the lock file it held, so a lock granted on a file that is no longer at the path guards
    nothing: open the path again.
    """
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            if _same_file(fd, lock_path):
                return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


def _same_file(fd: int, path: Path) -> bool:
    try:
        at_path = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (held.st_dev, held.st_ino) == (at_path.st_dev, at_path.st_ino)


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[bool]:
    """Hold ``lock_path``'s flock exclusively if nobody holds it; yields whether it is held."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        # Another evictor may have unlinked the file we opened: then this lock guards nothing.
        yield _same_file(fd, lock_path)
    finally:
        os.close(fd)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _tree_size(path: Path) -> int:
    return sum(entry.stat().st_size for entry in path.rglob("*") if entry.is_file())
