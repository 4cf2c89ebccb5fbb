"""``load_dataset``: a source and a mapping in, validated segments and their report out, or one DatasetError.

The order is the cheap-to-expensive one: size (stat / HEAD / listing), header and mapping of the first
file (before any row), column types, then one streamed pass over the rows. Nothing is returned until
every file has been read, so a failure anywhere publishes nothing.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.dataset import s3
from training.dataset.errors import DatasetError
from training.dataset.mapping import ResolvedMapping, describe_columns, resolve_mapping
from training.dataset.report import ValidationReport
from training.dataset.sanity import price_warnings
from training.dataset.segments import Segment, SegmentCollector
from training.dataset.source import Source, locate
from training.dataset.spec import DataSpec
from training.dataset.tables import Table, open_table
from training.dataset.validate import RowChecker, check_types


@dataclass
class Dataset:
    """The usable segments, sorted by city, and the report on every segment of the run."""

    segments: list[Segment]
    report: ValidationReport


def _check_spec(spec: DataSpec) -> None:
    problems = []
    if spec.min_rows < 1:
        problems.append(f"--min-rows must be at least 1, got {spec.min_rows}")
    if spec.max_bytes < 1:
        problems.append(f"--max-bytes must be at least 1, got {spec.max_bytes}")
    if spec.max_segments < 1:
        problems.append(f"max_segments must be at least 1, got {spec.max_segments}")
    if spec.segments is not None and not list(spec.segments):
        problems.append("--segments needs at least one segment")
    if problems:
        raise DatasetError("; ".join(problems))


def _check_header(table: Table) -> None:
    repeated = [(name, count) for name, count in Counter(table.columns).items() if count > 1]
    if repeated:
        names = ", ".join(f"{name!r} ({count}×)" for name, count in repeated[:10])
        raise DatasetError(
            f"{table.name} has duplicate column names: {names}; rename them so each column has one name. "
            f"{describe_columns(table.columns, table.name)}"
        )


def _roles(mapping: ResolvedMapping) -> dict[str, str]:
    roles = {c: f"feature {f}" for f, e in mapping.features.items() if (c := e.column) is not None}
    if mapping.price.column is not None:
        roles[mapping.price.column] = "price"
    if mapping.id_column is not None:
        roles[mapping.id_column] = "id"
    roles[mapping.segment_column] = "segment"
    return roles


def _check_columns(table: Table, mapping: ResolvedMapping, first: str) -> None:
    """Later files of a folder or prefix must hold every column the first file's mapping uses."""
    missing = [c for c in mapping.read_columns if c not in set(table.columns)]
    if missing:
        raise DatasetError(
            f"{table.name} lacks column(s) {', '.join(repr(c) for c in missing)} that {first} has and the mapping "
            f"uses; every file of a source needs the same columns. {describe_columns(table.columns, table.name)}"
        )


def _example(report: ValidationReport, reason: str) -> str:
    example = report.examples.get(reason)
    return f" (e.g. {example!r})" if example is not None else ""


def _drops_text(report: ValidationReport) -> str:
    totals: Counter[str] = Counter()
    for segment in report.segments:
        totals.update(segment.dropped)
    parts = [f"{reason} {count:,}{_example(report, reason)}" for reason, count in totals.most_common()]
    if report.rows_without_segment:
        parts.append(f"no {report.segment_column!r} value {report.rows_without_segment:,}")
    if report.malformed_rows:
        parts.append(f"wrong number of fields {report.malformed_rows:,}")
    return ", ".join(parts)


def _refuse_unusable(report: ValidationReport, spec: DataSpec) -> None:
    if report.rows_read == 0 and report.malformed_rows:
        raise DatasetError(
            f"{spec.source}: no readable rows; {report.malformed_rows:,} row(s) have the wrong number of fields"
            f"{_example(report, 'malformed')} (a quote that is never closed swallows the rest of the file)"
        )
    if report.rows_read == 0:
        raise DatasetError(f"{spec.source} has a header but no data rows")
    if not any(s.rows_usable for s in report.segments):
        raise DatasetError(f"{spec.source}: no usable rows; every row was dropped: {_drops_text(report)}")
    if spec.strict:
        dropped = sum(sum(s.dropped.values()) for s in report.segments)
        total = dropped + report.rows_without_segment + report.malformed_rows
        if total:
            worst = sorted(report.segments, key=lambda s: -sum(s.dropped.values()))
            where = ", ".join(f"{s.source_value!r} {sum(s.dropped.values()):,}" for s in worst[:5] if s.dropped)
            raise DatasetError(
                f"--strict: {total:,} rows would be dropped: {_drops_text(report)}"
                + (f"; most in segments {where}" if where else "")
            )


