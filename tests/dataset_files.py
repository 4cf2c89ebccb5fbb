"""Builders of users' files for the dataset reader's tests: well-formed houses, and the hostile ones.

Every builder writes bytes to a path and returns the path, so each test states exactly what the file
holds; the houses come from the synthetic generator, so their values are valid unless a test spoils them.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from house_prices import schema
from training import data

# A header in the schema's names (self-mapping), with the segment first.
SCHEMA_HEADER = ("segment", "PRICE", *schema.FEATURE_NAMES)
# The same houses under a public data set's names (King County house sales), which need --column.
KING_COUNTY_COLUMNS = {
    "YEAR_BUILT": "yr_built",
    "SQUARE_FEET": "sqft_living",
    "NUM_BEDROOMS": "bedrooms",
    "NUM_BATHROOMS": "bathrooms",
    "LOT_ACRES": "sqft_lot/43560",
    "GARAGE_SPACES": "garage",
}
KING_COUNTY_HEADER = (
    "id",
    "zipcode",
    "price",
    "yr_built",
    "sqft_living",
    "bedrooms",
    "bathrooms",
    "sqft_lot",
    "garage",
)


def house_rows(segment: str, n: int, seed: int = 0) -> list[list[Any]]:
    """``n`` valid rows ``[segment, PRICE, features…]`` with integer features written as integers."""
    rows = data.generate_houses("Seed", n, seed=seed + sum(segment.encode()))
    out: list[list[Any]] = []
    for row in rows.tolist():
        cells: list[Any] = [segment]
        for name, value in zip(schema.CSV_COLUMNS, row, strict=True):
            whole = name in {"PRICE", "YEAR_BUILT", "SQUARE_FEET", "NUM_BEDROOMS", "GARAGE_SPACES"}
            cells.append(int(value) if whole else value)
        out.append(cells)
    return out


def csv_text(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """RFC 4180 CSV (quotes where needed), "\\n" line ends."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[object]]) -> Path:
    path.write_text(csv_text(header, rows), encoding="utf-8")
    return path


def write_houses(path: Path, segments: Mapping[str, int], seed: int = 0) -> Path:
    """A schema-named CSV with ``segments[name]`` valid houses per segment."""
    rows = [row for name, n in segments.items() for row in house_rows(name, n, seed)]
    return write_csv(path, SCHEMA_HEADER, rows)


def write_bytes(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


def write_parquet(path: Path, columns: Mapping[str, pa.Array | Sequence[object]]) -> Path:
    pq.write_table(pa.table(dict(columns)), path)
    return path


def houses_table(segments: Mapping[str, int], seed: int = 0) -> dict[str, list[Any]]:
    """Schema-named columns (segment first) of valid houses, for Parquet files."""
    rows = [row for name, n in segments.items() for row in house_rows(name, n, seed)]
    return {name: [row[i] for row in rows] for i, name in enumerate(SCHEMA_HEADER)}


def wide_csv(path: Path, columns: int, rows: int) -> Path:
    """A schema-named CSV padded with ``columns`` extra numeric columns ("x0", "x1", …) before the real ones."""
    header = [f"x{i}" for i in range(columns)] + list(SCHEMA_HEADER)
    filler = ",".join("0" for _ in range(columns))
    lines = [",".join(header)]
    for row in house_rows("Wide", rows):
        lines.append(filler + "," + ",".join(str(cell) for cell in row))
    path.write_text("\n".join(lines) + "\n")
    return path
