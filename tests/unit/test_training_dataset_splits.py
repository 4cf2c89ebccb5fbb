"""Stable splits and data hashes: a row's split depends on that row alone; a segment's hash on its rows alone."""

from __future__ import annotations

import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from house_prices import schema
from tests.dataset_files import SCHEMA_HEADER, house_rows, write_csv
from training.data import SPLIT_FRACTIONS
from training.dataset import Dataset, DataSpec, load_dataset
from training.dataset import splits as split_rules


def load(path: Path, **changes: object) -> Dataset:
    fields: dict = {"source": str(path), "segment_column": "segment", "price_column": "PRICE", "min_rows": 1}
    fields.update(changes)
    return load_dataset(DataSpec(**fields))


def split_by_row(dataset: Dataset) -> dict[tuple[str, tuple[float, ...]], str]:
    """(segment, row values) → split, over every trained segment."""
    out = {}
    for segment in dataset.segments:
        for name, indices in segment.data.splits.items():
            for row in segment.data.rows[indices].tolist():
                out[(segment.source_value, tuple(row))] = name
    return out


# Houses as the API takes them, drawn from a small grid so duplicates happen too.
houses = st.tuples(
    st.sampled_from(["Austin", "Boston"]),
    st.integers(50_000, 900_000),
    st.integers(1950, 2019),
    st.integers(500, 5_000),
    st.integers(1, 6),
    st.sampled_from([1.0, 1.5, 2.0, 2.5]),
    st.sampled_from([0.25, 0.5, 1.0]),
    st.integers(0, 3),
)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(old=st.lists(houses, min_size=1, max_size=60), new=st.lists(houses, max_size=60), seed=st.integers(0, 99))
def test_adding_rows_never_moves_existing_rows(old: list[tuple], new: list[tuple], seed: int) -> None:
    # Given a file (with 40 fixed rows per segment, so both always train), and the same file with rows added
    # and everything shuffled
    old = old + [tuple(row) for row in house_rows("Austin", 40, seed=1000) + house_rows("Boston", 40, seed=1000)]
    grown = old + new
    random.Random(seed).shuffle(grown)
    with tempfile.TemporaryDirectory() as directory:
        before = load(write_csv(Path(directory) / "before.csv", SCHEMA_HEADER, old))
        after = load(write_csv(Path(directory) / "after.csv", SCHEMA_HEADER, grown))
    # When both are split / Then every row of the first keeps its split in the second
    after_splits = split_by_row(after)
    before_splits = split_by_row(before)
    assert len(before_splits) == len(set(old))  # every row of the first file is checked
    for key, split in before_splits.items():
        assert after_splits[key] == split


@settings(max_examples=20, deadline=None)
@given(old=st.lists(st.integers(0, 10**6), min_size=1, max_size=50, unique=True), seed=st.integers(0, 99))
def test_with_an_id_column_a_rows_split_follows_its_id_only(old: list[int], seed: int) -> None:
    # Given houses keyed by id (plus 40 fixed ones, so the segment always has every split)
    base = house_rows("Austin", len(old) + 20, seed=seed)
    anchors = [[2 * 10**7 + k, *row] for k, row in enumerate(house_rows("Austin", 40, seed=1000))]
    first = [[i, *row] for i, row in zip(old, base, strict=False)]
    # When the same ids come back with other prices, among new ids
    changed = [[i, row[0], int(row[1]) + 1000, *row[2:]] for i, row in zip(old, base, strict=False)]
    extra = [[10**7 + k, *row] for k, row in enumerate(base[len(old) :])]
    header = ["id", *SCHEMA_HEADER]
    with tempfile.TemporaryDirectory() as directory:
        before = load(write_csv(Path(directory) / "a.csv", header, anchors + first), id_column="id")
        after = load(write_csv(Path(directory) / "b.csv", header, changed + extra + anchors), id_column="id")

    def by_id(dataset: Dataset, rows: list[list[Any]]) -> dict[int, str]:
        split_of_values = split_by_row(dataset)
        return {int(r[0]): split_of_values[("Austin", tuple(float(v) for v in r[2:]))] for r in rows}

    # Then every id is in the split it was in
    assert by_id(after, changed) == by_id(before, first)


