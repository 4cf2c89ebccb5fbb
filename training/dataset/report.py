"""What validation found, per segment and overall: a JSON-safe record and its rich rendering.

Everything user-supplied (column names, segment values) is printed as plain text, never as rich
markup, and the tables fold long names instead of wrapping numbers, so the report reads the same in a
pipe, a CI log or an 80-column terminal.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

OK = "ok"
SKIPPED = "skipped"
_SHOWN_COLUMNS = 40


@dataclass
class SegmentReport:
    """One segment value of the file; ``city`` is "" when the name rule gives it no name."""

    city: str
    source_value: str
    rows_read: int
    rows_usable: int
    dropped: dict[str, int] = field(default_factory=dict)
    rounded: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    split_rows: dict[str, int] = field(default_factory=dict)
    status: str = OK
    reason: str | None = None
    data_hash: str | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass
class ValidationReport:
    """The whole source: where it came from, how it was mapped, what each segment became, what looks wrong."""

    source: str
    columns: list[str]
    mapping: dict[str, str]
    rows_read: int
    segments: list[SegmentReport] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    source_bytes: int = 0
    segment_column: str = ""
    price_column: str = ""
    id_column: str | None = None
    rows_without_segment: int = 0
    malformed_rows: int = 0
    # reason → the first offending raw value seen, e.g. {"non_numeric:PRICE": "$350,000"}
    examples: dict[str, str] = field(default_factory=dict)
    min_rows: int = 0
    strict: bool = False

    @property
    def ok_segments(self) -> list[SegmentReport]:
        return [s for s in self.segments if s.status == OK]

    @property
    def skipped_segments(self) -> list[SegmentReport]:
        return [s for s in self.segments if s.status == SKIPPED]

    def to_json(self) -> dict[str, Any]:
        """Plain dicts, lists, str, int and None only: ``json.dumps`` needs nothing else."""
        return asdict(self)


def _counts(counts: dict[str, int]) -> str:
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return ", ".join(f"{name} {count:,}" for name, count in ordered)


def _notes(segment: SegmentReport) -> Text:
    """Everything variable-length about a segment in one folding cell, so narrow terminals keep the numbers."""
    notes = Text()
    for label, body, style in (
        ("skipped", segment.reason or "", "yellow"),
        ("dropped", _counts(segment.dropped), ""),
        ("rounded", _counts(segment.rounded), "dim"),
        ("duplicates", f"{segment.duplicates:,}" if segment.duplicates else "", "dim"),
        ("warning", "; ".join(segment.warnings), "yellow"),
    ):
        if body:
            if notes:
                notes.append("\n")
            notes.append(f"{label}: ", style=style or None)
            notes.append(body)
    return notes


def _mapping_table(report: ValidationReport) -> Table:
    table = Table(title="Columns", title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("feature", no_wrap=True)
    table.add_column("from the file", overflow="fold")
    table.add_row("PRICE", Text(report.price_column))
    for feature, expression in report.mapping.items():
        table.add_row(feature, Text(expression))
    table.add_row(Text("segment", style="dim"), Text(report.segment_column))
    if report.id_column is not None:
        table.add_row(Text("id", style="dim"), Text(report.id_column))
    return table


def _segment_name(segment: SegmentReport) -> Text:
    name = Text(segment.city or "–")
    if segment.source_value != segment.city:
        name.append("\n")
        name.append(segment.source_value, style="dim")
    return name


def _segments_table(report: ValidationReport) -> Table:
    table = Table(
        title="Segments",
        title_justify="left",
        caption="city (and its value in the file); rows: usable/read; split: train/val/test; "
        "dropped: each row's first failing check",
        caption_justify="left",
        box=box.SIMPLE_HEAD,
    )
    table.add_column("city", overflow="fold", min_width=8)
    table.add_column("status", no_wrap=True)
    table.add_column("rows", justify="right", no_wrap=True)
    table.add_column("split", justify="right", no_wrap=True)
    table.add_column("notes", overflow="fold", min_width=12)
    for segment in report.segments:
        split = segment.split_rows
        table.add_row(
            _segment_name(segment),
            Text(segment.status, style="green" if segment.status == OK else "yellow"),
            f"{segment.rows_usable:,}/{segment.rows_read:,}",
            "/".join(f"{split.get(name, 0):,}" for name in ("train", "val", "test")),
            _notes(segment),
        )
    return table


def print_report(report: ValidationReport, console: Console) -> None:
    """The mapping, one row per segment, then the warnings; "none" where there is nothing to show."""
    ok, skipped = len(report.ok_segments), len(report.skipped_segments)
    summary = Text.assemble(
        ("Validated ", "bold"),
        Text(report.source),
        f": {len(report.files):,} file(s), {report.rows_read:,} rows, {len(report.segments):,} segments "
        f"({ok:,} ok, {skipped:,} skipped)",
    )
    console.print(summary)
    shown = ", ".join(report.columns[:_SHOWN_COLUMNS])
    more = f", … and {len(report.columns) - _SHOWN_COLUMNS:,} more" if len(report.columns) > _SHOWN_COLUMNS else ""
    console.print(Text(f"File columns ({len(report.columns):,}): {shown}{more}", overflow="fold"))
    console.print(_mapping_table(report))
    if report.segments:
        console.print(_segments_table(report))
    else:
        console.print("Segments: none")
    if report.warnings:
        for warning in report.warnings:
            console.print(Text.assemble(("warning: ", "bold yellow"), Text(warning)), overflow="fold")
    else:
        console.print("Warnings: none")
