"""Shards: balanced by rows, capped per job, every segment exactly once; the manifest decides what retrains."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from house_prices import naming, schema
from training import data
from training.inputs import Hyperparameters
from training.manifest import LocalManifestStore, Manifest, fingerprint
from training.shards import SegmentInput, plan_shards, rows_hash, synthetic_segment, write_shard
from training.train import SHARD_ARRAYS, SHARD_INDEX


def segment(city: str, rows: int) -> SegmentInput:
    values = np.arange(rows * len(schema.CSV_COLUMNS), dtype=np.float64).reshape(rows, -1)
    indices = np.arange(rows)
    return SegmentInput(data.CityData(city, values, {"train": indices, "val": indices[:0], "test": indices[:0]}), city)


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=1, max_value=5_000), min_size=1, max_size=60),
    shards=st.integers(min_value=1, max_value=8),
    cap=st.one_of(st.none(), st.integers(min_value=1, max_value=20)),
)
def test_every_segment_lands_in_exactly_one_shard_within_the_cap(
    sizes: list[int], shards: int, cap: int | None
) -> None:
    segments = [segment(f"C{index}", rows) for index, rows in enumerate(sizes)]
    planned = plan_shards(segments, shards=shards, max_per_shard=cap)
    assert sorted(s.city for shard in planned for s in shard) == sorted(s.city for s in segments)
    if cap is not None:
        assert all(len(shard) <= cap for shard in planned)
        assert len(planned) == max(min(shards, len(segments)), -(-len(segments) // cap))
    else:
        assert len(planned) == min(shards, len(segments))
    # Greedy longest-first: no shard exceeds the lightest by more than the largest segment (when uncapped)
    if cap is None:
        loads = [sum(s.rows for s in shard) for shard in planned]
        assert max(loads) - min(loads) <= max(sizes)


def test_write_shard_holds_plain_arrays_per_city_and_split(tmp_path: Path) -> None:
    # Given two synthetic cities
    shard = [synthetic_segment("Chicago_IL", 50, 1), synthetic_segment("Dallas_TX", 40, 1)]
    # When the shard is written
    write_shard(shard, tmp_path)
    # Then every split of every city loads without pickle, rows in CSV_COLUMNS order
    with np.load(tmp_path / SHARD_ARRAYS, allow_pickle=False) as arrays:
        for item in shard:
            for split in naming.SPLITS:
                np.testing.assert_array_equal(arrays[f"{item.city}.{split}"], item.data.split_rows(split))
    index = (tmp_path / SHARD_INDEX).read_text()
    assert '"Chicago_IL"' in index
    assert shard[0].data_hash in index


def test_rows_hash_ignores_row_order_but_not_values() -> None:
    rows = data.generate_houses("Chicago_IL", 30)
    assert rows_hash(rows) == rows_hash(rows[::-1])
    changed = rows.copy()
    changed[3, 0] += 1
    assert rows_hash(changed) != rows_hash(rows)


def test_manifest_retrains_only_changed_segments_and_new_hyperparameters(tmp_path: Path) -> None:
    # Given a manifest recording two segments trained with the default hyperparameters
    store = LocalManifestStore(tmp_path / "manifest.json")
    hps = Hyperparameters()
    a, b = segment("A_city", 10), segment("B_city", 10)
    manifest = Manifest()
    manifest.record([(a, "job-1"), (b, "job-1")], hps, now=datetime(2026, 1, 1, tzinfo=UTC))
    store.write(manifest)
    # When B's data changes and C is new
    b_changed = SegmentInput(b.data, "another-hash")
    c = segment("C_city", 10)
    to_train, unchanged = store.read().partition([a, b_changed, c], hps)
    # Then only B and C train; A is unchanged
    assert [s.city for s in to_train] == ["B_city", "C_city"]
    assert [s.city for s in unchanged] == ["A_city"]
    # And new hyperparameters, or --force, retrain everything
    assert len(store.read().partition([a], Hyperparameters(n_estimators=7))[0]) == 1
    assert len(store.read().partition([a], hps, force=True)[0]) == 1
    assert store.read().entries["A_city"].fingerprint == fingerprint("A_city", hps)


@pytest.mark.parametrize(
    "text", [None, "", "{}", '{"version": 99, "segments": {}}', '{"version": 1, "segments": {"A": 3}}']
)
def test_an_unreadable_manifest_means_everything_retrains(text: str | None) -> None:
    to_train, unchanged = Manifest.from_json(text).partition([segment("A", 3)], Hyperparameters())
    assert [s.city for s in to_train] == ["A"]
    assert unchanged == []


@settings(max_examples=200, deadline=None)
@given(segments=st.integers(min_value=1, max_value=20_000), workers=st.integers(min_value=1, max_value=64))
def test_a_local_run_cuts_a_few_shards_per_worker_but_never_one_per_segment(segments: int, workers: int) -> None:
    from training.local_runs import MIN_SEGMENTS_PER_SHARD, SHARDS_PER_WORKER, shard_count

    count = shard_count(segments, workers)
    # Every worker has a shard while there are segments to go round, and a free worker finds another waiting
    assert count == min(segments, max(workers, count))
    assert count <= max(workers, workers * SHARDS_PER_WORKER)
    # More shards than workers only while each keeps a worthwhile number of segments (a fork per shard)
    if count > workers:
        assert segments / count >= MIN_SEGMENTS_PER_SHARD
    if segments >= workers * SHARDS_PER_WORKER * MIN_SEGMENTS_PER_SHARD:
        assert count == workers * SHARDS_PER_WORKER
