"""Synthetic data: the notebook's formula and distributions, determinism, a leak-free split, headerless CSVs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from house_prices import schema
from house_prices.errors import InvalidCityName
from training import data
from training import train as train_script


@pytest.fixture(scope="module")
def notebook_cities() -> dict[str, data.CityData]:
    return data.generate_cities(schema.NOTEBOOK_CITIES)


@pytest.fixture(scope="module")
def all_rows(notebook_cities: dict[str, data.CityData]) -> np.ndarray:
    return np.concatenate([city.rows for city in notebook_cities.values()])


def seed_price(year: int, sqft: int, bedrooms: int, bathrooms: float, lot: float, garage: int) -> int:
    """The notebook's formula verbatim, on Python scalars."""
    return int(
        int(sqft * 150)
        + 10000 * bedrooms
        + 15000 * bathrooms
        + 15000 * lot
        + 15000 * garage
        - 5000 * (schema.MAX_YEAR - year)
    )


def test_price_formula_holds_for_every_row(all_rows: np.ndarray) -> None:
    # Given 10,000 generated houses / When the notebook's scalar formula is applied to each row
    for price, year, sqft, bedrooms, bathrooms, lot, garage in all_rows.tolist():
        expected = seed_price(int(year), int(sqft), int(bedrooms), bathrooms, lot, int(garage))
        # Then the stored price is exactly that integer
        assert price == expected


def test_columns_follow_schema_order_with_price_first(notebook_cities: dict[str, data.CityData]) -> None:
    rows = notebook_cities["Chicago_IL"].rows
    assert rows.shape == (schema.HOUSES_PER_CITY, len(schema.CSV_COLUMNS))
    assert schema.CSV_COLUMNS[0] == "PRICE"
    assert (data.column(rows, "PRICE") == rows[:, 0]).all()
    assert (data.column(rows, "GARAGE_SPACES") == rows[:, -1]).all()


def test_distributions_match_the_seed(all_rows: np.ndarray) -> None:
    def col(name: str) -> np.ndarray:
        return data.column(all_rows, name)

    sqft, lot, year = col("SQUARE_FEET"), col("LOT_ACRES"), col("YEAR_BUILT")
    assert abs(sqft.mean() - 3000) < 40
    assert abs(sqft.std() - 750) < 30
    assert (sqft == np.trunc(sqft)).all()
    assert set(col("NUM_BEDROOMS").tolist()) == {2, 3, 4, 5, 6}
    assert set(col("NUM_BATHROOMS").tolist()) == {1.0, 1.5, 2.0, 2.5, 3.0}
    assert set(col("GARAGE_SPACES").tolist()) == {0, 1, 2, 3}
    assert abs(lot.mean() - 1.0) < 0.02
    assert abs(lot.std() - 0.25) < 0.02
    assert all(round(value, 2) == value for value in lot.tolist())
    assert year.max() == schema.MAX_YEAR  # the min(2019, ...) cap is hit (~1 % of houses)
    assert abs(year.mean() - 1994.5) < 0.6
    assert abs(year.std() - 10) < 0.6
    assert (year == np.trunc(year)).all()


def test_every_row_is_a_valid_api_house(all_rows: np.ndarray) -> None:
    # Given generated rows / When each is validated as the router validates a request / Then none is rejected
    for row in all_rows[:, 1:].tolist():
        schema.parse_house(schema.house_from_row(row))


def test_same_seed_same_houses_and_split() -> None:
    first, second = data.generate_city("Houston_TX", seed=7), data.generate_city("Houston_TX", seed=7)
    assert np.array_equal(first.rows, second.rows)
    for split in ("train", "val", "test"):
        assert np.array_equal(first.splits[split], second.splits[split])


def test_seed_and_city_change_the_data() -> None:
    base = data.generate_houses("Houston_TX", seed=7)
    assert not np.array_equal(base, data.generate_houses("Houston_TX", seed=8))
    assert not np.array_equal(base, data.generate_houses("Dallas_TX", seed=7))


