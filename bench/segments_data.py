"""A synthetic "bring your own file" for the segments scale bench: N segments × R rows in a user's CSV layout.

Not ``training/data.py``'s per-city generator: this is what a user hands ``training.jobs --data``, a
header with their own column names (``--column`` maps them onto the schema, lot size in square feet
converted to acres), many segments interleaved in one file, segment values that are not city names
(the name rule turns ``"Metro 0001"`` into ``Metro_0001``). Each segment has its own price level,
feature weights and noise, so its model is its own. Everything is drawn column-wise with numpy and
written by pyarrow's CSV writer: a million rows take seconds, and a configuration is written once
(``ensure_file`` reuses a file whose sidecar records the same configuration).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv

from house_prices import schema

SQFT_PER_ACRE = 43560
SEGMENT_COLUMN = "region"
PRICE_COLUMN = "sale_price"
# File column per schema feature, as a user's export might name them; LOT_ACRES comes in square feet.
FEATURE_COLUMNS: Mapping[str, str] = {
    "YEAR_BUILT": "yr_built",
    "SQUARE_FEET": "living_sqft",
    "NUM_BEDROOMS": "beds",
    "NUM_BATHROOMS": "baths",
    "LOT_ACRES": "lot_sqft",
    "GARAGE_SPACES": "garage",
}
# What the CLI is told for each feature (``--column FEATURE=EXPRESSION``).
FEATURE_EXPRESSIONS: Mapping[str, str] = {
    **FEATURE_COLUMNS,
    "LOT_ACRES": f"{FEATURE_COLUMNS['LOT_ACRES']}/{SQFT_PER_ACRE}",
}
FILE_COLUMNS: tuple[str, ...] = (SEGMENT_COLUMN, PRICE_COLUMN, *FEATURE_COLUMNS.values())
_FEATURES = {feature.name: feature for feature in schema.FEATURES}
# Added to the data seed for the houses the bench prices: rows no model was trained on.
QUERY_SEED_OFFSET = 1_000_003


@dataclass(frozen=True)
class FileConfig:
    segments: int
    rows: int  # per segment
    seed: int = 42

    @property
    def name(self) -> str:
        return f"segments-{self.segments}x{self.rows}-seed{self.seed}"


def segment_value(index: int) -> str:
    """A segment as a user's file names it (a space: not a valid city name as it stands)."""
    return f"Metro {index + 1:04d}"


def mapping_args() -> list[str]:
    """``training.jobs`` flags that map this file onto the schema."""
    args = ["--segment-column", SEGMENT_COLUMN, "--price-column", PRICE_COLUMN]
    for feature, expression in FEATURE_EXPRESSIONS.items():
        args += ["--column", f"{feature}={expression}"]
    return args


def draw_features(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """``n`` houses in the file's units, every value inside the schema's ranges once mapped."""
    lot_sqft = np.clip(np.round(rng.lognormal(np.log(8_000), 0.6, n)), 1_000, 400_000)
    return {
        "yr_built": rng.integers(1900, schema.MAX_YEAR + 1, n).astype(np.float64),
        "living_sqft": np.clip(np.round(rng.normal(2_000, 600, n)), 400, 9_000),
        "beds": rng.integers(1, 7, n).astype(np.float64),
        "baths": rng.integers(2, 9, n) / 2,
        "lot_sqft": lot_sqft,
        "garage": rng.integers(0, 4, n).astype(np.float64),
    }


def _prices(rng: np.random.Generator, features: Mapping[str, np.ndarray], segment: np.ndarray) -> np.ndarray:
    """A per-segment linear price: its own level, weights and noise (so every segment's model differs)."""
    count = int(segment.max()) + 1
    level = rng.uniform(0.5, 3.0, count)[segment]
    per_sqft = rng.uniform(90, 220, count)[segment]
    per_bed = rng.uniform(0, 20_000, count)[segment]
    per_bath = rng.uniform(5_000, 25_000, count)[segment]
    per_acre = rng.uniform(5_000, 60_000, count)[segment]
    per_garage = rng.uniform(0, 15_000, count)[segment]
    per_year = rng.uniform(200, 1_500, count)[segment]
    noise = rng.uniform(0.03, 0.15, count)[segment]
    base = (
        per_sqft * features["living_sqft"]
        + per_bed * features["beds"]
        + per_bath * features["baths"]
        + per_acre * features["lot_sqft"] / SQFT_PER_ACRE
        + per_garage * features["garage"]
        + per_year * (features["yr_built"] - 1900)
    )
    return np.maximum(np.round(level * base * (1 + noise * rng.standard_normal(len(base)))), 10_000)


def generate_table(config: FileConfig) -> pa.Table:
    """Every segment's rows, shuffled together as an export would interleave them."""
    rng = np.random.default_rng(config.seed)
    n = config.segments * config.rows
    segment = rng.permutation(np.repeat(np.arange(config.segments), config.rows))
    features = draw_features(rng, n)
    prices = _prices(rng, features, segment)
    values = np.array([segment_value(index) for index in range(config.segments)], dtype=object)
    columns: dict[str, pa.Array] = {
        SEGMENT_COLUMN: pa.DictionaryArray.from_arrays(pa.array(segment, pa.int32()), pa.array(values, pa.string())),
        PRICE_COLUMN: pa.array(prices.astype(np.int64)),
    }
    for column, data in features.items():
        # Whole numbers as integers (a user's export has no "3.0 beds"); baths keep their halves.
        columns[column] = pa.array(data if column == "baths" else data.astype(np.int64))
    return pa.table(columns).select(list(FILE_COLUMNS))


def write_csv(table: pa.Table, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    pa_csv.write_csv(
        table.cast(pa.schema([(f.name, pa.string() if f.name == SEGMENT_COLUMN else f.type) for f in table.schema])),
        partial,
        write_options=pa_csv.WriteOptions(quoting_style="needed"),
    )
    partial.replace(path)
    return path


def ensure_file(config: FileConfig, directory: Path) -> Path:
    """The configuration's CSV under ``directory``, generated only when no file of that configuration is there."""
    path = directory / f"{config.name}.csv"
    sidecar = path.with_suffix(".json")
    wanted = {"config": asdict(config), "columns": list(FILE_COLUMNS)}
    if path.is_file() and sidecar.is_file() and json.loads(sidecar.read_text()) == wanted:
        return path
    write_csv(generate_table(config), path)
    sidecar.write_text(json.dumps(wanted) + "\n")
    return path


def query_houses(config: FileConfig) -> dict[str, dict[str, float]]:
    """One house per segment value for the first predictions, in the API's JSON (schema names and units)."""
    rng = np.random.default_rng(config.seed + QUERY_SEED_OFFSET)
    drawn = draw_features(rng, config.segments)
    houses = {}
    for index in range(config.segments):
        house: dict[str, float] = {}
        for feature, column in FEATURE_COLUMNS.items():
            value = float(drawn[column][index])
            if feature == "LOT_ACRES":
                house[feature] = round(value / SQFT_PER_ACRE, 4)
            else:
                house[feature] = int(value) if _FEATURES[feature].integer else value
        houses[segment_value(index)] = house
    return houses