def _warnings(report: ValidationReport, prices: Any, empty_files: list[str]) -> list[str]:
    warnings = price_warnings(prices, report.price_column)
    constant = [s.city or s.source_value for s in report.segments if s.warnings]
    if constant:
        shown = ", ".join(constant[:10]) + (f", … ({len(constant):,} in all)" if len(constant) > 10 else "")
        warnings.append(f"{len(constant):,} segment(s) have a constant price: {shown}")
    if report.rows_without_segment:
        warnings.append(
            f"{report.rows_without_segment:,} rows have no {report.segment_column!r} value and were dropped"
        )
    if report.malformed_rows:
        warnings.append(
            f"{report.malformed_rows:,} rows have the wrong number of fields and were skipped"
            + _example(report, "malformed")
        )
    warnings.extend(f"{name} has no data rows" for name in empty_files)
    skipped = report.skipped_segments
    if skipped:
        warnings.append(f"{len(skipped):,} of {len(report.segments):,} segments are skipped; see their reasons")
    return warnings


def _read(source: Source, spec: DataSpec, client: Any, workdir: Path) -> Dataset:
    mapping: ResolvedMapping | None = None
    collector: SegmentCollector | None = None
    checker: RowChecker | None = None
    columns: list[str] = []
    first = ""
    malformed, malformed_example = 0, None
    empty_files: list[str] = []
    for index, file in enumerate(source.files):
        table = open_table(file, client, workdir, spec.max_bytes, index)
        try:
            _check_header(table)
            if mapping is None:
                mapping = resolve_mapping(spec, table.columns, table.name)
                checker = RowChecker(mapping)
                collector = SegmentCollector(checker, mapping.segment_column, spec.segments, spec.max_segments)
                columns, first = table.columns, table.name
            else:
                _check_columns(table, mapping, first)
            assert collector is not None
            check_types(table.name, _roles(mapping), {c: table.column_type(c) for c in mapping.read_columns})
            rows = sum(collector.add(batch) for batch in table.batches(mapping.read_columns))
        finally:
            table.close()
        if rows == 0 and len(source.files) > 1:
            empty_files.append(table.name)
        malformed += table.malformed_rows
        malformed_example = malformed_example or table.malformed_example
    assert mapping is not None
    assert collector is not None
    assert checker is not None
    segments, reports, prices = collector.finish(spec.min_rows)
    examples = dict(checker.examples)
    if malformed_example is not None:
        examples["malformed"] = malformed_example
    report = ValidationReport(
        source=spec.source,
        columns=columns,
        mapping=mapping.expressions,
        rows_read=collector.rows_read,
        segments=reports,
        files=[f.name for f in source.files],
        source_bytes=source.size,
        segment_column=mapping.segment_column,
        price_column=mapping.price.text,
        id_column=mapping.id_column,
        rows_without_segment=collector.rows_without_segment,
        malformed_rows=malformed,
        examples=examples,
        min_rows=spec.min_rows,
        strict=spec.strict,
    )
    _refuse_unusable(report, spec)
    report.warnings = _warnings(report, prices, empty_files)
    return Dataset(segments=segments, report=report)


def load_dataset(spec: DataSpec, *, s3_client: Any | None = None) -> Dataset:
    """Read, map and validate ``spec.source``; every segment that can train is returned, the rest reported.

    Raises DatasetError (and returns nothing) for a source that is missing, too big, unreadable or
    wrongly mapped, for colliding city names, for unknown ``--segments`` and, with ``strict``, for any
    dropped row. ``s3_client`` is a boto3 S3 client, needed only for s3:// sources (built from the
    default session when omitted).
    """
    _check_spec(spec)
    client = s3_client
    if client is None and spec.source.startswith("s3://"):
        client = s3.default_client()
    source = locate(spec.source, spec.max_bytes, client)
    with tempfile.TemporaryDirectory(prefix="house-prices-dataset-") as workdir:
        return _read(source, spec, client, Path(workdir))
