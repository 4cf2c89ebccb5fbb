"""Synthetic houses with the notebook's distributions and price formula, split without leaks.

The notebook drew one house at a time with ``random``/``numpy`` scalars; this draws whole columns with a
seeded ``numpy.random.Generator`` (same distributions, same formula, reproducible per city).
Columns follow ``schema.CSV_COLUMNS`` (``PRICE`` first); files are headerless CSVs named as the notebook
named them (``{city}_{split}.csv``, the basename of ``KeyLayout.prep_key``).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from house_prices import naming, schema

DEFAULT_SEED = 42
# Train / validation / test shares of the notebook (60 / 30 / 10 %); test takes the remainder.
SPLIT_FRACTIONS: Mapping[str, float] = {"train": 0.6, "val": 0.3}

_COLUMN = {name: index for index, name in enumerate(schema.CSV_COLUMNS)}
_FEATURE = {feature.name: feature for feature in schema.FEATURES}
# Integer columns are written without a decimal point; the rest keep what the generator rounded to.
# A column whose values these formats would change (a user's lot area in acres, a price with cents) is
# written exactly instead: the gate measures on these files and must see the values the model saw.
_EXACT_FORMAT = "%.17g"
_CSV_FORMATS = {
    "PRICE": "%d",
    "YEAR_BUILT": "%d",
    "SQUARE_FEET": "%d",
    "NUM_BEDROOMS": "%d",
    "NUM_BATHROOMS": "%.1f",
    "LOT_ACRES": "%.2f",
    "GARAGE_SPACES": "%d",
}


@dataclass(frozen=True)
class CityData:
    """One city's houses (``rows`` in ``CSV_COLUMNS`` order) and its split (row indices per split)."""

    city: str
    rows: np.ndarray
    splits: Mapping[str, np.ndarray]

    def split_rows(self, split: str) -> np.ndarray:
        return self.rows[self.splits[split]]


def city_rng(city: str, seed: int = DEFAULT_SEED) -> np.random.Generator:
    """A generator unique to (seed, city) and independent of which other cities are generated."""
    return np.random.default_rng([seed, zlib.crc32(naming.validate_city(city).encode())])


def price_of(
    year_built: np.ndarray,
    square_feet: np.ndarray,
    num_bedrooms: np.ndarray,
    num_bathrooms: np.ndarray,
    lot_acres: np.ndarray,
    garage_spaces: np.ndarray,
) -> np.ndarray:
    """The notebook's price formula, evaluated in the notebook's order so float rounding matches it exactly.

    ``int(SQUARE_FEET*150) + 10000*NUM_BEDROOMS + 15000*NUM_BATHROOMS + 15000*LOT_ACRES
    + 15000*GARAGE_SPACES - 5000*(MAX_YEAR - YEAR_BUILT)``, truncated to an integer.
    """
    total = (np.trunc(square_feet * 150) + 10000 * num_bedrooms).astype(np.float64)
    total = total + 15000 * num_bathrooms
    total = total + 15000 * lot_acres
    total = total + 15000 * garage_spaces
    total = total - 5000 * (schema.MAX_YEAR - year_built)
    return np.trunc(total)


def _within_schema(name: str, values: np.ndarray) -> np.ndarray:
    feature = _FEATURE[name]
    return (values >= feature.minimum) & (values <= feature.maximum)


def _draw(name: str, rng: np.random.Generator, size: int, sampler: Callable[[int], np.ndarray]) -> np.ndarray:
    """Draw a column, redrawing the (about 1 in 20,000) tail values the API would reject.

    A 4-sigma square footage below 100 or a negative lot would make a training row that is not a
    valid request; redrawing only those keeps the distribution otherwise untouched.
    """
    values = sampler(size)
    bad = ~_within_schema(name, values)
    while bad.any():
        values[bad] = sampler(int(bad.sum()))
        bad = ~_within_schema(name, values)
    return values


