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
from tests.packed_forest_v1 import npz as _npz
from tests.packed_forest_v1 import v1_members
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
    # When it is packed, written, read back and evaluated — and also written as a format version 1 file,
    # which the reader renumbers into the version 2 layout
    buffer = io.BytesIO()
    write(buffer, packed.arrays)
    reread = PackedForest.from_bytes(buffer.getvalue())
    legacy = PackedForest.from_bytes(_npz(v1_members(model, names)))
    expected = model.predict(rows)
    # Then every prediction equals scikit-learn's to the last bit, one row at a time and in batches
    assert (reread.format_version, legacy.format_version) == (2, 1)
    for forest in (packed, reread, legacy):
        assert np.array_equal(forest.predict(rows), expected)
        assert np.array_equal(forest.predict(rows[:1]), expected[:1])
        assert np.array_equal(forest.predict(rows[:2]), expected[:2])
        # and the serving hot path's one-row walk (container.fastpath) gives the same bits
        for row, want in zip(rows, expected, strict=True):
            one = forest.predict_one(np.ascontiguousarray(row, dtype=np.float32))
            assert np.float64(one).tobytes() == np.float64(want).tobytes()


def test_memory_mapped_forests_predict_the_same(tmp_path: Path) -> None:
    x = np.random.default_rng(0).normal(size=(200, 6))
    model = RandomForestRegressor(n_estimators=10, min_samples_leaf=3, random_state=0, n_jobs=1).fit(x, x.sum(axis=1))
    path = tmp_path / "forest.npz"
    write(path, pack_forest(model, list("abcdef")).arrays)
    mapped = PackedForest.load(path, mmap=True)
    assert np.array_equal(mapped.predict(x), model.predict(x))
    # and the file is a standard npz that numpy opens without pickles
    with np.load(path, allow_pickle=False) as plain:
        assert sorted(plain.files) == ["feature", "first_child", "meta", "threshold", "trees", "value"]


def test_rows_that_overflow_float32_are_refused_as_non_finite() -> None:
    # Given a forest whose leaves hold float32 max as their threshold
    x = np.random.default_rng(2).normal(size=(50, 2))
    packed = pack_forest(RandomForestRegressor(n_estimators=2, random_state=0).fit(x, x[:, 0]), ["a", "b"])
    # When a row holds a number beyond float32 (it would compare above every leaf's threshold)
    # Then it is refused, not walked out of its tree
    with pytest.raises(PackedForestError, match="finite"), np.errstate(over="ignore"):
        packed.predict(np.array([[1e39, 0.0]]))


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

V2_MEMBER_FILES = ["feature.npy", "first_child.npy", "meta.npy", "threshold.npy", "trees.npy", "value.npy"]


def _model() -> RandomForestRegressor:
    x = np.random.default_rng(1).normal(size=(60, 2))
    return RandomForestRegressor(n_estimators=3, max_depth=4, random_state=0, n_jobs=1).fit(x, x[:, 0])


def _valid_members() -> dict[str, np.ndarray]:
    arrays = pack_forest(_model(), ["a", "b"]).arrays
    return {
        "meta": np.array(json.dumps(dict(arrays.meta))),
        "trees": np.array(arrays.trees),
        "feature": np.array(arrays.feature),
        "threshold": np.array(arrays.threshold),
        "first_child": np.array(arrays.first_child),
        "value": np.array(arrays.value),
    }


def _with(members: dict[str, np.ndarray], **changes: Any) -> bytes:
    members = dict(members)
    for name, change in changes.items():
        members[name] = change(members) if callable(change) else change
    return _npz(members)


def _meta(**fields: Any) -> Any:
    def change(members: dict[str, np.ndarray]) -> np.ndarray:
        return np.array(json.dumps({**json.loads(str(members["meta"][()])), **fields}))

    return change


def _set(name: str, node: Any, value: Any) -> Any:
    """Set ``members[name][node(members)] = value(members)``; node and value may read the valid members."""

    def change(members: dict[str, np.ndarray]) -> np.ndarray:
        array = members[name].copy()
        array[node(members) if callable(node) else node] = value(members) if callable(value) else value
        return array

    return change


def _cast(name: str, dtype: Any) -> Any:
    return lambda members: members[name].astype(dtype)


def _leaf(members: dict[str, np.ndarray]) -> int:
    return int(np.flatnonzero(members["first_child"] == np.arange(members["first_child"].size))[0])


def _split(members: dict[str, np.ndarray], which: int = 0) -> int:
    return int(np.flatnonzero(members["first_child"] != np.arange(members["first_child"].size))[which])


def _last_split_of_first_tree(members: dict[str, np.ndarray]) -> int:
    first_tree = np.arange(int(members["trees"][1]))
    return int(first_tree[members["first_child"][first_tree] != first_tree][-1])


