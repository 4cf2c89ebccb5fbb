"""The packed-forest file: a pickle-free, versioned ``.npz`` of node arrays. Its one home.

A packed forest (format version 2) is a standard, *uncompressed* ``.npz`` (``np.savez``) holding
exactly these members (see ``docs/model-format.md`` for the full specification):

=============== ================ =========== ==============================================================
member          dtype            shape       meaning
=============== ================ =========== ==============================================================
``meta``        ``<U`` (unicode) ``()``      JSON object: ``format``, ``format_version``, ``n_features``,
                                             ``feature_names``, ``n_trees``, ``n_nodes``, ``aggregation``,
                                             ``producer`` (what packed it: informational only)
``trees``       ``<i8``          ``(T+1,)``  node offset of each tree; tree ``t`` is ``[trees[t], trees[t+1])``,
                                             its root is node ``trees[t]``
``feature``     ``<i4``          ``(N,)``    the feature a node splits on (0 for a leaf)
``threshold``   ``<f4``          ``(N,)``    go left iff ``float32(x[feature]) <= threshold`` (float32 max
                                             for a leaf, so every finite row "goes left" and stays)
``first_child`` ``<i4``          ``(N,)``    left child; the right child is ``first_child + 1``; a leaf's is
                                             its own index
``value``       ``<f8``          ``(N,)``    node value (sklearn's ``tree_.value[i, 0, 0]``); leaves' are used
=============== ================ =========== ==============================================================

Siblings are adjacent, so one step of a walk is ``first_child + (x[feature] > threshold)`` and a leaf
steps to itself. Every internal node's children lie strictly after it and inside its own tree (so every
walk ends, and there are no cycles). scikit-learn compares a float32 feature with a float64 threshold;
the packed threshold is the largest float32 not above it, which decides every float32 ``x``
identically, so the comparison can stay in float32. The prediction is the mean of the trees' leaf
values, summed in tree order in float64 and divided once, as ``RandomForestRegressor.predict`` does.

Version 1 files (16-byte ``nodes`` records with ``left``/``right`` children) stay readable: they are
checked as before, then renumbered in memory into the version 2 layout (``from_children``).

Nothing here unpickles: ``np.load(..., allow_pickle=False)`` opens the file, and this reader accepts
only the exact members, dtypes and shapes above, then checks the structure before any use.
"""

from __future__ import annotations

import io
import json
import mmap
import os
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

FORMAT_NAME = "house-prices/packed-forest"
FORMAT_VERSION = 2
# Versions this reader can serve; a newer writer bumps FORMAT_VERSION only for a change that matters.
SUPPORTED_VERSIONS = (1, 2)
AGGREGATION_MEAN = "mean"

TREES_DTYPE = np.dtype("<i8")
FEATURE_DTYPE = np.dtype("<i4")
THRESHOLD_DTYPE = np.dtype("<f4")
CHILD_DTYPE = np.dtype("<i4")
VALUE_DTYPE = np.dtype("<f8")
# A leaf's threshold: every finite float32 is <= it, so a walk that reaches a leaf stays there.
LEAF_THRESHOLD = np.finfo(np.float32).max
MEMBERS = ("meta", "trees", "feature", "threshold", "first_child", "value")

# Format version 1: read (and converted) only.
V1_NODE_DTYPE = np.dtype([("threshold", "<f4"), ("feature", "<i4"), ("left", "<i4"), ("right", "<i4")])
V1_MEMBERS = ("meta", "trees", "nodes", "value")
_MEMBERS_OF_VERSION = {1: V1_MEMBERS, 2: MEMBERS}

# Bounds that keep a hostile file from costing more than a big honest one.
MAX_META_CHARS = 64 * 1024
MAX_FEATURES = 1024
MAX_TREES = 100_000
MAX_NODES = 2**31 - 1
MAX_FILE_BYTES = 1 << 30
# Every request walks this many levels; sklearn forests on tabular data stay far below it.
MAX_DEPTH = 512
_MAX_NPY_HEADER = 65_536 + 16


class PackedForestError(ValueError):
    """The file is not a packed forest this version can serve; the message says why."""


@dataclass(frozen=True)
class ForestArrays:
    """The validated contents of one packed forest, in the format version 2 layout.

    ``meta`` describes these arrays (``format_version`` 2); ``source_version`` is the version of the
    file they were read from (a version 1 file is renumbered in memory).
    """

    meta: Mapping[str, Any]
    trees: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    first_child: np.ndarray
    value: np.ndarray
    max_depth: int
    source_version: int = FORMAT_VERSION

    @property
    def n_features(self) -> int:
        return int(self.meta["n_features"])

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(self.meta["feature_names"])

    @property
    def n_trees(self) -> int:
        return len(self.trees) - 1

    @property
    def n_nodes(self) -> int:
        return len(self.first_child)

    @property
    def nbytes(self) -> int:
        return int(
            self.trees.nbytes
            + self.feature.nbytes
            + self.threshold.nbytes
            + self.first_child.nbytes
            + self.value.nbytes
        )


