"""Rows of every batch, gathered per segment, turned into the segments training gets and their reports.

Batches are reduced as they arrive: only usable rows are kept (float64s, a segment code, a split),
and drop, rounding and read counts are summed per segment, so memory follows the numeric data and
not the text of the file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from house_prices import schema
from training.data import CityData
from training.dataset import splits as split_rules
from training.dataset.errors import DatasetError
from training.dataset.names import NAME_RULE, assign_city_names, city_name
from training.dataset.report import SKIPPED, SegmentReport
from training.dataset.sanity import segment_price_warnings
from training.dataset.validate import RowChecker, labels


@dataclass(frozen=True)
class Segment:
    """One trainable segment: ``data`` is what training and the gate use, exactly like a synthetic city's."""

    data: CityData
    source_value: str
    data_hash: str

    @property
    def city(self) -> str:
        return self.data.city


def _grow(counts: np.ndarray, rows: int) -> np.ndarray:
    if counts.shape[0] >= rows:
        return counts
    grown = np.zeros((max(rows, 2 * counts.shape[0]), *counts.shape[1:]), counts.dtype)
    grown[: counts.shape[0]] = counts
    return grown


def _count(total: np.ndarray, codes: np.ndarray, columns: np.ndarray | None, width: int, size: int) -> np.ndarray:
    """Add ``total[code, column] += 1`` per row, costing the batch's rows and segments, never every segment's.

    A file whose "segment" column is really an id has a million segments; counting into a full-width
    array per batch would cost a million cells per batch.
    """
    total = _grow(total, size)
    if len(codes) == 0:
        return total
    present, local = np.unique(codes, return_inverse=True)
    flat = local * width + (columns if columns is not None else 0)
    counts = np.bincount(flat, minlength=len(present) * width).reshape(len(present), width)
    total[present] += counts if total.ndim == 2 else counts[:, 0]
    return total


