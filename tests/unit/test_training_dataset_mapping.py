"""Column mapping: self-mapped names in any case, --column expressions and constants, and every mistake
reported by name with the file's columns listed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from house_prices import schema
from tests.dataset_files import (
    KING_COUNTY_COLUMNS,
    KING_COUNTY_HEADER,
    SCHEMA_HEADER,
    house_rows,
    write_bytes,
    write_csv,
)
from training.dataset import DatasetError, DataSpec, load_dataset


def king_county_rows(n: int, segment: str = "98178") -> list[list[Any]]:
    """The house_rows values under King County's columns: sqft_lot in square feet, id first."""
    out = []
    for i, (_, price, year, sqft, beds, baths, acres, garage) in enumerate(house_rows(segment, n)):
        out.append([i, segment, price, year, sqft, beds, baths, round(float(acres) * 43560), garage])
    return out


@pytest.fixture
def king_county(tmp_path: Path) -> Path:
    return write_csv(tmp_path / "kc_house_data.csv", KING_COUNTY_HEADER, king_county_rows(60))


def spec(path: Path, **changes: object) -> DataSpec:
    fields: dict = {"source": str(path), "segment_column": "zipcode", "price_column": "price"}
    fields["columns"] = KING_COUNTY_COLUMNS
    fields.update(changes)
    return DataSpec(**fields)


def test_columns_map_by_their_schema_name_in_any_case(tmp_path: Path) -> None:
    # Given a header with the schema's names in lower and mixed case
    header = ["segment", "price", *(name.lower() for name in schema.FEATURE_NAMES)]
    header[3] = "Square_Feet"
    path = write_csv(tmp_path / "houses.csv", header, house_rows("Austin", 40))
    # When loaded without --column
    dataset = load_dataset(DataSpec(str(path), segment_column="segment", price_column="price"))
    # Then every feature maps itself and the rows carry the file's values, PRICE first
    assert dataset.report.mapping == {**{n: n.lower() for n in schema.FEATURE_NAMES}, "SQUARE_FEET": "Square_Feet"}
    expected = np.array([row[1:] for row in house_rows("Austin", 40)], dtype=float)
    rows = dataset.segments[0].data.rows
    assert sorted(map(tuple, rows.tolist())) == sorted(map(tuple, expected.tolist()))


def test_column_expressions_convert_units_exactly(king_county: Path) -> None:
    # Given King County's sqft_lot (square feet) mapped as LOT_ACRES=sqft_lot/43560
    dataset = load_dataset(spec(king_county))
    # Then each LOT_ACRES is that division, done as written, and the report shows the expression
    lots = {round(float(r[-2]) * 43560) for r in house_rows("98178", 60)}
    assert set(dataset.segments[0].data.rows[:, 5].tolist()) == {lot / 43560 for lot in lots}
    assert dataset.report.mapping["LOT_ACRES"] == "sqft_lot/43560"
    assert dataset.report.mapping["YEAR_BUILT"] == "yr_built"


def test_a_price_expression_scales_the_price(tmp_path: Path) -> None:
    # Given prices in thousands
    rows = [[r[0], r[1] / 1000, *r[2:]] for r in house_rows("Austin", 40)]
    path = write_csv(tmp_path / "houses.csv", ["segment", "price_k", *schema.FEATURE_NAMES], rows)
    # When the price is given as price_k*1000
    dataset = load_dataset(DataSpec(str(path), segment_column="segment", price_column="price_k*1000"))
    # Then the prices are dollars again
    assert sorted(dataset.segments[0].data.rows[:, 0].tolist()) == pytest.approx(
        sorted(float(r[1]) for r in house_rows("Austin", 40))
    )