def make_meta(
    feature_names: tuple[str, ...] | list[str], n_trees: int, n_nodes: int, producer: Mapping[str, Any]
) -> dict[str, Any]:
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "n_features": len(feature_names),
        "feature_names": list(feature_names),
        "n_trees": n_trees,
        "n_nodes": n_nodes,
        "aggregation": AGGREGATION_MEAN,
        "producer": dict(producer),
    }


def write(target: str | os.PathLike[str] | IO[bytes], forest: ForestArrays) -> None:
    """Write a format version 2, uncompressed ``.npz`` (stored members can be memory-mapped by ``read``)."""
    forest = validate(forest.meta, forest.trees, forest.feature, forest.threshold, forest.first_child, forest.value)
    np.savez(
        target,
        meta=np.array(json.dumps(dict(forest.meta), sort_keys=True)),
        trees=forest.trees,
        feature=forest.feature,
        threshold=forest.threshold,
        first_child=forest.first_child,
        value=forest.value,
    )


def read(source: str | os.PathLike[str] | bytes, *, mmap_arrays: bool = False) -> ForestArrays:
    """Read and validate a packed file (a path, or its bytes); a version 1 file comes back renumbered.

    With ``mmap_arrays`` (paths only) the node arrays of a version 2 file are read-only views of the
    file's pages, so every process serving the same file shares one copy in the page cache. (A version
    1 file's renumbered arrays are private to the process.)
    """
    buffer: Any
    if not isinstance(source, (str, os.PathLike)):
        buffer = bytes(source)
        arrays = _members(buffer, io.BytesIO(buffer))
    else:
        path = Path(source)
        with path.open("rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size > MAX_FILE_BYTES:
                raise PackedForestError(f"packed forest is {size} bytes, more than the limit of {MAX_FILE_BYTES}")
            if mmap_arrays and size:
                buffer = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
                arrays = _members(buffer, handle)
            else:
                buffer = handle.read()
                arrays = _members(buffer, io.BytesIO(buffer))
    meta = _parse_meta(arrays["meta"])
    _check_meta(meta)
    version = meta["format_version"]
    expected = sorted(f"{name}.npy" for name in _MEMBERS_OF_VERSION[version])
    if sorted(f"{name}.npy" for name in arrays) != expected:
        raise PackedForestError(
            f"members are {sorted(f'{name}.npy' for name in arrays)}; "
            f"a format_version {version} packed forest holds exactly {expected}"
        )
    if version == 1:
        return validate_v1(meta, arrays["trees"], arrays["nodes"], arrays["value"])
    return validate(
        meta, arrays["trees"], arrays["feature"], arrays["threshold"], arrays["first_child"], arrays["value"]
    )


def _members(buffer: Any, handle: IO[bytes]) -> dict[str, np.ndarray]:
    view = memoryview(buffer)
    try:
        with zipfile.ZipFile(handle) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as error:
        raise PackedForestError(f"not an .npz (zip) file: {error}") from error
    names = sorted(info.filename for info in infos)
    allowed = [sorted(f"{name}.npy" for name in members) for members in _MEMBERS_OF_VERSION.values()]
    if names not in allowed:
        raise PackedForestError(
            f"members are {names}; a packed forest holds exactly {allowed[-1]} (format version 1: {allowed[0]})"
        )
    return {info.filename[:-4]: _member_array(info, view, buffer) for info in infos}


def _member_array(info: zipfile.ZipInfo, view: memoryview, buffer: Any) -> np.ndarray:
    if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1:
        raise PackedForestError(f"{info.filename} is compressed or encrypted; members must be stored")
    # Local file header: 30 bytes + name + extra field, then the stored member (.npy bytes).
    local = bytes(view[info.header_offset : info.header_offset + 30])
    if len(local) != 30 or local[:4] != b"PK\x03\x04":
        raise PackedForestError(f"{info.filename} has a corrupt zip local header")
    member_start = (
        info.header_offset + 30 + int.from_bytes(local[26:28], "little") + int.from_bytes(local[28:30], "little")
    )
    member_end = member_start + info.file_size
    if member_end > len(view):
        raise PackedForestError(f"{info.filename} runs past the end of the file")
    header = io.BytesIO(view[member_start : min(member_end, member_start + _MAX_NPY_HEADER)])
    try:
        version = np.lib.format.read_magic(header)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(header)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(header)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except ValueError as error:
        raise PackedForestError(f"{info.filename} is not a valid .npy array: {error}") from error
    if dtype.hasobject:
        raise PackedForestError(f"{info.filename} holds Python objects; only plain numeric arrays are allowed")
    if fortran:
        raise PackedForestError(f"{info.filename} is Fortran-ordered; C order is required")
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    data_start = member_start + header.tell()
    if member_end - data_start != count * dtype.itemsize:
        raise PackedForestError(
            f"{info.filename} holds {member_end - data_start} data bytes, its header promises {count * dtype.itemsize}"
        )
    return np.frombuffer(buffer, dtype=dtype, count=count, offset=data_start).reshape(shape)


def _parse_meta(array: np.ndarray) -> dict[str, Any]:
    if array.shape != () or array.dtype.kind != "U":
        raise PackedForestError(f"meta must be a unicode scalar, got {array.dtype} {array.shape}")
    text = str(array[()])
    if len(text) > MAX_META_CHARS:
        raise PackedForestError(f"meta is {len(text)} characters, more than the limit of {MAX_META_CHARS}")
    try:
        meta = json.loads(text)
    except (ValueError, RecursionError) as error:
        raise PackedForestError(f"meta is not valid JSON: {error}") from error
    if not isinstance(meta, dict):
        raise PackedForestError("meta must be a JSON object")
    return meta


def _check_meta(meta: Mapping[str, Any], version: int | None = None) -> None:
    if meta.get("format") != FORMAT_NAME:
        raise PackedForestError(f"meta.format is {meta.get('format')!r}, expected {FORMAT_NAME!r}")
    found = meta.get("format_version")
    if isinstance(found, bool) or not isinstance(found, int) or found not in SUPPORTED_VERSIONS:
        raise PackedForestError(
            f"format_version {found!r} is not supported by this reader (supports {list(SUPPORTED_VERSIONS)})"
        )
    if version is not None and found != version:
        raise PackedForestError(f"format_version {found} does not match this layout (version {version})")
    if meta.get("aggregation") != AGGREGATION_MEAN:
        raise PackedForestError(f"aggregation {meta.get('aggregation')!r} is not supported (only 'mean')")
    n_features = meta.get("n_features")
    if isinstance(n_features, bool) or not isinstance(n_features, int) or not 1 <= n_features <= MAX_FEATURES:
        raise PackedForestError(f"n_features must be an integer in [1, {MAX_FEATURES}], got {n_features!r}")
    names = meta.get("feature_names")
    if not isinstance(names, list) or len(names) != n_features or not all(isinstance(n, str) for n in names):
        raise PackedForestError(f"feature_names must list {n_features} strings, got {names!r:.200}")
    if len(set(names)) != len(names):
        raise PackedForestError("feature_names has duplicates")


def _check_trees(meta: Mapping[str, Any], trees: np.ndarray, n_nodes: int) -> np.ndarray:
    """Check the tree offsets; returns each node's tree end (the first node after its tree)."""
    if trees.dtype != TREES_DTYPE or trees.ndim != 1:
        raise PackedForestError(f"trees must be a 1-D {TREES_DTYPE} array, got {trees.dtype} {trees.shape}")
    n_trees = len(trees) - 1
    if not 1 <= n_trees <= MAX_TREES:
        raise PackedForestError(f"a forest has 1 to {MAX_TREES} trees, this one {n_trees}")
    if meta.get("n_trees") != n_trees or meta.get("n_nodes") != n_nodes:
        raise PackedForestError(
            f"meta says {meta.get('n_trees')!r} trees and {meta.get('n_nodes')!r} nodes; "
            f"the arrays hold {n_trees} and {n_nodes}"
        )
    if not 1 <= n_nodes <= MAX_NODES:
        raise PackedForestError(f"node count {n_nodes} is out of range")
    starts, ends = trees[:-1], trees[1:]
    if trees[0] != 0 or trees[-1] != n_nodes or not (ends > starts).all():
        raise PackedForestError("trees must start at 0, end at the node count and give every tree at least one node")
    return np.repeat(ends, ends - starts)


def _check_features_and_values(meta: Mapping[str, Any], feature: np.ndarray, value: np.ndarray) -> None:
    n_features = int(meta["n_features"])
    outside = (feature < 0) | (feature >= n_features)
    if outside.any():
        node = int(np.flatnonzero(outside)[0])
        raise PackedForestError(f"node {node} splits on feature {int(feature[node])}, outside [0, {n_features})")
    if not np.isfinite(value).all():
        raise PackedForestError(f"node {int(np.flatnonzero(~np.isfinite(value))[0])} has a non-finite value")


def validate(
    meta: Mapping[str, Any],
    trees: np.ndarray,
    feature: np.ndarray,
    threshold: np.ndarray,
    first_child: np.ndarray,
    value: np.ndarray,
    *,
    source_version: int = FORMAT_VERSION,
) -> ForestArrays:
    """Check everything a walk relies on (format version 2); returns the forest with its measured depth."""
    _check_meta(meta, FORMAT_VERSION)
    for name, array, dtype in (
        ("first_child", first_child, CHILD_DTYPE),
        ("feature", feature, FEATURE_DTYPE),
        ("threshold", threshold, THRESHOLD_DTYPE),
        ("value", value, VALUE_DTYPE),
    ):
        if array.dtype != dtype or array.ndim != 1 or array.shape != first_child.shape:
            raise PackedForestError(
                f"{name} must be a 1-D {dtype} array of one entry per node, got {array.dtype} {array.shape}"
            )
    n_nodes = len(first_child)
    tree_end = _check_trees(meta, trees, n_nodes)

    index = np.arange(n_nodes, dtype=np.int64)
    child = first_child.astype(np.int64)
    leaf = child == index
    internal = ~leaf
    # Both children (child and child + 1) after the node and inside its tree.
    bad = internal & ~((child > index) & (child + 1 < tree_end))
    if bad.any():
        node = int(np.flatnonzero(bad)[0])
        raise PackedForestError(
            f"node {node} has first_child {int(child[node])}: children must lie after their parent inside the same "
            "tree (or first_child equal the node itself for a leaf)"
        )
    bad = leaf & ((threshold != LEAF_THRESHOLD) | (feature != 0))
    if bad.any():
        node = int(np.flatnonzero(bad)[0])
        raise PackedForestError(
            f"leaf {node} has threshold {float(threshold[node])!r} and feature {int(feature[node])}: a leaf's are "
            "float32 max and 0"
        )
    parents = np.bincount(np.concatenate((child[internal], child[internal] + 1)), minlength=n_nodes)
    root = np.zeros(n_nodes, dtype=bool)
    root[trees[:-1]] = True
    if (parents > 1).any():
        raise PackedForestError(
            f"node {int(np.flatnonzero(parents > 1)[0])} is the child of two parents: each tree must be a tree"
        )
    if ((parents == 0) & ~root).any():
        raise PackedForestError(
            f"node {int(np.flatnonzero((parents == 0) & ~root)[0])} is no node's child and not a root: "
            "every node but a tree's root is the child of exactly one node"
        )
    _check_features_and_values(meta, feature, value)
    # A split at float32 max would send every row left: packing never writes one (scikit-learn's thresholds
    # lie below the largest feature value seen), and refusing it keeps leaves and splits unambiguous.
    split_threshold = threshold[internal]
    bad_split = ~np.isfinite(split_threshold) | (split_threshold == LEAF_THRESHOLD)
    if bad_split.any():
        node = int(np.flatnonzero(internal)[np.flatnonzero(bad_split)[0]])
        raise PackedForestError(
            f"node {node} splits at {float(threshold[node])!r}: a split's threshold is finite and below float32 max"
        )
    max_depth = _max_depth(trees, child, child + 1, leaf)
    return ForestArrays(
        meta=dict(meta),
        trees=trees,
        feature=feature,
        threshold=threshold,
        first_child=first_child,
        value=value,
        max_depth=max_depth,
        source_version=source_version,
    )


def validate_v1(meta: Mapping[str, Any], trees: np.ndarray, nodes: np.ndarray, value: np.ndarray) -> ForestArrays:
    """Check a format version 1 forest exactly as version 1 readers did, then renumber it into version 2."""
    _check_meta(meta, 1)
    if nodes.dtype != V1_NODE_DTYPE or nodes.ndim != 1:
        raise PackedForestError(f"nodes must be a 1-D array of {V1_NODE_DTYPE.descr}, got {nodes.dtype} {nodes.shape}")
    if value.dtype != VALUE_DTYPE or value.shape != nodes.shape:
        raise PackedForestError(f"value must be {VALUE_DTYPE} of shape {nodes.shape}, got {value.dtype} {value.shape}")
    n_nodes = len(nodes)
    tree_end = _check_trees(meta, trees, n_nodes)

    index = np.arange(n_nodes, dtype=np.int64)
    left = nodes["left"].astype(np.int64)
    right = nodes["right"].astype(np.int64)
    leaf = (left == index) & (right == index)
    internal = ~leaf
    forward = (left > index) & (right > index) & (left < tree_end) & (right < tree_end) & (left != right)
    bad = internal & ~forward
    if bad.any():
        node = int(np.flatnonzero(bad)[0])
        raise PackedForestError(
            f"node {node} has children ({int(left[node])}, {int(right[node])}): a child must lie after its parent "
            "inside the same tree (or both equal the node for a leaf)"
        )
    children = np.concatenate((left[internal], right[internal]))
    if children.size and np.bincount(children, minlength=n_nodes).max() > 1:
        raise PackedForestError("a node is the child of two parents: each tree must be a tree, not a graph")
    _check_features_and_values(meta, nodes["feature"], value)
    if not np.isfinite(nodes["threshold"]).all():
        raise PackedForestError(
            f"node {int(np.flatnonzero(~np.isfinite(nodes['threshold']))[0])} has a non-finite threshold"
        )
    # from_children walks every tree level by level, and validates its result: both refuse a tree
    # deeper than MAX_DEPTH.
    return from_children(meta, trees, nodes["feature"], nodes["threshold"], left, right, value, source_version=1)


def from_children(
    meta: Mapping[str, Any],
    trees: np.ndarray,
    feature: np.ndarray,
    threshold: np.ndarray,
    left: np.ndarray,
    right: np.ndarray,
    value: np.ndarray,
    *,
    source_version: int = FORMAT_VERSION,
) -> ForestArrays:
    """The version 2 forest of trees given as left/right children (a leaf's both equal its own index).

    Each tree is renumbered breadth-first with the right child right after the left, which is what
    lets a walk step with ``first_child + (x > threshold)``; nodes no root reaches are dropped (they
    never decide a prediction). ``meta`` is restated for the new layout (``format_version`` 2, node
    count); the result is validated as any version 2 file would be.
    """
    if np.asarray(threshold).dtype != THRESHOLD_DTYPE:
        # Rounding a float64 threshold to nearest could flip decisions: the packer rounds down itself.
        raise PackedForestError(f"thresholds must already be {THRESHOLD_DTYPE}, got {np.asarray(threshold).dtype}")
    trees = np.asarray(trees, dtype=np.int64)
    left = np.asarray(left, dtype=np.int64)
    right = np.asarray(right, dtype=np.int64)
    n_nodes = len(left)
    leaf = left == np.arange(n_nodes, dtype=np.int64)
    levels = [trees[:-1]]
    while levels[-1].size:
        if len(levels) > MAX_DEPTH + 1:
            raise PackedForestError(f"a tree is deeper than the limit of {MAX_DEPTH} levels")
        split = levels[-1][~leaf[levels[-1]]]
        # Interleaved (left, right) pairs keep each level in tree order, so the stable sort below keeps
        # levels in order within each tree and siblings side by side.
        levels.append(np.column_stack((left[split], right[split])).reshape(-1))
    reached = np.concatenate(levels)
    owner = np.repeat(np.arange(len(trees) - 1), np.diff(trees))[reached]
    order = reached[np.argsort(owner, kind="stable")]
    position = np.empty(n_nodes, dtype=np.int64)
    position[order] = np.arange(len(order))
    new_index = np.arange(len(order), dtype=np.int64)
    new_leaf = leaf[order]
    counts = np.bincount(owner, minlength=len(trees) - 1)
    new_trees = np.concatenate(([0], np.cumsum(counts))).astype(TREES_DTYPE)
    return validate(
        {**meta, "format_version": FORMAT_VERSION, "n_nodes": len(order)},
        new_trees,
        np.where(new_leaf, 0, np.asarray(feature)[order]).astype(FEATURE_DTYPE),
        np.where(new_leaf, LEAF_THRESHOLD, np.asarray(threshold)[order]).astype(THRESHOLD_DTYPE),
        np.where(new_leaf, new_index, position[left[order]]).astype(CHILD_DTYPE),
        np.asarray(value, dtype=VALUE_DTYPE)[order],
        source_version=source_version,
    )


def _max_depth(trees: np.ndarray, left: np.ndarray, right: np.ndarray, leaf: np.ndarray) -> int:
    """Levels below the deepest root, measured breadth-first (children are forward, so this ends)."""
    frontier = trees[:-1].astype(np.int64)
    depth = 0
    while True:
        frontier = frontier[~leaf[frontier]]
        if frontier.size == 0:
            return depth
        frontier = np.concatenate((left[frontier], right[frontier]))
        depth += 1
        if depth > MAX_DEPTH:
            raise PackedForestError(f"a tree is deeper than the limit of {MAX_DEPTH} levels")
