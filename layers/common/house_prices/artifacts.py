"""Streaming inspection of a training output (``model.tar.gz``) without unpacking it to disk.

The bytes flow ``source -> HashingReader (sha256 of the compressed object) -> _GunzipReader (gzip
CRC, truncation, unpacked-size limit) -> tarfile "r|" (stream mode, no seeks)``. Every member is
checked before any of its content is read, so a hostile archive is rejected as early as possible and
never costs more than ``max_unpacked_bytes`` of decompression.

Pure standard library on purpose: this module ships in the Lambda layer (no numpy, no sklearn) and
never unpickles anything. It hands the packed model's bytes back (``ArtifactReport.packed_model``) for
model-sync to validate structurally and to measure.
"""

from __future__ import annotations

import hashlib
import json
import math
import tarfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import IO, Any, Protocol

from house_prices.errors import InvalidArtifact
from house_prices.naming import (
    METRICS_FILENAME,
    PACKED_MODEL_FILENAME,
    PICKLED_MODEL_FILENAME,
    REQUIRED_ARTIFACT_FILES,
)

DEFAULT_MAX_UNPACKED_BYTES = 256 * 1024 * 1024
MAX_METRICS_BYTES = 64 * 1024
MAX_METRICS_DEPTH = 32
_MAX_FINITE_INT = 2**1023
_CHUNK = 64 * 1024


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


@dataclass(frozen=True)
class ArtifactReport:
    sha256: str
    size_bytes: int
    unpacked_bytes: int
    members: tuple[str, ...]
    metrics: dict[str, Any] = field(default_factory=dict)
    packed_model: bytes = b""


class HashingReader:
    """Wraps a binary stream and hashes exactly the bytes handed out."""

    def __init__(self, source: Readable) -> None:
        self._source = source
        self._sha256 = hashlib.sha256()
        self.bytes_read = 0
        self.exhausted = False

    def read(self, size: int = -1, /) -> bytes:
        data = self._source.read(size if size is not None and size >= 0 else -1)
        if not data:
            self.exhausted = True
            return b""
        self._sha256.update(data)
        self.bytes_read += len(data)
        return data

    def drain(self, max_bytes: int | None = None) -> bool:
        """Hash the rest of the stream; False if more than ``max_bytes`` remained (hash incomplete)."""
        remaining = max_bytes
        while not self.exhausted:
            chunk = self.read(_CHUNK if remaining is None else min(_CHUNK, remaining + 1))
            if remaining is not None:
                remaining -= len(chunk)
                if remaining < 0:
                    return False
        return True

    @property
    def sha256(self) -> str:
        return self._sha256.hexdigest()


class _GunzipReader:
    """A read-only file object yielding the decompressed bytes of exactly one gzip member.

    zlib verifies the gzip header and the CRC-32/ISIZE trailer; we add truncation, trailing-garbage
    and unpacked-size checks. Raising from ``read`` aborts tarfile immediately (it only swallows its
    own header errors).
    """

    def __init__(self, source: Readable, max_unpacked_bytes: int) -> None:
        self._source = source
        self._limit = max_unpacked_bytes
        self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._buffer = b""
        self.unpacked = 0
        self._seen_input = False

    def read(self, size: int = -1, /) -> bytes:
        want = size if size is not None and size >= 0 else None
        while (want is None or len(self._buffer) < want) and not self._inflater.eof:
            self._inflate_some()
        if want is None:
            data, self._buffer = self._buffer, b""
        else:
            data, self._buffer = self._buffer[:want], self._buffer[want:]
        return data

    def _inflate_some(self) -> None:
        compressed = self._inflater.unconsumed_tail
        if not compressed:
            compressed = self._source.read(_CHUNK)
            if not compressed:
                if not self._seen_input:
                    raise InvalidArtifact("artifact is empty (0 bytes), expected a gzip-compressed tar archive")
                raise InvalidArtifact("artifact is truncated: the gzip stream ends before its end-of-stream marker")
            self._seen_input = True
        try:
            # Bounded output per call, so a gzip bomb never expands past the limit in memory.
            out = self._inflater.decompress(compressed, _CHUNK)
        except zlib.error as error:
            raise InvalidArtifact(f"artifact is not valid gzip: {error}") from error
        self._account(out)
        self._buffer += out
        if self._inflater.eof and self._inflater.unused_data:
            raise InvalidArtifact("artifact has trailing bytes after the gzip stream (concatenated or corrupt)")

    def _account(self, out: bytes) -> None:
        self.unpacked += len(out)
        if self.unpacked > self._limit:
            raise InvalidArtifact(f"artifact unpacks to more than the limit of {self._limit} bytes")

    def finish(self) -> None:
        """Read (and count) the rest of the gzip stream, e.g. tar's end-of-archive padding."""
        while self.read(_CHUNK):
            pass
        if not self._inflater.eof:
            raise InvalidArtifact("artifact is truncated: the gzip stream ends before its end-of-stream marker")
        if self._source.read(1):
            raise InvalidArtifact("artifact has trailing bytes after the gzip stream (concatenated or corrupt)")


def member_problem(member: tarfile.TarInfo) -> str | None:
    """Why ``member`` must not be extracted, or None if it is a plain file/dir with a safe relative path."""
    name = member.name
    if not name or "\x00" in name:
        return "has an empty or NUL-containing name"
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return "has an absolute path"
    if "\\" in name:
        return "has a backslash in its path"
    if ".." in name.split("/"):
        return "escapes the archive root ('..' in its path)"
    if member.issym():
        return f"is a symbolic link (to {member.linkname!r})"
    if member.islnk():
        return f"is a hard link (to {member.linkname!r})"
    if member.ischr() or member.isblk():
        return "is a device file"
    if member.isfifo():
        return "is a FIFO"
    if not (member.isreg() or member.isdir()):
        return f"has an unsupported member type {member.type!r}"
    return None