V2 = _valid_members()
F32_MAX = np.finfo(np.float32).max


def test_a_valid_file_round_trips() -> None:
    forest = PackedForest.from_bytes(_npz(V2))
    assert (forest.n_trees, forest.n_features, forest.format_version) == (3, 2, 2)


def test_packing_lays_siblings_side_by_side_breadth_first() -> None:
    # Given a packed forest (format version 2)
    arrays = pack_forest(_model(), ["a", "b"]).arrays
    index = np.arange(arrays.n_nodes)
    split = arrays.first_child != index
    # Then leaves point at themselves with float32 max and feature 0, and splits' children come in order
    assert (arrays.threshold[~split] == F32_MAX).all()
    assert (arrays.feature[~split] == 0).all()
    for start, end in zip(arrays.trees[:-1], arrays.trees[1:], strict=True):
        in_tree = split[start:end]
        # breadth-first: each tree's children are exactly the nodes after its root, in parents' order
        assert np.array_equal(arrays.first_child[start:end][in_tree], np.arange(start + 1, end, 2))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not a zip", "not an .npz"),
        (b"", "not an .npz"),
        (_npz(V2)[:-40], "not an .npz"),
        (_npz(V2, compress=True), "compressed"),
        (_with(V2, meta=_meta(format="sklearn-pickle")), "meta.format"),
        (_with(V2, meta=_meta(format_version=3)), "format_version 3 is not supported"),
        (_with(V2, meta=_meta(format_version=True)), "format_version True"),
        (_with(V2, meta=_meta(format_version=1)), "a format_version 1 packed forest holds exactly"),
        (_with(V2, meta=_meta(n_features=3)), "feature_names must list 3"),
        (_with(V2, meta=_meta(n_trees=4)), "meta says 4 trees"),
        (_with(V2, meta=_meta(n_nodes=5)), "5 nodes"),
        (_with(V2, meta=_meta(aggregation="sum")), "aggregation"),
        (_with(V2, meta=np.array("[" * 5000 + "]" * 5000)), "meta"),
        (_with(V2, meta=np.array(3)), "meta must be a unicode scalar"),
        (_with(V2, feature=_cast("feature", np.int64)), "feature must be"),
        (_with(V2, threshold=_cast("threshold", np.float64)), "threshold must be"),
        (_with(V2, first_child=_cast("first_child", np.int64)), "first_child must be"),
        (_with(V2, first_child=_cast("first_child", ">i4")), "first_child must be"),
        (_with(V2, value=_cast("value", np.float32)), "value must be"),
        (_with(V2, threshold=lambda m: m["threshold"][:-1]), "threshold must be"),
        (_with(V2, feature=lambda m: m["feature"].reshape(1, -1)), "feature must be"),
        (_with(V2, trees=_cast("trees", np.int32)), "trees must be"),
        (_with(V2, trees=lambda m: m["trees"][::-1].copy()), "trees must start at 0"),
        (_with(V2, first_child=_set("first_child", lambda m: _split(m, 1), 0)), "must lie after"),  # backwards
        (_with(V2, first_child=_set("first_child", _split, 10**6)), "must lie after"),  # out of range
        (_with(V2, first_child=_set("first_child", _split, -1)), "must lie after"),  # negative
        (  # the right child (first_child + 1) would be the next tree's root
            _with(V2, first_child=_set("first_child", _last_split_of_first_tree, lambda m: int(m["trees"][1]) - 1)),
            "must lie after",
        ),
        (_with(V2, first_child=_set("first_child", 0, 0)), "leaf 0 has threshold"),  # a split made a self-loop
        (_with(V2, threshold=_set("threshold", _leaf, 0.0)), "a leaf's are float32 max and 0"),
        (_with(V2, feature=_set("feature", _leaf, 1)), "a leaf's are float32 max and 0"),
        (_with(V2, feature=_set("feature", _split, 2)), "splits on feature 2"),
        (_with(V2, feature=_set("feature", _split, -1)), "splits on feature -1"),
        (_with(V2, threshold=_set("threshold", _split, np.inf)), "splits at inf"),
        (_with(V2, threshold=_set("threshold", _split, np.nan)), "splits at nan"),
        (_with(V2, threshold=_set("threshold", _split, -np.inf)), "splits at -inf"),
        (_with(V2, threshold=_set("threshold", _split, F32_MAX)), "below float32 max"),
        (_with(V2, value=lambda m: np.where(np.arange(m["value"].size) == 1, np.nan, m["value"])), "non-finite value"),
    ],
    ids=[
        "not-zip", "empty", "truncated", "compressed", "format", "version", "version-bool", "version-members",
        "n-features", "n-trees", "n-nodes", "aggregation", "deep-meta", "meta-type", "feature-dtype",
        "threshold-dtype", "first-child-dtype", "first-child-big-endian", "value-dtype", "threshold-shape",
        "feature-2d", "trees-dtype", "trees-order", "backwards", "out-of-range", "negative-child",
        "right-child-outside-tree", "split-self-loop", "leaf-threshold", "leaf-feature", "feature-high",
        "feature-negative", "inf-threshold", "nan-threshold", "minus-inf-threshold", "split-at-leaf-threshold",
        "nan-value",
    ],
)  # fmt: skip
def test_broken_or_hostile_files_are_refused_with_the_reason(data: bytes, message: str) -> None:
    with pytest.raises(PackedForestError, match=message):
        PackedForest.from_bytes(data)


