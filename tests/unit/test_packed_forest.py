"""The packed-forest format: bit-identical to scikit-learn (property tests), and hostile files refused."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.ensemble import ExtraTreesRegressor, GradientBoostingRegressor, RandomForestRegressor

from packed_forest import PackedForest, PackedForestError, write
from packed_forest import format as packed_format
from packed_forest.pack import pack_forest
from tests.pickle_payloads import WritesMarker

# Few distinct values per feature: ties, duplicate thresholds and inputs exactly on split values.
_GRID = st.sampled_from([-2.5, -1.0, 0.0, 0.1, 0.30000001, 1.0, 1.5, 2.0, 1e6, 3.4e38])


@st.composite
def forests(draw: st.DrawFn) -> tuple[Any, np.ndarray]:
    n_features = draw(st.integers(1, 6))
    n_samples = draw(st.integers(2, 60))
    grid_or_float = st.one_of(_GRID, st.floats(-1e9, 1e9, allow_nan=False, width=64))
    x = np.array(
        draw(
            st.lists(
                st.lists(grid_or_float, min_size=n_features, max_size=n_features),
                min_size=n_samples,
                max_size=n_samples,
            )
        )
    )
    constant = draw(st.booleans())
    y = (
        np.full(n_samples, 7.25)
        if constant
        else np.array(draw(st.lists(st.floats(-1e6, 1e6), min_size=n_samples, max_size=n_samples)))
    )
    kind = draw(st.sampled_from([RandomForestRegressor, ExtraTreesRegressor]))
    model = kind(
        n_estimators=draw(st.integers(1, 8)),
        max_depth=draw(st.one_of(st.none(), st.integers(1, 12))),
        min_samples_leaf=draw(st.integers(1, 5)),
        bootstrap=draw(st.booleans()),
        random_state=draw(st.integers(0, 2**16)),
        n_jobs=1,
    ).fit(x, y)
    # Inputs: the training rows, every threshold itself and its float32 neighbours, and random values.
    thresholds = np.concatenate([tree.tree_.threshold[tree.tree_.children_left >= 0] for tree in model.estimators_])
    probes = [x]
    if thresholds.size:
        column = np.resize(thresholds, n_features * max(1, thresholds.size // n_features + 1))
        on = column.reshape(-1, n_features)
        below = np.nextafter(on.astype(np.float32), np.float32(-np.inf)).astype(np.float64)
        above = np.nextafter(on.astype(np.float32), np.float32(np.inf)).astype(np.float64)
        probes += [on, below, above]
    probes.append(
        np.array(
            draw(st.lists(st.lists(grid_or_float, min_size=n_features, max_size=n_features), min_size=1, max_size=5))
        )
    )
    return model, np.concatenate(probes)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(forests())
def test_packed_predictions_are_bit_identical_to_sklearn(case: tuple[Any, np.ndarray]) -> None:
    # Given any fitted random/extra-trees forest and inputs on, just below and just above its thresholds
    model, rows = case
    names = [f"f{i}" for i in range(model.n_features_in_)]
    packed = pack_forest(model, names)
    # When it is packed, written, read back (in memory and memory-mapped) and evaluated
    buffer = io.BytesIO()
    write(buffer, packed.arrays)
    reread = PackedForest.from_bytes(buffer.getvalue())
    expected = model.predict(rows)
    # Then every prediction equals scikit-learn's to the last bit, one row at a time and in batches
    assert np.array_equal(packed.predict(rows), expected)
    assert np.array_equal(reread.predict(rows), expected)
    assert np.array_equal(reread.predict(rows[:1]), expected[:1])
    assert np.array_equal(reread.predict(rows[:2]), expected[:2])


def test_memory_mapped_forests_predict_the_same(tmp_path: Path) -> None:
    x = np.random.default_rng(0).normal(size=(200, 6))
    model = RandomForestRegressor(n_estimators=10, min_samples_leaf=3, random_state=0, n_jobs=1).fit(x, x.sum(axis=1))
    path = tmp_path / "forest.npz"
    write(path, pack_forest(model, list("abcdef")).arrays)
    mapped = PackedForest.load(path, mmap=True)
    assert np.array_equal(mapped.predict(x), model.predict(x))
    # and the file is a standard npz that numpy opens without pickles
    with np.load(path, allow_pickle=False) as plain:
        assert sorted(plain.files) == ["meta", "nodes", "trees", "value"]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: GradientBoostingRegressor(n_estimators=2).fit(np.zeros((4, 2)), np.arange(4.0)), "cannot pack"),
        (lambda: RandomForestRegressor(n_estimators=2), "not fitted"),
        (
            lambda: RandomForestRegressor(n_estimators=2).fit(np.arange(8.0).reshape(4, 2), np.ones((4, 2))),
            "2 outputs",
        ),
        (
            lambda: RandomForestRegressor(n_estimators=3, random_state=0).fit(
                np.array([[np.nan, 1], [np.nan, 2], [1, 3], [2, 4], [3, 5], [np.nan, 6]] * 4),
                np.array([100, 100, 0, 0, 0, 100] * 4, dtype=float),
            ),
            "missing values",
        ),
        (lambda: RandomForestRegressor(n_estimators=2).fit(np.zeros((4, 3)), np.arange(4.0)), "3 features"),
    ],
    ids=["not-a-forest", "unfitted", "multi-output", "missing-values", "feature-count"],
)
def test_what_cannot_be_represented_is_refused_at_pack_time(make: Any, message: str) -> None:
    with pytest.raises(PackedForestError, match=message):
        pack_forest(make(), ["a", "b"])


# --- hostile and broken files ---------------------------------------------------------------------


def _valid_members() -> dict[str, np.ndarray]:
    x = np.random.default_rng(1).normal(size=(60, 2))
    model = RandomForestRegressor(n_estimators=3, max_depth=4, random_state=0, n_jobs=1).fit(x, x[:, 0])
    arrays = pack_forest(model, ["a", "b"]).arrays
    return {
        "meta": np.array(json.dumps(dict(arrays.meta))),
        "trees": np.array(arrays.trees),
        "nodes": np.array(arrays.nodes),
        "value": np.array(arrays.value),
    }


def _npz(members: dict[str, Any], compress: bool = False, allow_pickle: bool = False) -> bytes:
    buffer = io.BytesIO()
    (np.savez_compressed if compress else np.savez)(buffer, **members, allow_pickle=allow_pickle)
    return buffer.getvalue()


def _with(**changes: Any) -> bytes:
    members = _valid_members()
    for name, change in changes.items():
        members[name] = change(members[name]) if callable(change) else change
    return _npz(members)


def _meta(**fields: Any) -> Any:
    def change(meta: np.ndarray) -> np.ndarray:
        return np.array(json.dumps({**json.loads(str(meta[()])), **fields}))

    return change


def _nodes(field: str, index: int, value: Any) -> Any:
    def change(nodes: np.ndarray) -> np.ndarray:
        nodes = nodes.copy()
        nodes[field][index] = value
        return nodes

    return change


def test_a_valid_file_round_trips() -> None:
    forest = PackedForest.from_bytes(_npz(_valid_members()))
    assert (forest.n_trees, forest.n_features, forest.format_version) == (3, 2, 1)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not a zip", "not an .npz"),
        (b"", "not an .npz"),
        (_npz(_valid_members())[:-40], "not an .npz"),
        (_npz(_valid_members(), compress=True), "compressed"),
        (_with(meta=_meta(format="sklearn-pickle")), "meta.format"),
        (_with(meta=_meta(format_version=2)), "format_version 2 is not supported"),
        (_with(meta=_meta(format_version=True)), "format_version True"),
        (_with(meta=_meta(n_features=3)), "feature_names must list 3"),
        (_with(meta=_meta(n_trees=4)), "meta says 4 trees"),
        (_with(meta=_meta(aggregation="sum")), "aggregation"),
        (_with(meta=np.array("[" * 5000 + "]" * 5000)), "meta"),
        (_with(meta=np.array(3)), "meta must be a unicode scalar"),
        (_with(nodes=lambda n: n.astype([("t", "<f8"), ("f", "<i4"), ("l", "<i4"), ("r", "<i4")])), "nodes must be"),
        (_with(value=lambda v: v.astype(np.float32)), "value must be"),
        (_with(trees=lambda t: t.astype(np.int32)), "trees must be"),
        (_with(trees=lambda t: t[::-1].copy()), "trees must start at 0"),
        (_with(nodes=_nodes("left", 0, 0)), "a child must lie after its parent"),  # a cycle to itself
        (_with(nodes=_nodes("right", 2, 1)), "a child must lie after its parent"),  # backwards
        (_with(nodes=_nodes("left", 0, 10**6)), "a child must lie after its parent"),  # out of range
        (_with(nodes=_nodes("feature", 0, 2)), "splits on feature 2"),
        (_with(nodes=_nodes("feature", 0, -1)), "splits on feature -1"),
        (_with(nodes=_nodes("threshold", 0, np.inf)), "non-finite threshold"),
        (_with(value=lambda v: np.where(np.arange(v.size) == 1, np.nan, v)), "non-finite value"),
    ],
    ids=[
        "not-zip", "empty", "truncated", "compressed", "format", "version", "version-bool", "n-features",
        "n-trees", "aggregation", "deep-meta", "meta-type", "node-dtype", "value-dtype", "trees-dtype",
        "trees-order", "self-cycle", "backwards", "out-of-range", "feature-high", "feature-negative",
        "inf-threshold", "nan-value",
    ],
)  # fmt: skip
def test_broken_or_hostile_files_are_refused_with_the_reason(data: bytes, message: str) -> None:
    with pytest.raises(PackedForestError, match=message):
        PackedForest.from_bytes(data)


def test_a_node_with_two_parents_is_refused() -> None:
    # Given a "tree" whose node 2 is the child of both node 0 and node 1 (every link points forward)
    nodes = np.zeros(4, dtype=packed_format.NODE_DTYPE)
    nodes["left"], nodes["right"] = [1, 2, 2, 3], [2, 3, 2, 3]
    meta = packed_format.make_meta(["a"], 1, 4, {})
    # Then it is refused: a walk would still end, but it is not a tree any packer writes
    with pytest.raises(PackedForestError, match="child of two parents"):
        packed_format.validate(meta, np.array([0, 4], dtype=np.int64), nodes, np.zeros(4))


def test_extra_or_missing_members_are_refused() -> None:
    members = _valid_members()
    with pytest.raises(PackedForestError, match="a packed forest holds exactly"):
        PackedForest.from_bytes(_npz({**members, "code": np.zeros(1)}))
    del members["value"]
    with pytest.raises(PackedForestError, match="a packed forest holds exactly"):
        PackedForest.from_bytes(_npz(members))


def test_an_object_array_holding_a_pickle_is_refused_without_running_it(tmp_path: Path) -> None:
    # Given an npz whose "value" member is a pickled object array that would write a file when loaded
    marker = tmp_path / "marker"
    members: dict[str, Any] = _valid_members()
    members["value"] = np.array([WritesMarker(marker)], dtype=object)
    data = _npz(members, allow_pickle=True)
    # When it is read (from bytes and from a path) / Then it is refused and nothing ran
    with pytest.raises(PackedForestError, match="holds Python objects"):
        PackedForest.from_bytes(data)
    path = tmp_path / "forest.npz"
    path.write_bytes(data)
    with pytest.raises(PackedForestError, match="holds Python objects"):
        PackedForest.load(path, mmap=True)
    assert not marker.exists()
    # And the payload is live: numpy with allow_pickle=True would have run it
    with np.load(path, allow_pickle=True) as unsafe:
        unsafe["value"]
    assert marker.read_text() == "pickle executed"


def test_a_stored_member_with_a_lying_header_is_refused() -> None:
    data = bytearray(_npz(_valid_members()))
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
        info = archive.getinfo("value.npy")
    start = data.find(b"'shape': (", info.header_offset) + len(b"'shape': (")
    end = data.find(b",", start)
    # Claim more values than the member holds (same header length, so every offset stays put)
    data[start:end] = b"9" * (end - start)
    with pytest.raises(PackedForestError, match="header promises"):
        PackedForest.from_bytes(bytes(data))


def test_deep_chains_beyond_the_depth_limit_are_refused() -> None:
    depth = packed_format.MAX_DEPTH + 2
    count = 2 * depth + 1
    nodes = np.zeros(count, dtype=packed_format.NODE_DTYPE)
    index = np.arange(count)
    nodes["left"], nodes["right"] = index, index
    for level in range(depth):  # node 2k splits into leaf 2k+1 and the next split 2k+2
        nodes["left"][2 * level], nodes["right"][2 * level] = 2 * level + 1, 2 * level + 2
    meta = packed_format.make_meta(["a"], 1, count, {})
    with pytest.raises(PackedForestError, match="deeper than the limit"):
        packed_format.validate(meta, np.array([0, count], dtype=np.int64), nodes, np.zeros(count))