def test_a_city_does_not_depend_on_which_other_cities_are_generated() -> None:
    together = data.generate_cities(["Dallas_TX", "Phoenix_AZ"])["Phoenix_AZ"]
    assert np.array_equal(together.rows, data.generate_city("Phoenix_AZ").rows)


def test_split_is_disjoint_and_sized_600_300_100(notebook_cities: dict[str, data.CityData]) -> None:
    for city in notebook_cities.values():
        train, val, test = (set(city.splits[s].tolist()) for s in ("train", "val", "test"))
        assert (len(train), len(val), len(test)) == (600, 300, 100)
        assert not (train & val)
        assert not (train & test)
        assert not (val & test)
        assert train | val | test == set(range(schema.HOUSES_PER_CITY))


@settings(max_examples=60, deadline=None)
@given(n=st.integers(min_value=1, max_value=5000), seed=st.integers(min_value=0, max_value=2**32 - 1))
def test_split_never_repeats_or_loses_a_row(n: int, seed: int) -> None:
    splits = data.split_indices(n, np.random.default_rng(seed))
    joined = np.concatenate(list(splits.values()))
    assert len(joined) == n
    assert len(np.unique(joined)) == n
    assert abs(len(splits["train"]) - 0.6 * n) <= 1
    assert abs(len(splits["val"]) - 0.3 * n) <= 1


def test_csv_is_headerless_and_round_trips_through_train_loader_keeping_row_one(tmp_path: Path) -> None:
    # Given a city's training split written the notebook's way
    city = data.generate_city("SanDiego_CA")
    paths = data.write_city_csvs(city, {"train": tmp_path / "train"})
    path = paths["train"]
    assert path.name == "SanDiego_CA_train.csv"
    first_line = path.read_text().splitlines()[0]
    # Then the first line is data, not a header
    assert [float(value) for value in first_line.split(",")] == city.split_rows("train")[0].tolist()
    # When train.py loads the channel
    features, prices = train_script.load_channel(tmp_path / "train")
    # Then every row comes back, row 1 included, with identical values
    expected = city.split_rows("train")
    assert len(prices) == len(expected) == 600
    assert np.array_equal(prices, expected[:, 0])
    assert np.array_equal(features, expected[:, 1:])


def test_file_names_follow_the_bucket_layout() -> None:
    assert data.csv_filename("Chicago_IL", "val") == "Chicago_IL_val.csv"
    with pytest.raises(ValueError, match="split"):
        data.csv_filename("Chicago_IL", "validation")


def test_invalid_inputs_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        data.generate_houses("Chicago_IL", n=0)
    with pytest.raises(InvalidCityName):
        data.generate_houses("Not a city")
    with pytest.raises(ValueError, match="PRICE"):
        data.write_csv(tmp_path / "x.csv", np.zeros((3, 2)))


def test_values_the_usual_formats_would_change_are_written_exactly(tmp_path: Path) -> None:
    """The gate measures on these files: a user's lot in acres or a price with cents must read back as trained."""
    # Given rows with a lot area converted from square feet and a price with cents
    rows = data.generate_houses("Chicago_IL", 20)
    rows[:, data._COLUMN["LOT_ACRES"]] = rows[:, data._COLUMN["LOT_ACRES"]] / 3.3
    rows[:, data._COLUMN["PRICE"]] += 0.25
    # When written and read back / Then every value is the same double
    path = data.write_csv(tmp_path / "rows.csv", rows)
    np.testing.assert_array_equal(np.loadtxt(path, delimiter=",", ndmin=2), rows)


def test_synthetic_rows_keep_their_short_text(tmp_path: Path) -> None:
    rows = data.generate_houses("Chicago_IL", 20)
    first = data.write_csv(tmp_path / "rows.csv", rows).read_text().splitlines()[0].split(",")
    assert len(first[data._COLUMN["LOT_ACRES"]].split(".")[1]) == 2
    assert "." not in first[data._COLUMN["PRICE"]]