def test_a_constant_fills_a_feature_the_file_lacks(tmp_path: Path) -> None:
    # Given a file without a garage column
    header = [h for h in SCHEMA_HEADER if h != "GARAGE_SPACES"]
    path = write_csv(tmp_path / "houses.csv", header, [r[:-1] for r in house_rows("Austin", 40)])
    # When GARAGE_SPACES=0 is given
    dataset = load_dataset(
        DataSpec(str(path), segment_column="segment", price_column="PRICE", columns={"GARAGE_SPACES": "0"})
    )
    # Then every row has 0 garage spaces
    assert set(dataset.segments[0].data.rows[:, -1].tolist()) == {0.0}
    assert dataset.report.mapping["GARAGE_SPACES"] == "0"


def test_a_column_named_like_a_number_wins_over_the_constant(tmp_path: Path) -> None:
    # Given a column literally named "2" holding garage spaces
    header = [*SCHEMA_HEADER[:-1], "2"]
    path = write_csv(tmp_path / "houses.csv", header, house_rows("Austin", 40))
    dataset = load_dataset(
        DataSpec(str(path), segment_column="segment", price_column="PRICE", columns={"GARAGE_SPACES": "2"})
    )
    # Then the column is used, not the constant 2
    assert set(dataset.segments[0].data.rows[:, -1].tolist()) == {float(r[-1]) for r in house_rows("Austin", 40)}


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        ({"GARAGE_SPACES": "11"}, r"GARAGE_SPACES=11: the constant must be between 0 and 10"),
        ({"GARAGE_SPACES": "1.5"}, r"GARAGE_SPACES=1.5: the constant must be a whole number"),
        ({"NUM_BATHROOMS": "1.2"}, r"NUM_BATHROOMS=1.2: the constant must be a multiple of 0.5"),
        ({"POOL": "pool"}, r"'POOL' is not a feature; features: YEAR_BUILT, SQUARE_FEET"),
        ({"LOT_ACRES": "sqft_lot/0"}, r"factor must be a finite, non-zero number"),
    ],
)
def test_bad_column_options_are_named(tmp_path: Path, columns: dict[str, str], message: str) -> None:
    # Given a constant off the schema, an unknown feature or a zero factor / When loaded / Then each is named
    path = write_csv(tmp_path / "houses.csv", SCHEMA_HEADER, house_rows("Austin", 40))
    if "LOT_ACRES" in columns:
        path = write_csv(tmp_path / "lots.csv", [*SCHEMA_HEADER, "sqft_lot"], [[*r, 1] for r in house_rows("A", 40)])
    with pytest.raises(DatasetError, match=message):
        load_dataset(DataSpec(str(path), segment_column="segment", price_column="PRICE", columns=columns))


def test_an_unmapped_feature_is_named_with_the_files_columns(king_county: Path) -> None:
    # Given King County's file without --column for YEAR_BUILT and SQUARE_FEET
    columns = {k: v for k, v in KING_COUNTY_COLUMNS.items() if k not in {"YEAR_BUILT", "SQUARE_FEET"}}
    # When loaded / Then both features are named, with a suggestion, and the file's columns are listed
    with pytest.raises(DatasetError) as raised:
        load_dataset(spec(king_county, columns=columns))
    message = raised.value.message
    assert "not mapped" in message
    assert "YEAR_BUILT" in message
    assert "SQUARE_FEET" in message
    assert "kc_house_data.csv has 9 columns: 'id', 'zipcode', 'price', 'yr_built'" in message


def test_a_mapping_to_a_missing_column_is_named_with_a_suggestion(king_county: Path) -> None:
    # Given a typo in --column / When loaded / Then the typo, the close column and the file's columns are named
    with pytest.raises(DatasetError) as raised:
        load_dataset(spec(king_county, columns={**KING_COUNTY_COLUMNS, "SQUARE_FEET": "sqft_livng"}))
    message = raised.value.message
    assert "--column SQUARE_FEET=sqft_livng: 'sqft_livng' is not a column" in message
    assert "did you mean 'sqft_living'" in message
    assert "has 9 columns" in message