def _tree(first_child: list[int]) -> tuple[dict[str, Any], list[np.ndarray]]:
    """One tree given by first_child; leaves get float32 max, splits 0.5, feature 0."""
    child = np.array(first_child, dtype=np.int32)
    leaf = child == np.arange(child.size)
    arrays: list[np.ndarray] = [
        np.array([0, child.size], dtype=np.int64),
        np.zeros(child.size, dtype=np.int32),
        np.where(leaf, F32_MAX, np.float32(0.5)).astype(np.float32),
        child,
        np.zeros(child.size),
    ]
    return packed_format.make_meta(["a"], 1, child.size, {}), arrays


def test_a_node_with_two_parents_is_refused() -> None:
    # Given a "tree" whose node 2 is the right child of node 0 and the left child of node 1 (links forward)
    meta, arrays = _tree([1, 2, 2, 3])
    # Then it is refused: a walk would still end, but it is not a tree any packer writes
    with pytest.raises(PackedForestError, match="node 2 is the child of two parents"):
        packed_format.validate(meta, *arrays)


def test_a_node_that_is_no_nodes_child_is_refused() -> None:
    # Given a tree whose root splits into nodes 1 and 2, and a node 3 that nothing points at
    meta, arrays = _tree([1, 1, 2, 3])
    # Then it is refused: every node but a root has exactly one parent
    with pytest.raises(PackedForestError, match="node 3 is no node's child"):
        packed_format.validate(meta, *arrays)


def test_deep_chains_beyond_the_depth_limit_are_refused() -> None:
    depth = packed_format.MAX_DEPTH + 2
    count = 2 * depth + 1
    # node 2k splits into leaf 2k+1 and the next split 2k+2
    first_child = [index + 1 if index % 2 == 0 and index < count - 1 else index for index in range(count)]
    meta, arrays = _tree(first_child)
    with pytest.raises(PackedForestError, match="deeper than the limit"):
        packed_format.validate(meta, *arrays)


def test_extra_or_missing_members_are_refused() -> None:
    with pytest.raises(PackedForestError, match="a packed forest holds exactly"):
        PackedForest.from_bytes(_npz({**V2, "code": np.zeros(1)}))
    with pytest.raises(PackedForestError, match="a packed forest holds exactly"):
        PackedForest.from_bytes(_npz({name: array for name, array in V2.items() if name != "value"}))
    # nor may a file mix the two versions' members
    with pytest.raises(PackedForestError, match="a packed forest holds exactly"):
        PackedForest.from_bytes(_npz({**V2, "nodes": V1["nodes"]}))


def test_an_object_array_holding_a_pickle_is_refused_without_running_it(tmp_path: Path) -> None:
    # Given an npz whose "value" member is a pickled object array that would write a file when loaded
    marker = tmp_path / "marker"
    members: dict[str, Any] = dict(V2)
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
    data = bytearray(_npz(V2))
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
        info = archive.getinfo("value.npy")
    start = data.find(b"'shape': (", info.header_offset) + len(b"'shape': (")
    end = data.find(b",", start)
    # Claim more values than the member holds (same header length, so every offset stays put)
    data[start:end] = b"9" * (end - start)
    with pytest.raises(PackedForestError, match="header promises"):
        PackedForest.from_bytes(bytes(data))


# --- format version 1 files: still read, checked as before, renumbered into version 2 ----------------

V1 = v1_members(_model(), ["a", "b"])


def _v1_nodes(field: str, index: int, value: Any) -> Any:
    def change(members: dict[str, np.ndarray]) -> np.ndarray:
        nodes = members["nodes"].copy()
        nodes[field][index] = value
        return nodes

    return change