def generate_houses(city: str, n: int = schema.HOUSES_PER_CITY, seed: int = DEFAULT_SEED) -> np.ndarray:
    """``n`` houses for ``city`` as a float64 array of shape (n, len(CSV_COLUMNS))."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    rng = city_rng(city, seed)
    square_feet = _draw("SQUARE_FEET", rng, n, lambda k: np.trunc(rng.normal(3000, 750, k)))
    num_bedrooms = rng.integers(2, 7, n).astype(np.float64)
    num_bathrooms = rng.integers(2, 7, n) / 2
    lot_acres = _draw("LOT_ACRES", rng, n, lambda k: np.round(rng.normal(1.0, 0.25, k), 2))
    garage_spaces = rng.integers(0, 4, n).astype(np.float64)
    year_built = _draw("YEAR_BUILT", rng, n, lambda k: np.minimum(schema.MAX_YEAR, np.trunc(rng.normal(1995, 10, k))))
    columns = {
        "YEAR_BUILT": year_built,
        "SQUARE_FEET": square_feet,
        "NUM_BEDROOMS": num_bedrooms,
        "NUM_BATHROOMS": num_bathrooms,
        "LOT_ACRES": lot_acres,
        "GARAGE_SPACES": garage_spaces,
    }
    columns["PRICE"] = price_of(**{name.lower(): values for name, values in columns.items()})
    return np.column_stack([columns[name] for name in schema.CSV_COLUMNS])


def split_indices(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Disjoint train/val/test row indices covering 0..n-1 (60/30/10), from one seeded permutation.

    The notebook's second ``train_test_split`` assigned ``X_test`` twice, leaving test rows inside
    validation; one permutation cut in three pieces cannot do that.
    """
    order = rng.permutation(n)
    n_train = round(n * SPLIT_FRACTIONS["train"])
    n_val = round(n * SPLIT_FRACTIONS["val"])
    return {
        "train": np.sort(order[:n_train]),
        "val": np.sort(order[n_train : n_train + n_val]),
        "test": np.sort(order[n_train + n_val :]),
    }


def generate_city(city: str, n: int = schema.HOUSES_PER_CITY, seed: int = DEFAULT_SEED) -> CityData:
    rows = generate_houses(city, n, seed)
    # A separate stream for the split, so changing the split never changes the houses.
    split_rng = np.random.default_rng([seed, zlib.crc32(city.encode()), 1])
    return CityData(city=city, rows=rows, splits=split_indices(n, split_rng))


def generate_cities(
    cities: Iterable[str], n: int = schema.HOUSES_PER_CITY, seed: int = DEFAULT_SEED
) -> dict[str, CityData]:
    return {city: generate_city(city, n, seed) for city in cities}


def csv_filename(city: str, split: str) -> str:
    """The notebook's file name, taken from the bucket layout so the two never disagree."""
    return PurePosixPath(naming.KeyLayout().prep_key(city, split)).name


def write_csv(path: Path, rows: np.ndarray) -> Path:
    """Write rows (``CSV_COLUMNS`` order) as a headerless CSV."""
    if rows.ndim != 2 or rows.shape[1] != len(schema.CSV_COLUMNS):
        raise ValueError(f"rows must have {len(schema.CSV_COLUMNS)} columns {schema.CSV_COLUMNS}, got {rows.shape}")
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savetxt(
        path, rows, delimiter=",", fmt=[_column_format(name, rows[:, i]) for i, name in enumerate(schema.CSV_COLUMNS)]
    )
    return path


def _column_format(name: str, values: np.ndarray) -> str:
    """The column's usual format when it writes every value exactly, else a format that reads back exactly.

    A value equal to ``round(v, k)`` is the nearest double to a k-decimal number, which ``%.kf`` prints.
    """
    usual = _CSV_FORMATS[name]
    decimals = 0 if usual == "%d" else int(usual[2:-1])
    written = np.round(values, decimals)

    return usual if np.array_equal(written, values) else _EXACT_FORMAT


def write_city_csvs(data: CityData, split_dirs: Mapping[str, Path]) -> dict[str, Path]:
    """Write each split named in ``split_dirs`` to ``{dir}/{city}_{split}.csv``."""
    return {
        split: write_csv(Path(directory) / csv_filename(data.city, split), data.split_rows(split))
        for split, directory in split_dirs.items()
    }


def column(rows: np.ndarray, name: str) -> np.ndarray:
    return rows[:, _COLUMN[name]]
