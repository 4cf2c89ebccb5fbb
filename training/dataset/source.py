"""Where the rows come from: a local file or folder, an S3 object or prefix; which format; how big.

The size is known before a byte is parsed (stat, HEAD, or the sum over a listing), so an oversized
source is refused at once with the flag that lifts the limit, instead of running out of memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from training.dataset import s3
from training.dataset.errors import DatasetError

CSV = "csv"
PARQUET = "parquet"
SUFFIXES = {".csv": CSV, ".parquet": PARQUET, ".pq": PARQUET}
_PARQUET_MAGIC = b"PAR1"


@dataclass(frozen=True)
class SourceFile:
    """One file of the source; ``name`` is what messages show (a path or an s3:// URI)."""

    name: str
    format: str
    size: int
    path: Path | None = None
    s3_object: s3.S3Object | None = None


@dataclass(frozen=True)
class Source:
    location: str
    files: tuple[SourceFile, ...]

    @property
    def size(self) -> int:
        return sum(file.size for file in self.files)


def human_bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _is_data_file(name: str) -> bool:
    # Spark and Hadoop write _SUCCESS and .crc files next to the data; editors write hidden files.
    return not name.startswith(("_", ".")) and PurePosixPath(name).suffix.lower() in SUFFIXES


def _single_format(location: str, names: list[str]) -> str:
    formats = {SUFFIXES[PurePosixPath(n).suffix.lower()] for n in names}
    if len(formats) > 1:
        csv = next(n for n in names if SUFFIXES[PurePosixPath(n).suffix.lower()] == CSV)
        parquet = next(n for n in names if SUFFIXES[PurePosixPath(n).suffix.lower()] == PARQUET)
        raise DatasetError(f"{location} mixes CSV and Parquet files ({csv!r}, {parquet!r}); put one format in a folder")
    return formats.pop()


def _sniffed_format(head: bytes) -> str:
    return PARQUET if head[:4] == _PARQUET_MAGIC else CSV


def _local(location: str) -> Source:
    path = Path(location).expanduser()
    if path.is_dir():
        names = sorted(p.name for p in path.iterdir() if p.is_file() and _is_data_file(p.name))
        if not names:
            raise DatasetError(f"{location}: the folder has no *.csv or *.parquet files")
        file_format = _single_format(location, names)
        files = tuple(SourceFile(str(path / n), file_format, (path / n).stat().st_size, path=path / n) for n in names)
        return Source(location, files)
    if not path.is_file():
        raise DatasetError(f"{location}: no such file or folder")
    suffix_format = SUFFIXES.get(path.suffix.lower())
    if suffix_format is None:
        with path.open("rb") as handle:
            suffix_format = _sniffed_format(handle.read(4))
    return Source(location, (SourceFile(str(path), suffix_format, path.stat().st_size, path=path),))


def _remote(location: str, client: Any) -> Source:
    bucket, key = s3.parse_uri(location)
    if key and not key.endswith("/"):
        item = s3.head(client, bucket, key)
        if item is not None:
            file_format = SUFFIXES.get(PurePosixPath(key).suffix.lower())
            if file_format is None:
                head = s3.open_stream(client, item)
                try:
                    file_format = _sniffed_format(head.read(4))
                finally:
                    head.close()
            return Source(location, (SourceFile(item.uri, file_format, item.size, s3_object=item),))
        key += "/"
    listed = [item for item in s3.list_files(client, bucket, key) if _is_data_file(PurePosixPath(item.key).name)]
    if not listed:
        raise DatasetError(f"{location}: no such object, and no *.csv or *.parquet files under s3://{bucket}/{key}")
    listed.sort(key=lambda item: item.key)
    file_format = _single_format(location, [item.key for item in listed])
    return Source(location, tuple(SourceFile(item.uri, file_format, item.size, s3_object=item) for item in listed))


def locate(location: str, max_bytes: int, client: Any | None) -> Source:
    """The source's files, refused before any read when together they exceed ``max_bytes``."""
    source = _remote(location, client) if location.startswith("s3://") else _local(location)
    if source.size > max_bytes:
        raise DatasetError(
            f"{location} is {human_bytes(source.size)} ({source.size:,} bytes), over the limit of "
            f"{human_bytes(max_bytes)} ({max_bytes:,} bytes); raise it with --max-bytes"
        )
    return source