def normalise_member_name(name: str) -> str:
    """``./model.joblib`` and ``model.joblib`` are the same file at the root."""
    while name.startswith("./"):
        name = name[2:]
    return name.rstrip("/") or "."


def parse_metrics(raw: bytes) -> dict[str, Any]:
    def reject_constant(constant: str) -> Any:
        raise ValueError(f"non-finite number {constant}")

    try:
        metrics = json.loads(raw.decode("utf-8"), parse_constant=reject_constant)
    except RecursionError as error:
        raise InvalidArtifact(f"{METRICS_FILENAME} is nested too deeply to be metrics") from error
    except (UnicodeDecodeError, ValueError) as error:
        raise InvalidArtifact(f"{METRICS_FILENAME} is not valid JSON: {error}") from error
    if not isinstance(metrics, dict):
        raise InvalidArtifact(f"{METRICS_FILENAME} must hold a JSON object, got {type(metrics).__name__}")
    if _depth(metrics) > MAX_METRICS_DEPTH:
        raise InvalidArtifact(f"{METRICS_FILENAME} is nested more than {MAX_METRICS_DEPTH} levels deep")
    if _has_non_finite(metrics):
        raise InvalidArtifact(f"{METRICS_FILENAME} holds a non-finite number (or an integer too large for a float)")
    return metrics


def _depth(value: Any) -> int:
    """Nesting depth, iteratively: a hostile file must not exhaust the stack of the checks that follow."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        stack.extend((child, level + 1) for child in children)
    return deepest


def _has_non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, int) and not isinstance(value, bool):
        # A huge integer (10**4000) is finite in JSON but overflows every float comparison.
        return abs(value) > _MAX_FINITE_INT
    if isinstance(value, dict):
        return any(_has_non_finite(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_non_finite(v) for v in value)
    return False


def inspect_artifact(
    source: Readable | IO[bytes],
    *,
    max_unpacked_bytes: int = DEFAULT_MAX_UNPACKED_BYTES,
    required_files: Iterable[str] = REQUIRED_ARTIFACT_FILES,
) -> ArtifactReport:
    """Validate a ``model.tar.gz`` stream and describe it; raises InvalidArtifact with the reason.

    Pass a HashingReader to keep hashing the rest of the stream after a rejection (its sha256 then
    still names the object); any other stream is wrapped in one.
    """
    reader = source if isinstance(source, HashingReader) else HashingReader(source)
    gunzip = _GunzipReader(reader, max_unpacked_bytes)
    members: list[str] = []
    unpacked_files = 0
    metrics: dict[str, Any] | None = None
    packed_model: bytes | None = None
    try:
        with tarfile.open(fileobj=gunzip, mode="r|") as archive:  # type: ignore[call-overload]
            for member in archive:
                problem = member_problem(member)
                if problem:
                    raise InvalidArtifact(f"archive member {member.name!r} {problem}")
                name = normalise_member_name(member.name)
                if name in members:
                    raise InvalidArtifact(f"archive member {name!r} appears more than once")
                members.append(name)
                if not member.isreg():
                    continue
                unpacked_files += member.size
                if unpacked_files > max_unpacked_bytes:
                    raise InvalidArtifact(f"artifact unpacks to more than the limit of {max_unpacked_bytes} bytes")
                if name == PACKED_MODEL_FILENAME:
                    handle = archive.extractfile(member)
                    assert handle is not None  # a regular file always has a handle
                    packed_model = handle.read(member.size)
                elif name == METRICS_FILENAME:
                    if member.size > MAX_METRICS_BYTES:
                        raise InvalidArtifact(
                            f"{METRICS_FILENAME} is {member.size} bytes, more than the limit of {MAX_METRICS_BYTES}"
                        )
                    handle = archive.extractfile(member)
                    assert handle is not None  # a regular file always has a handle
                    metrics = parse_metrics(handle.read(MAX_METRICS_BYTES + 1))
        gunzip.finish()
    except tarfile.ReadError as error:
        reason = str(error)
        if "unexpected end" in reason:
            raise InvalidArtifact(f"artifact is truncated: {reason}") from error
        raise InvalidArtifact(f"artifact is gzip but not a tar archive: {reason}") from error
    except (tarfile.TarError, EOFError) as error:
        raise InvalidArtifact(f"artifact is not a readable tar archive: {error}") from error

    missing = [name for name in required_files if name not in members]
    if PACKED_MODEL_FILENAME in missing and PICKLED_MODEL_FILENAME in members:
        raise InvalidArtifact(
            f"artifact holds only a pickled model ({PICKLED_MODEL_FILENAME}), which is never served because "
            f"unpickling runs code; convert it to {PACKED_MODEL_FILENAME} with `python -m training.convert`"
        )
    if missing:
        raise InvalidArtifact(f"artifact lacks required file(s) at its root: {', '.join(missing)}")
    if packed_model is not None and not packed_model:
        raise InvalidArtifact(f"{PACKED_MODEL_FILENAME} is empty")
    reader.drain()
    return ArtifactReport(
        sha256=reader.sha256,
        size_bytes=reader.bytes_read,
        unpacked_bytes=unpacked_files,
        members=tuple(members),
        metrics=metrics or {},
        packed_model=packed_model or b"",
    )