def test_the_price_column_mapped_as_a_feature_is_refused(king_county: Path) -> None:
    # Given SQUARE_FEET=price/10 / When loaded / Then the price used as a feature is refused
    with pytest.raises(DatasetError, match=r"the price column 'price' is mapped as the feature SQUARE_FEET"):
        load_dataset(spec(king_county, columns={**KING_COUNTY_COLUMNS, "SQUARE_FEET": "price/10"}))


def test_a_price_column_named_like_a_feature_is_the_wrong_column_trap(tmp_path: Path) -> None:
    # Given the notebook's columns with the price column moved last (the trap that trained YEAR_BUILT as the price)
    header = ["segment", *schema.FEATURE_NAMES, "PRICE"]
    rows = [[r[0], *r[2:], r[1]] for r in house_rows("Austin", 40)]
    path = write_csv(tmp_path / "houses.csv", header, rows)
    # When the user names a feature as the price / Then a clear refusal, naming the flags to use
    with pytest.raises(DatasetError, match=r"--price-column 'year_built' is also the feature YEAR_BUILT"):
        load_dataset(DataSpec(str(path), segment_column="segment", price_column="year_built"))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"segment_column": "zip"}, r"--segment-column 'zip' is not a column .*did you mean 'zipcode'"),
        ({"price_column": "sale_price"}, r"--price-column 'sale_price' is not a column"),
        ({"id_column": "house_id"}, r"--id-column 'house_id' is not a column"),
        ({"id_column": "zipcode"}, r"--id-column and --segment-column are the same column"),
        ({"price_column": "zipcode"}, r"--segment-column and --price-column are the same column"),
    ],
)
def test_missing_or_clashing_role_columns_are_named(king_county: Path, changes: dict, message: str) -> None:
    # Given a missing or reused segment/price/id column / When loaded / Then it is named with the file's columns
    with pytest.raises(DatasetError, match=message) as raised:
        load_dataset(spec(king_county, **changes))
    assert "has 9 columns" in raised.value.message


def test_two_columns_matching_one_feature_in_different_case_are_ambiguous(tmp_path: Path) -> None:
    # Given YEAR_BUILT and year_built / When self-mapped / Then the ambiguity is named
    header = [*SCHEMA_HEADER, "year_built"]
    path = write_csv(tmp_path / "houses.csv", header, [[*r, r[2]] for r in house_rows("Austin", 40)])
    with pytest.raises(DatasetError, match=r"YEAR_BUILT matches several columns \('YEAR_BUILT', 'year_built'\)"):
        load_dataset(DataSpec(str(path), segment_column="segment", price_column="PRICE"))


def test_a_headerless_file_is_the_header_trap(tmp_path: Path) -> None:
    # Given the notebook's own training CSV: no header, PRICE first
    path = write_bytes(
        tmp_path / "Chicago_IL_train.csv", b"412000,1995,3100,4,2.5,1.1,2\n398000,1990,2900,3,2.0,1.0,1\n"
    )
    # When loaded / Then the message says the first line is data, not a column-not-found riddle
    with pytest.raises(DatasetError, match=r"the first line \(412000, 1995, .*\) is data, not a header"):
        load_dataset(DataSpec(str(path), segment_column="segment", price_column="PRICE"))


def test_a_huge_header_is_listed_in_part(tmp_path: Path) -> None:
    # Given 10,000 columns and a typo in the segment column
    header = [f"c{i}" for i in range(10_000)]
    path = write_bytes(tmp_path / "wide.csv", (",".join(header) + "\n" + ",".join("1" * 10_000) + "\n").encode())
    with pytest.raises(DatasetError) as raised:
        load_dataset(DataSpec(str(path), segment_column="segment", price_column="PRICE"))
    # Then the message stays short: the first columns and how many more
    assert "has 10,000 columns: 'c0', 'c1'" in raised.value.message
    assert "… and 9,960 more" in raised.value.message
    assert len(raised.value.message) < 2_000