def test_split_shares_follow_the_fractions() -> None:
    # Given 30,000 distinct keys / When split
    keys = [f"house-{i}".encode() for i in range(30_000)]
    codes = split_rules.split_codes(
        split_rules.key_hashes([split_rules.segment_prefix("Austin")], np.zeros(len(keys), np.int64), keys)
    )
    shares = np.bincount(codes, minlength=3) / len(keys)
    # Then 60 / 30 / 10 %, within sampling noise
    assert abs(shares[0] - SPLIT_FRACTIONS["train"]) < 0.015
    assert abs(shares[1] - SPLIT_FRACTIONS["val"]) < 0.015
    assert abs(shares[2] - 0.1) < 0.015


@given(st.binary(max_size=64), st.text(max_size=20))
def test_one_keys_split_is_the_vectorised_split(key: bytes, segment: str) -> None:
    # Given any key / When split alone and in a batch / Then the same split
    hashes = split_rules.key_hashes([b"other\x00", split_rules.segment_prefix(segment)], np.array([1]), [key])
    assert split_rules.split_of(segment, key) == split_rules.SPLITS[int(split_rules.split_codes(hashes)[0])]


def test_known_keys_land_where_they_always_have() -> None:
    # Pinned: changing the key encoding or the hash would silently move every user's rows between splits.
    # Given fixed keys / When split / Then the pinned splits
    assert [split_rules.split_of("Austin", f"house-{i}".encode()) for i in range(6)] == [
        "val",
        "val",
        "train",
        "train",
        "test",
        "train",
    ]


def test_data_hash_and_rows_do_not_depend_on_file_order(tmp_path: Path) -> None:
    # Given the same houses in two orders
    rows = house_rows("Austin", 80)
    shuffled = list(rows)
    random.Random(7).shuffle(shuffled)
    a = load(write_csv(tmp_path / "a.csv", SCHEMA_HEADER, rows)).segments[0]
    b = load(write_csv(tmp_path / "b.csv", SCHEMA_HEADER, shuffled)).segments[0]
    # Then the hash, the rows (in canonical order) and the splits are identical
    assert a.data_hash == b.data_hash
    assert np.array_equal(a.data.rows, b.data.rows)
    assert all(np.array_equal(a.data.splits[k], b.data.splits[k]) for k in split_rules.SPLITS)


def test_data_hash_changes_with_any_row(tmp_path: Path) -> None:
    # Given one dollar changed, one row removed or one added / When hashed / Then a different hash
    rows = house_rows("Austin", 80)
    base = load(write_csv(tmp_path / "a.csv", SCHEMA_HEADER, rows)).segments[0].data_hash
    changed = [list(r) for r in rows]
    changed[10][2] = int(changed[10][2]) + 1  # one PRICE, one dollar
    assert load(write_csv(tmp_path / "b.csv", SCHEMA_HEADER, changed)).segments[0].data_hash != base
    assert load(write_csv(tmp_path / "c.csv", SCHEMA_HEADER, rows[:-1])).segments[0].data_hash != base
    assert load(write_csv(tmp_path / "d.csv", SCHEMA_HEADER, [*rows, rows[0]])).segments[0].data_hash != base


def test_segment_data_is_what_training_expects(tmp_path: Path) -> None:
    # Given 100 houses / When loaded / Then CityData as the synthetic cities have it
    dataset = load(write_csv(tmp_path / "a.csv", SCHEMA_HEADER, house_rows("Austin", 100)), min_rows=30)
    data = dataset.segments[0].data
    assert data.rows.dtype == np.float64
    assert data.rows.shape == (100, len(schema.CSV_COLUMNS))
    assert data.rows.flags.c_contiguous
    indices = np.concatenate([data.splits[k] for k in split_rules.SPLITS])
    # sorted within each split, disjoint, covering every row
    assert all(np.array_equal(np.sort(data.splits[k]), data.splits[k]) for k in split_rules.SPLITS)
    assert sorted(indices.tolist()) == list(range(100))
    assert {k: len(v) for k, v in data.splits.items()} == dataset.report.segments[0].split_rows
    assert dataset.report.segments[0].data_hash == dataset.segments[0].data_hash
    assert len(dataset.segments[0].data_hash) == 64
