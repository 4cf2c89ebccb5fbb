"""Reading a file's header and then only the columns a run needs, in record batches.

CSV is parsed by pyarrow as a stream (``open_csv``); Parquet by row group (``iter_batches``). Only the
mapped columns are ever converted, so a 10,000-column file costs what its few used columns cost, and
peak memory follows one batch, not the file. pyarrow's errors become DatasetErrors that say which
file and which column.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from training.dataset import s3
from training.dataset.errors import DatasetError
from training.dataset.source import CSV, SourceFile, human_bytes

# The header must fit in the first block pyarrow parses: a small block first (it is parsed, and its
# columns' types inferred, only to learn the names), a large one when the header is longer.
HEADER_BLOCK_BYTES = (1 << 20, 16 << 20)
DATA_BLOCK_BYTES = 4 << 20
PARQUET_BATCH_ROWS = 64 * 1024
_COLUMN_INDEX = re.compile(r"In CSV column #(\d+)")
# What a "CSV" that is not text usually is; said before pyarrow reports garbage as ragged rows.
_BINARY_MAGIC = {
    b"\x1f\x8b": "gzip-compressed: decompress it first",
    b"PK\x03\x04": "a zip archive (an .xlsx workbook?): export it as CSV",
    b"PAR1": "a Parquet file: name it .parquet",
}


class Table(Protocol):
    """A file opened for reading: its header now, selected columns as batches later."""

    name: str
    columns: list[str]
    malformed_rows: int
    malformed_example: str | None

    def column_type(self, column: str) -> pa.DataType: ...

    def batches(self, columns: Sequence[str]) -> Iterator[pa.RecordBatch]: ...

    def close(self) -> None: ...


def _csv_problem(name: str, message: str, size: int, columns: Sequence[str]) -> str:
    if message == "Empty CSV file" or size == 0:
        return f"{name} is empty"
    if "cannot infer number of columns" in message:
        if size >= HEADER_BLOCK_BYTES[-1]:
            return f"{name}: the header line is longer than {human_bytes(HEADER_BLOCK_BYTES[-1])}"
        return f"{name} has no data rows (at most a header line)"
    if "invalid UTF8" in message:
        match = _COLUMN_INDEX.search(message)
        column = f" in column {columns[int(match[1])]!r}" if match and int(match[1]) < len(columns) else ""
        return f"{name} is not UTF-8 text{column}; save it as UTF-8 (with or without a BOM)"
    if "straddling" in message:
        return f"{name}: a row is longer than {human_bytes(DATA_BLOCK_BYTES)} or a quote is never closed"
    return f"{name} cannot be read as CSV: {message}"


@contextmanager
def _csv_errors(name: str, size: int, columns: Sequence[str] = ()) -> Iterator[None]:
    try:
        yield
    except UnicodeDecodeError as error:
        raise DatasetError(
            f"{name} is not UTF-8 text (byte {error.object[error.start : error.start + 1]!r} in its header); "
            "save it as UTF-8 (with or without a BOM)"
        ) from None
    except pa.ArrowException as error:
        raise DatasetError(_csv_problem(name, str(error), size, columns)) from None
    except OSError as error:
        raise DatasetError(f"{name} cannot be read: {error}") from None


class CsvTable:
    """A CSV file with a header; every read column comes back as text, so a bad cell never fails a batch."""

    def __init__(self, file: SourceFile, open_stream: Callable[[], Any]) -> None:
        self.name = file.name
        self._size = file.size
        self._open = open_stream
        self.malformed_rows = 0
        self.malformed_example: str | None = None
        self._malformed_lock = threading.Lock()
        self._refuse_binary()
        self.columns = self._read_header()

    def _refuse_binary(self) -> None:
        stream = self._open()
        try:
            with _csv_errors(self.name, self._size):
                start = bytes(stream.read(4))
        finally:
            stream.close()
        for magic, what in _BINARY_MAGIC.items():
            if start.startswith(magic):
                raise DatasetError(f"{self.name} is not CSV text but {what}")

    def _read_header(self) -> list[str]:
        with _csv_errors(self.name, self._size):
            for block_size in HEADER_BLOCK_BYTES:
                names = self._header_within(block_size)
                if names is not None:
                    return names
            raise pa.ArrowInvalid("cannot infer number of columns")

    def _header_within(self, block_size: int) -> list[str] | None:
        """The column names, or None when the header is longer than ``block_size`` (and the file is)."""
        stream = self._open()
        try:
            reader = pa_csv.open_csv(
                stream,
                read_options=pa_csv.ReadOptions(block_size=block_size, use_threads=False),
                parse_options=pa_csv.ParseOptions(newlines_in_values=True, invalid_row_handler=lambda _: "skip"),
            )
            names = list(reader.schema.names)
            reader.close()
            return names
        except pa.ArrowInvalid as error:
            if "cannot infer number of columns" in str(error) and self._size > block_size:
                return None
            raise
        finally:
            stream.close()

    def column_type(self, column: str) -> pa.DataType:
        return pa.string()

    def close(self) -> None:
        """Each read opens its own stream and closes it; nothing stays open between reads."""

    def _skip_malformed(self, row: Any) -> str:
        # A row with the wrong number of fields has no trustworthy segment: counted for the whole file.
        # pyarrow may call this from its parsing threads.
        with self._malformed_lock:
            self.malformed_rows += 1
            if self.malformed_example is None:
                text = str(row.text)
                self.malformed_example = text if len(text) <= 80 else text[:77] + "..."
        return "skip"

    def batches(self, columns: Sequence[str]) -> Iterator[pa.RecordBatch]:
        header_bytes = sum(len(c.encode()) + 3 for c in self.columns)
        stream = self._open()
        try:
            with _csv_errors(self.name, self._size, columns):
                reader = pa_csv.open_csv(
                    stream,
                    read_options=pa_csv.ReadOptions(block_size=max(DATA_BLOCK_BYTES, 2 * header_bytes)),
                    parse_options=pa_csv.ParseOptions(
                        newlines_in_values=True, invalid_row_handler=self._skip_malformed
                    ),
                    convert_options=pa_csv.ConvertOptions(
                        include_columns=list(columns),
                        column_types=dict.fromkeys(columns, pa.string()),
                        strings_can_be_null=False,
                        quoted_strings_can_be_null=False,
                    ),
                )
                yield from reader
        finally:
            stream.close()


@contextmanager
def _parquet_errors(name: str) -> Iterator[None]:
    try:
        yield
    except OSError as error:
        raise DatasetError(f"{name} cannot be read: {error}") from None
    except pa.ArrowException as error:
        message = str(error)
        if "size is 0 bytes" in message:
            raise DatasetError(f"{name} is empty") from None
        if "magic bytes not found" in message or "smaller than the minimum file footer" in message:
            raise DatasetError(f"{name} is not a Parquet file") from None
        raise DatasetError(f"{name} cannot be read as Parquet: {message}") from None


class ParquetTable:
    """A Parquet file (seekable, local); columns keep their stored types until the row checks convert them."""

    def __init__(self, file: SourceFile, path: Path, *, downloaded: bool = False) -> None:
        self.name = file.name
        self._path = path
        self._downloaded = downloaded
        self.malformed_rows = 0
        self.malformed_example: str | None = None
        with _parquet_errors(self.name):
            self._file = pq.ParquetFile(str(path))
            self._schema = self._file.schema_arrow
        self.columns = list(self._schema.names)

    def column_type(self, column: str) -> pa.DataType:
        return self._schema.field(column).type

    def batches(self, columns: Sequence[str]) -> Iterator[pa.RecordBatch]:
        with _parquet_errors(self.name):
            yield from self._file.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=list(columns))

    def close(self) -> None:
        """Close the file and delete a downloaded copy, so a prefix of many files needs the disk of one."""
        self._file.close()
        if self._downloaded:
            self._path.unlink(missing_ok=True)


def open_table(file: SourceFile, client: Any, workdir: Path, max_bytes: int, index: int) -> Table:
    """Open one file; an S3 Parquet object is first downloaded under ``workdir`` (Parquet needs to seek)."""
    if file.format == CSV:
        if file.s3_object is not None:
            item = file.s3_object
            return CsvTable(file, lambda: pa.PythonFile(s3.open_stream(client, item), mode="r"))
        path = file.path
        assert path is not None
        return CsvTable(file, lambda: pa.OSFile(str(path), "r"))
    if file.s3_object is not None:
        local = s3.download(client, file.s3_object, workdir / f"{index}.parquet", max_bytes)
        return ParquetTable(file, local, downloaded=True)
    assert file.path is not None
    return ParquetTable(file, file.path)
