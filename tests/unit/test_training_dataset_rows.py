"""Row checks: drops counted per reason per segment, --strict, grid rounding, duplicates, skipped segments,
--segments, and the loud warnings for a price that is not a price."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from house_prices import schema
from tests.dataset_files import SCHEMA_HEADER, house_rows, write_csv
from training.dataset import Dataset, DatasetError, DataSpec, load_dataset

COLUMN = {name: index + 1 for index, name in enumerate(schema.CSV_COLUMNS)}  # position in a house_rows row


def spoil(rows: list[list[object]], index: int, **cells: object) -> None:
    for name, value in cells.items():
        rows[index][COLUMN[name]] = value


def load(path: Path, **changes: object) -> Dataset:
    fields: dict = {"source": str(path), "segment_column": "segment", "price_column": "PRICE"}
    fields.update(changes)
    return load_dataset(DataSpec(**fields))


@pytest.fixture
def spoiled(tmp_path: Path) -> Path:
    """Austin: 40 good rows + 7 bad ones, one per reason (and one bad twice); Boston: 40 good rows."""
    austin = house_rows("Austin", 47)
    spoil(austin, 0, SQUARE_FEET="abc")
    spoil(austin, 1, PRICE="nan")
    spoil(austin, 2, LOT_ACRES="inf")
    spoil(austin, 3, YEAR_BUILT=1700)
    spoil(austin, 4, PRICE=0)
    spoil(austin, 5, NUM_BEDROOMS="")
    # bad twice: the first failing column in CSV_COLUMNS order (PRICE) is the one counted
    spoil(austin, 6, PRICE="-5", SQUARE_FEET="n/a")
    return write_csv(tmp_path / "houses.csv", SCHEMA_HEADER, austin + house_rows("Boston", 40))


def test_bad_rows_are_dropped_and_counted_per_reason_per_segment(spoiled: Path) -> None:
    # When the file is loaded
    dataset = load(spoiled)
    austin, boston = dataset.report.segments
    # Then each bad row is dropped under its first failing check, in Austin only
    assert austin.dropped == {
        "non_numeric:SQUARE_FEET": 1,
        "nan:PRICE": 1,
        "infinite:LOT_ACRES": 1,
        "out_of_range:YEAR_BUILT": 1,
        "out_of_range:PRICE": 2,
        "missing:NUM_BEDROOMS": 1,
    }
    assert (austin.rows_read, austin.rows_usable) == (47, 40)
    assert boston.dropped == {}
    assert (boston.rows_read, boston.rows_usable) == (40, 40)
    assert dataset.segments[0].data.rows.shape == (40, 7)
    assert np.isfinite(dataset.segments[0].data.rows).all()
    # And the report keeps the first offending value of each reason
    assert dataset.report.examples["non_numeric:SQUARE_FEET"] == "abc"
    assert dataset.report.examples["out_of_range:PRICE"] == "0"


def test_strict_mode_refuses_any_dropped_row_listing_the_counts(spoiled: Path) -> None:
    # Given the spoiled file and --strict / When loaded / Then one error with counts, examples and segments
    with pytest.raises(DatasetError) as raised:
        load(spoiled, strict=True)
    message = raised.value.message
    assert message.startswith("--strict: 7 rows would be dropped: out_of_range:PRICE 2")
    assert "non_numeric:SQUARE_FEET 1 (e.g. 'abc')" in message
    assert "most in segments 'Austin' 7" in message


def test_strict_mode_accepts_a_clean_file(tmp_path: Path) -> None:
    # Given a clean file and --strict / When loaded / Then it loads
    path = write_csv(tmp_path / "houses.csv", SCHEMA_HEADER, house_rows("Austin", 40))
    assert load(path, strict=True).segments[0].data.rows.shape == (40, 7)


def test_values_off_the_schema_grid_are_rounded_onto_it_and_counted(tmp_path: Path) -> None:
    # Given bathrooms in quarters, a fractional year and fractional bedrooms
    rows = house_rows("Austin", 40)
    spoil(rows, 0, NUM_BATHROOMS=2.25, YEAR_BUILT=1990.6)
    spoil(rows, 1, NUM_BATHROOMS=2.3, NUM_BEDROOMS=3.5)
    spoil(rows, 2, NUM_BATHROOMS="2.0", LOT_ACRES=0.123456)
    dataset = load(write_csv(tmp_path / "houses.csv", SCHEMA_HEADER, rows))
    # Then each moved value is counted under its feature (LOT_ACRES has no grid)
    assert dataset.report.segments[0].rounded == {"NUM_BATHROOMS": 2, "YEAR_BUILT": 1, "NUM_BEDROOMS": 1}
    # And the rows hold grid values only: every one a valid API house
    for row in dataset.segments[0].data.rows[:, 1:].tolist():
        schema.parse_house(schema.house_from_row(row))
    # And each lands on the nearest grid value (numpy rounds halves to even: 2.25 → 2.0, 3.5 → 4)
    by_house = {(r[0], r[2]): r for r in dataset.segments[0].data.rows.tolist()}

    def stored(index: int) -> list[float]:
        return by_house[(float(rows[index][COLUMN["PRICE"]]), float(rows[index][COLUMN["SQUARE_FEET"]]))]

    assert stored(0)[1] == 1991.0
    assert stored(0)[4] == 2.0
    assert stored(1)[3] == 4.0
    assert stored(1)[4] == 2.5
    assert stored(2)[4] == 2.0
    assert stored(2)[5] == 0.123456


def test_exact_duplicates_are_counted_and_kept(tmp_path: Path) -> None:
    # Given one house listed three times and another twice
    rows = house_rows("Austin", 40)
    rows += [list(rows[0]), list(rows[0]), list(rows[5])]
    dataset = load(write_csv(tmp_path / "houses.csv", SCHEMA_HEADER, rows))
    # Then 3 duplicates are reported, and all 43 rows are kept (they are real sales)
    [report] = dataset.report.segments
    assert report.duplicates == 3
    assert report.rows_usable == 43
    # And copies of a house share its split (no validation house is also trained on)
    data = dataset.segments[0].data
    where = {name: {tuple(data.rows[i]) for i in indices.tolist()} for name, indices in data.splits.items()}
    assert not (where["train"] & where["val"])
    assert not (where["train"] & where["test"])


def test_a_segment_with_too_few_rows_is_skipped_with_the_reason(tmp_path: Path) -> None:
    # Given a 12-row segment and --min-rows 30 / When loaded / Then it is skipped with the reason
    rows = house_rows("Austin", 40) + house_rows("Tiny", 12)
    dataset = load(write_csv(tmp_path / "houses.csv", SCHEMA_HEADER, rows), min_rows=30)
    assert [s.city for s in dataset.segments] == ["Austin"]
    tiny = dataset.report.segments[1]
    assert (tiny.city, tiny.status, tiny.reason) == ("Tiny", "skipped", "12 usable rows, fewer than --min-rows 30")
    assert tiny.data_hash is None
    assert any("1 of 2 segments are skipped" in w for w in dataset.report.warnings)


def test_a_segment_without_validation_rows_is_skipped(tmp_path: Path) -> None:
    # Given a segment of one house repeated 40 times: every copy lands in the same split
    rows = house_rows("Austin", 40) + [house_rows("Copies", 1)[0]] * 40
    dataset = load(write_csv(tmp_path / "houses.csv", SCHEMA_HEADER, rows))
    copies = next(s for s in dataset.report.segments if s.city == "Copies")
    assert copies.status == "skipped"
    assert copies.reason is not None
    assert copies.reason.startswith("no ")
    assert copies.reason.endswith("rows among its 40 usable rows")
    assert copies.duplicates == 39


def test_rows_without_a_segment_value_are_dropped_and_warned(tmp_path: Path) -> None:
    # Given 3 rows with an empty segment / When loaded / Then they are counted and warned about
    rows = house_rows("Austin", 40) + house_rows("", 3)
    dataset = load(write_csv(tmp_path / "houses.csv", SCHEMA_HEADER, rows))
    assert dataset.report.rows_without_segment == 3
    assert "3 rows have no 'segment' value and were dropped" in dataset.report.warnings


def test_a_file_where_every_row_is_dropped_is_an_error_with_the_reasons(tmp_path: Path) -> None:
    # Given prices written as '$350,000' / When loaded / Then no model: an error with the reason and an example
    rows = house_rows("Austin", 40)
    for index in range(40):
        spoil(rows, index, PRICE="$350,000")
    with pytest.raises(
        DatasetError, match=r"no usable rows; every row was dropped: non_numeric:PRICE 40 \(e\.g\. '\$350,000'\)"
    ):
        load(write_csv(tmp_path / "houses.csv", SCHEMA_HEADER, rows))


def test_segments_restricts_the_run_by_value_or_city_name(tmp_path: Path) -> None:
    rows = house_rows("New York", 40) + house_rows("Boston", 40) + house_rows("Chicago", 40)
    path = write_csv(tmp_path / "houses.csv", SCHEMA_HEADER, rows)
    # When restricted by a raw value and by a city name
    dataset = load(path, segments=["New_York", "Boston"])
    # Then only those two are read into segments and reported
    assert [s.city for s in dataset.segments] == ["Boston", "New_York"]
    assert [s.city for s in dataset.report.segments] == ["Boston", "New_York"]
    assert dataset.report.rows_read == 120


def test_an_unknown_segment_is_an_error_listing_some_known_ones(tmp_path: Path) -> None:
    # Given --segments with a typo / When loaded / Then the typo and known segments are named
    path = write_csv(tmp_path / "houses.csv", SCHEMA_HEADER, house_rows("Boston", 40))
    with pytest.raises(DatasetError, match=r"--segments 'Bostn': no such segment .* e\.g\. 'Boston'"):
        load(path, segments=["Bostn"])


def test_the_price_column_holding_years_is_a_loud_warning(tmp_path: Path) -> None:
    # Given a "price" that is really the year built
    rows = house_rows("Austin", 40)
    for row in rows:
        row[COLUMN["PRICE"]] = row[COLUMN["YEAR_BUILT"]]
    dataset = load(write_csv(tmp_path / "houses.csv", SCHEMA_HEADER, rows))
    # Then the report says which feature's range it lies in
    [warning] = [w for w in dataset.report.warnings if "inside the range of" in w]
    assert "YEAR_BUILT (1,800–2,100)" in warning
    assert "--price-column" in warning


def test_prices_below_a_thousand_are_a_loud_warning(tmp_path: Path) -> None:
    # Given prices in thousands / When loaded / Then a warning suggests PRICE*1000
    rows = house_rows("Austin", 40)
    for row in rows:
        row[COLUMN["PRICE"]] = round(float(row[COLUMN["PRICE"]]) / 1000, 1)
    dataset = load(write_csv(tmp_path / "houses.csv", SCHEMA_HEADER, rows))
    assert any("under 1,000" in w and "'PRICE*1000'" in w for w in dataset.report.warnings)


def test_a_constant_price_is_a_loud_warning_overall_and_per_segment(tmp_path: Path) -> None:
    # Given one price for every house / When loaded / Then warned overall and on the segment
    rows = house_rows("Austin", 40)
    for row in rows:
        row[COLUMN["PRICE"]] = 250_000
    dataset = load(write_csv(tmp_path / "houses.csv", SCHEMA_HEADER, rows))
    assert any("is constant (250,000)" in w for w in dataset.report.warnings)
    assert dataset.report.segments[0].warnings == ["constant price (250,000) in every usable row"]


def test_real_prices_raise_no_warning(tmp_path: Path) -> None:
    # Given real-looking prices / When loaded / Then no warning (the warnings are not noise)
    dataset = load(write_csv(tmp_path / "houses.csv", SCHEMA_HEADER, house_rows("Austin", 40)))
    assert dataset.report.warnings == []


def test_an_id_used_as_the_segment_is_refused_early(tmp_path: Path) -> None:
    # Given a "segment" column with a distinct value per row (an id), and a limit of 50 segments
    rows = [[f"house-{i}", *row[1:]] for i, row in enumerate(house_rows("x", 80))]
    path = write_csv(tmp_path / "houses.csv", SCHEMA_HEADER, rows)
    # When loaded / Then the column is named as a likely id instead of 80 one-row segments
    with pytest.raises(DatasetError, match=r"column 'segment' has more than 50 distinct values: is it an id"):
        load(path, max_segments=50)


def test_a_collision_outside_the_selected_segments_does_not_block_the_run(tmp_path: Path) -> None:
    # Given "New York" and "New_York" (one name), and Boston
    rows = house_rows("New York", 40) + house_rows("New_York", 40) + house_rows("Boston", 40)
    path = write_csv(tmp_path / "houses.csv", SCHEMA_HEADER, rows)
    with pytest.raises(DatasetError, match=r"'New York' and 'New_York'"):
        load(path)
    # When the run is restricted to the segments without the collision, as the message suggests / Then it trains
    assert [s.city for s in load(path, segments=["Boston", "New York"]).segments] == ["Boston", "New_York"]