def test_a_version_1_file_serves_identically_and_can_be_rewritten_as_version_2(tmp_path: Path) -> None:
    # Given a format version 1 file (one 16-byte record per node, scikit-learn's node order)
    model = _model()
    rows = np.random.default_rng(3).normal(size=(40, 2))
    path = tmp_path / "forest.npz"
    path.write_bytes(_npz(V1))
    # When it is read (memory-mapped, as model_fn does) and written again
    legacy = PackedForest.load(path, mmap=True)
    buffer = io.BytesIO()
    write(buffer, legacy.arrays)
    upgraded = PackedForest.from_bytes(buffer.getvalue())
    # Then both predict exactly what scikit-learn does, and the rewrite is a version 2 file
    assert (legacy.format_version, upgraded.format_version) == (1, 2)
    assert legacy.n_nodes == upgraded.n_nodes == int(json.loads(str(V1["meta"][()]))["n_nodes"])
    for forest in (legacy, upgraded):
        assert np.array_equal(forest.predict(rows), model.predict(rows))
        assert np.array_equal(forest.predict(rows[:1]), model.predict(rows[:1]))
    with np.load(io.BytesIO(buffer.getvalue()), allow_pickle=False) as plain:
        assert sorted(f"{name}.npy" for name in plain.files) == V2_MEMBER_FILES
        assert json.loads(str(plain["meta"][()]))["format_version"] == 2


def test_a_version_1_node_no_root_reaches_is_dropped_when_renumbered() -> None:
    # Given a version 1 tree (valid under version 1's rules) with a leaf nothing points at
    nodes = np.zeros(4, dtype=packed_format.V1_NODE_DTYPE)
    nodes["left"], nodes["right"] = [1, 1, 2, 3], [2, 1, 2, 3]
    nodes["threshold"][0] = 0.5
    meta = {**packed_format.make_meta(["a"], 1, 4, {}), "format_version": 1}
    arrays = packed_format.validate_v1(meta, np.array([0, 4], dtype=np.int64), nodes, np.array([0.0, 1.0, 2.0, 9.0]))
    # Then it serves the same predictions from the three nodes a walk can reach
    forest = PackedForest(arrays)
    assert forest.n_nodes == 3
    assert forest.predict(np.array([[0.5], [0.6]])).tolist() == [1.0, 2.0]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (_with(V1, meta=_meta(format_version=2)), "a format_version 2 packed forest holds exactly"),
        (_with(V1, nodes=lambda m: m["nodes"].astype([("t", "<f8"), ("f", "<i4"), ("l", "<i4"), ("r", "<i4")])),
         "nodes must be"),
        (_with(V1, value=_cast("value", np.float32)), "value must be"),
        (_with(V1, trees=lambda m: m["trees"][::-1].copy()), "trees must start at 0"),
        (_with(V1, nodes=_v1_nodes("left", 0, 0)), "a child must lie after its parent"),  # a cycle to itself
        (_with(V1, nodes=_v1_nodes("right", 2, 1)), "a child must lie after its parent"),  # backwards
        (_with(V1, nodes=_v1_nodes("left", 0, 10**6)), "a child must lie after its parent"),  # out of range
        (_with(V1, nodes=_v1_nodes("feature", 0, 2)), "splits on feature 2"),
        (_with(V1, nodes=_v1_nodes("threshold", 0, np.inf)), "non-finite threshold"),
        (_with(V1, value=lambda m: np.where(np.arange(m["value"].size) == 1, np.nan, m["value"])), "non-finite value"),
    ],
    ids=[
        "version-members", "node-dtype", "value-dtype", "trees-order", "self-cycle", "backwards", "out-of-range",
        "feature-high", "inf-threshold", "nan-value",
    ],
)  # fmt: skip
def test_broken_version_1_files_are_refused_as_before(data: bytes, message: str) -> None:
    with pytest.raises(PackedForestError, match=message):
        PackedForest.from_bytes(data)


def test_a_version_1_node_with_two_parents_is_refused() -> None:
    nodes = np.zeros(4, dtype=packed_format.V1_NODE_DTYPE)
    nodes["left"], nodes["right"] = [1, 2, 2, 3], [2, 3, 2, 3]
    meta = {**packed_format.make_meta(["a"], 1, 4, {}), "format_version": 1}
    with pytest.raises(PackedForestError, match="child of two parents"):
        packed_format.validate_v1(meta, np.array([0, 4], dtype=np.int64), nodes, np.zeros(4))


def test_a_version_1_chain_beyond_the_depth_limit_is_refused() -> None:
    # Given a version 1 tree whose splits chain deeper than the limit (node 2k: leaf 2k+1, split 2k+2)
    depth = packed_format.MAX_DEPTH + 2
    count = 2 * depth + 1
    index = np.arange(count)
    split = (index % 2 == 0) & (index < count - 1)
    nodes = np.zeros(count, dtype=packed_format.V1_NODE_DTYPE)
    nodes["left"] = np.where(split, index + 1, index)
    nodes["right"] = np.where(split, index + 2, index)
    meta = {**packed_format.make_meta(["a"], 1, count, {}), "format_version": 1}
    # Then reading it is refused, as version 1 readers refused it
    with pytest.raises(PackedForestError, match="deeper than the limit"):
        packed_format.validate_v1(meta, np.array([0, count], dtype=np.int64), nodes, np.zeros(count))
