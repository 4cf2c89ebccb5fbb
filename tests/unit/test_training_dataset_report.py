"""The validation report: JSON-safe, and a rich rendering that survives pipes, narrow terminals and
user text that looks like markup."""

from __future__ import annotations

import io
import json
from pathlib import Path

from rich.console import Console

from tests.dataset_files import SCHEMA_HEADER, house_rows, write_csv
from training.dataset import DataSpec, SegmentReport, ValidationReport, load_dataset, print_report


def render(report: ValidationReport, width: int) -> str:
    buffer = io.StringIO()
    print_report(report, Console(file=buffer, width=width, color_system=None))
    return buffer.getvalue()


def sample(tmp_path: Path) -> ValidationReport:
    long_name = "Very_" + "long_" * 11 + "name"
    rows = house_rows("[bold]Austin[/bold]", 40) + house_rows(long_name, 40) + house_rows("Tiny", 5)
    rows[0][3] = "abc"
    path = write_csv(tmp_path / "houses.csv", SCHEMA_HEADER, rows)
    return load_dataset(DataSpec(str(path), segment_column="segment", price_column="PRICE")).report


def test_the_report_serialises_to_json(tmp_path: Path) -> None:
    # Given a report with dropped, skipped and renamed segments / When dumped as JSON
    report = sample(tmp_path)
    document = json.loads(json.dumps(report.to_json()))
    # Then it holds every segment with its counts, the mapping and the warnings
    assert document["rows_read"] == 85
    assert document["mapping"]["SQUARE_FEET"] == "SQUARE_FEET"
    by_value = {s["source_value"]: s for s in document["segments"]}
    assert by_value["[bold]Austin[/bold]"]["city"] == "bold_Austin_bold"
    assert by_value["[bold]Austin[/bold]"]["dropped"] == {"non_numeric:SQUARE_FEET": 1}
    assert by_value["Tiny"]["status"] == "skipped"
    assert by_value["Tiny"]["data_hash"] is None
    assert document["warnings"] == report.warnings


def test_the_table_fits_a_narrow_terminal_and_folds_long_names(tmp_path: Path) -> None:
    # Given a 60-column terminal / When the report is printed
    report = sample(tmp_path)
    text = render(report, 60)
    # Then no line is wider than the terminal, and the long city name is folded, not cut
    assert max(len(line) for line in text.splitlines()) <= 60
    long_name = next(s.city for s in report.segments if s.city.startswith("Very_"))
    assert long_name not in text  # folded over lines...
    first_cells = "".join(line.split()[0] for line in text.splitlines() if line.strip())
    assert long_name in first_cells  # ...but all there, in the city column
    assert "skipped" in text
    assert "5 usable rows, fewer than --min-rows 30" in " ".join(text.split())


def test_user_text_is_printed_literally_not_as_markup(tmp_path: Path) -> None:
    # Given a segment value that looks like rich markup / When printed / Then it appears verbatim
    text = render(sample(tmp_path), 160)
    assert "[bold]Austin[/bold]" in text


def test_an_empty_report_says_none() -> None:
    # Given a report without segments or warnings / When printed / Then it says none for both
    report = ValidationReport(source="x.csv", columns=["a"], mapping={}, rows_read=0)
    text = render(report, 80)
    assert "Segments: none" in text
    assert "Warnings: none" in text


def test_each_segment_shows_its_counts(tmp_path: Path) -> None:
    # Given a segment with drops, rounding and duplicates / When printed / Then every count is shown
    report = ValidationReport(
        source="x.csv",
        columns=["segment"],
        mapping={},
        rows_read=50,
        segments=[
            SegmentReport(
                city="Austin",
                source_value="Austin",
                rows_read=50,
                rows_usable=47,
                dropped={"nan:PRICE": 3},
                rounded={"NUM_BATHROOMS": 2},
                duplicates=4,
                split_rows={"train": 30, "val": 12, "test": 5},
            )
        ],
        warnings=["the median price is tiny"],
    )
    flat = " ".join(render(report, 120).split())
    for expected in ("47/50", "30/12/5", "dropped: nan:PRICE 3", "rounded: NUM_BATHROOMS 2", "duplicates: 4"):
        assert expected in flat
    assert "warning: the median price is tiny" in flat