class SegmentCollector:
    """Accumulates checked rows per segment value; ``finish`` makes the segments and their reports."""

    def __init__(
        self, checker: RowChecker, segment_column: str, requested: Sequence[str] | None, max_segments: int
    ) -> None:
        self._checker = checker
        self._segment_column = segment_column
        self._max_segments = max_segments
        if isinstance(requested, str):
            requested = [requested]
        self._requested = None if requested is None else frozenset(requested)
        self._values: list[str] = []
        self._code_of: dict[str, int] = {}
        self._prefixes: list[bytes] = []
        self._selected: list[bool] = []
        width = len(checker.reasons)
        self._read = np.zeros(0, np.int64)
        self._width = width
        self._drops = np.zeros((0, width), np.int64)
        self._rounded = np.zeros((0, len(schema.CSV_COLUMNS)), np.int64)
        self._codes: list[np.ndarray] = []
        self._rows: list[np.ndarray] = []
        self._splits: list[np.ndarray] = []
        self.rows_read = 0
        self.rows_without_segment = 0

    def _code(self, value: str) -> int:
        code = self._code_of.get(value)
        if code is None:
            if len(self._values) >= self._max_segments:
                raise DatasetError(
                    f"column {self._segment_column!r} has more than {self._max_segments:,} distinct values: is it an "
                    "id rather than the segment (city, zip code, …)? Name the segment with --segment-column"
                )
            code = self._code_of[value] = len(self._values)
            self._values.append(value)
            self._prefixes.append(split_rules.segment_prefix(value))
            wanted = self._requested
            self._selected.append(wanted is None or value in wanted or city_name(value) in wanted)
        return code

    def add(self, batch: pa.RecordBatch) -> int:
        """Check one batch and keep its usable rows; returns the rows read."""
        n = batch.num_rows
        if n == 0:
            return 0
        encoded = pc.dictionary_encode(labels(batch.column(self._segment_column)))
        local = np.array([self._code(v) for v in encoded.dictionary.to_pylist()] + [-1], dtype=np.int64)
        codes = local[pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False)]
        has_segment = codes >= 0
        self.rows_read += n
        self.rows_without_segment += int(n - has_segment.sum())
        self._read = _count(self._read, codes[has_segment], None, 1, len(self._values))
        keep = has_segment & np.array([*self._selected, False], bool)[codes]
        if not keep.all():
            batch, codes = batch.filter(pa.array(keep)), codes[keep]
            if batch.num_rows == 0:
                return n
        checked = self._checker.check(batch)
        size = len(self._values)
        self._drops = _count(self._drops, codes, checked.reasons.astype(np.int64), self._width, size)
        usable = checked.reasons == 0
        codes = codes[usable]
        moved_rows, moved_columns = np.nonzero(checked.rounded[usable])
        self._rounded = _count(self._rounded, codes[moved_rows], moved_columns, len(schema.CSV_COLUMNS), size)
        values = checked.values[usable]
        if checked.ids is None:
            keys = split_rules.value_keys(values)
        else:
            keys = split_rules.id_keys(checked.ids.filter(pa.array(usable)).to_pylist())
        self._codes.append(codes)
        self._rows.append(values)
        self._splits.append(split_rules.split_codes(split_rules.key_hashes(self._prefixes, codes, keys)))
        return n

    def _check_requested(self) -> None:
        if self._requested is None:
            return
        known = set(self._values) | {name for name in map(city_name, self._values) if name is not None}
        unknown = sorted(self._requested - known)
        if unknown:
            some = ", ".join(repr(v) for v in sorted(self._values)[:10])
            raise DatasetError(
                f"--segments {', '.join(repr(v) for v in unknown)}: no such segment value or city name in column "
                f"{self._segment_column!r}; it has {len(self._values):,} segment values, e.g. {some}"
            )

    def finish(self, min_rows: int) -> tuple[list[Segment], list[SegmentReport], np.ndarray]:
        """The trainable segments (by city), a report per selected segment, and every usable price."""
        # Only the run's segments must have distinct names: --segments is the way around a collision.
        names: dict[str, str | None] = {v: None for v in self._values}
        names.update(assign_city_names(v for v, chosen in zip(self._values, self._selected, strict=True) if chosen))
        self._check_requested()
        width = len(schema.CSV_COLUMNS)
        codes = np.concatenate(self._codes) if self._codes else np.zeros(0, np.int64)
        rows = np.concatenate(self._rows) if self._rows else np.zeros((0, width))
        splits = np.concatenate(self._splits) if self._splits else np.zeros(0, np.int8)
        # The per-batch pieces are copies now; dropping them keeps the peak at about three copies of the rows.
        self._codes, self._rows, self._splits = [], [], []
        order = split_rules.canonical_order(codes, rows, splits)
        codes, rows, splits = codes[order], rows[order], splits[order]
        same = (codes[1:] == codes[:-1]) & (rows[1:] == rows[:-1]).all(axis=1)
        size = len(self._values)
        duplicates = np.bincount(codes[1:][same], minlength=size)
        starts = np.searchsorted(codes, np.arange(size), "left")
        ends = np.searchsorted(codes, np.arange(size), "right")
        drops, rounded, read = (_grow(a, size) for a in (self._drops, self._rounded, self._read))
        segments: list[Segment] = []
        reports: list[SegmentReport] = []
        for code, value in enumerate(self._values):
            if not self._selected[code]:
                continue
            start, end = int(starts[code]), int(ends[code])
            segment_splits = splits[start:end]
            counts = np.bincount(segment_splits, minlength=3)
            report = SegmentReport(
                city=names[value] or "",
                source_value=value,
                rows_read=int(read[code]),
                rows_usable=end - start,
                dropped={self._checker.reasons[r]: int(c) for r, c in enumerate(drops[code]) if r and c},
                rounded={schema.CSV_COLUMNS[i]: int(c) for i, c in enumerate(rounded[code]) if c},
                duplicates=int(duplicates[code]),
                split_rows={name: int(counts[i]) for i, name in enumerate(split_rules.SPLITS)},
                warnings=segment_price_warnings(rows[start:end, 0]),
            )
            report.reason = _skip_reason(report, names[value], min_rows)
            if report.reason is not None:
                report.status = SKIPPED
            else:
                segment_rows = np.ascontiguousarray(rows[start:end])
                report.data_hash = split_rules.data_hash(segment_rows, segment_splits)
                data = CityData(report.city, segment_rows, split_rules.split_indices(segment_splits))
                segments.append(Segment(data=data, source_value=value, data_hash=report.data_hash))
            reports.append(report)
        segments.sort(key=lambda s: s.city)
        reports.sort(key=lambda r: (r.city == "", r.city, r.source_value))
        # Rows of segments outside --segments were never kept: every usable price here is the run's.
        return segments, reports, rows[:, 0]


def _skip_reason(report: SegmentReport, name: str | None, min_rows: int) -> str | None:
    if name is None:
        return f"no valid city name from {report.source_value!r}: {NAME_RULE}"
    if report.rows_usable < min_rows:
        return f"{report.rows_usable:,} usable rows, fewer than --min-rows {min_rows:,}"
    for split, label in (("train", "training"), ("val", "validation")):
        if report.split_rows[split] == 0:
            return f"no {label} rows among its {report.rows_usable:,} usable rows"
    return None
