"""The packed-forest file: a pickle-free, versioned ``.npz`` of node arrays. Its one home.

A packed forest is a standard, *uncompressed* ``.npz`` (``np.savez``) holding exactly these members
(see ``docs/model-format.md`` for the full specification):

========== ================== =========== ==================================================================
member     dtype              shape       meaning
========== ================== =========== ==================================================================
``meta``   ``<U`` (unicode)   ``()``      JSON object: ``format``, ``format_version``, ``n_features``,
                                          ``feature_names``, ``n_trees``, ``n_nodes``, ``aggregation``,
                                          ``producer`` (what packed it: informational only)
``trees``  ``<i8``            ``(T+1,)``  node offset of each tree; tree ``t`` is ``[trees[t], trees[t+1])``,
                                          its root is node ``trees[t]``
``nodes``  structured, 16 B   ``(N,)``    ``threshold <f4``, ``feature <i4``, ``left <i4``, ``right <i4``
``value``  ``<f8``            ``(N,)``    node value (sklearn's ``tree_.value[i, 0, 0]``); leaves' are used
========== ================== =========== ==================================================================

A node is a *leaf* iff ``left == right == its own index``; otherwise both children lie strictly after
it and inside its own tree (so every walk ends, and there are no cycles). A row goes left iff
``float32(x[feature]) <= threshold``. scikit-learn compares a float32 feature with a float64
threshold; the packed threshold is the largest float32 not above it, which decides every float32 ``x``
identically, so the comparison can stay in float32. The prediction is the mean of the trees' leaf
values, summed in tree order in float64 and divided once, as ``RandomForestRegressor.predict`` does.

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
FORMAT_VERSION = 1
# Versions this reader can serve; a newer writer bumps FORMAT_VERSION only for a change that matters.
SUPPORTED_VERSIONS = frozenset({1})
AGGREGATION_MEAN = "mean"

NODE_DTYPE = np.dtype([("threshold", "<f4"), ("feature", "<i4"), ("left", "<i4"), ("right", "<i4")])
TREES_DTYPE = np.dtype("<i8")
VALUE_DTYPE = np.dtype("<f8")
MEMBERS = ("meta", "trees", "nodes", "value")

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
    """The validated contents of one packed file."""

    meta: Mapping[str, Any]
    trees: np.ndarray
    nodes: np.ndarray
    value: np.ndarray
    max_depth: int

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
    def nbytes(self) -> int:
        return int(self.trees.nbytes + self.nodes.nbytes + self.value.nbytes)


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
    """Write an uncompressed ``.npz`` (stored members can be memory-mapped by ``read``)."""
    validate(forest.meta, forest.trees, forest.nodes, forest.value)
    np.savez(
        target,
        meta=np.array(json.dumps(dict(forest.meta), sort_keys=True)),
        trees=forest.trees.astype(TREES_DTYPE, copy=False),
        nodes=forest.nodes.astype(NODE_DTYPE, copy=False),
        value=forest.value.astype(VALUE_DTYPE, copy=False),
    )


def read(source: str | os.PathLike[str] | bytes, *, mmap_arrays: bool = False) -> ForestArrays:
    """Read and validate a packed file (a path, or its bytes).

    With ``mmap_arrays`` (paths only) the node arrays are read-only views of the file's pages, so every
    process serving the same file shares one copy in the page cache.
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
    return validate(meta, arrays["trees"], arrays["nodes"], arrays["value"])


def _members(buffer: Any, handle: IO[bytes]) -> dict[str, np.ndarray]:
    view = memoryview(buffer)
    try:
        with zipfile.ZipFile(handle) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as error:
        raise PackedForestError(f"not an .npz (zip) file: {error}") from error
    names = sorted(info.filename for info in infos)
    expected = sorted(f"{name}.npy" for name in MEMBERS)
    if names != expected:
        raise PackedForestError(f"members are {names}; a packed forest holds exactly {expected}")
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


def _check_meta(meta: Mapping[str, Any]) -> None:
    if meta.get("format") != FORMAT_NAME:
        raise PackedForestError(f"meta.format is {meta.get('format')!r}, expected {FORMAT_NAME!r}")
    version = meta.get("format_version")
    if isinstance(version, bool) or version not in SUPPORTED_VERSIONS:
        raise PackedForestError(
            f"format_version {version!r} is not supported by this reader (supports {sorted(SUPPORTED_VERSIONS)})"
        )
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


def validate(meta: Mapping[str, Any], trees: np.ndarray, nodes: np.ndarray, value: np.ndarray) -> ForestArrays:
    """Check everything a walk relies on; returns the forest with its measured maximum depth."""
    _check_meta(meta)
    if trees.dtype != TREES_DTYPE or trees.ndim != 1:
        raise PackedForestError(f"trees must be a 1-D {TREES_DTYPE} array, got {trees.dtype} {trees.shape}")
    if nodes.dtype != NODE_DTYPE or nodes.ndim != 1:
        raise PackedForestError(f"nodes must be a 1-D array of {NODE_DTYPE.descr}, got {nodes.dtype} {nodes.shape}")
    if value.dtype != VALUE_DTYPE or value.shape != nodes.shape:
        raise PackedForestError(f"value must be {VALUE_DTYPE} of shape {nodes.shape}, got {value.dtype} {value.shape}")
    n_trees, n_nodes = len(trees) - 1, len(nodes)
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

    index = np.arange(n_nodes, dtype=np.int64)
    # The tree each node belongs to, and that tree's end.
    owner = np.repeat(np.arange(n_trees), ends - starts)
    tree_end = ends[owner]
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
    feature = nodes["feature"]
    if ((feature < 0) | (feature >= int(meta["n_features"]))).any():
        node = int(np.flatnonzero((feature < 0) | (feature >= int(meta["n_features"])))[0])
        raise PackedForestError(
            f"node {node} splits on feature {int(feature[node])}, outside [0, {meta['n_features']})"
        )
    if not np.isfinite(nodes["threshold"]).all():
        raise PackedForestError(
            f"node {int(np.flatnonzero(~np.isfinite(nodes['threshold']))[0])} has a non-finite threshold"
        )
    if not np.isfinite(value).all():
        raise PackedForestError(f"node {int(np.flatnonzero(~np.isfinite(value))[0])} has a non-finite value")
    return ForestArrays(
        meta=dict(meta), trees=trees, nodes=nodes, value=value, max_depth=_max_depth(trees, left, right, leaf)
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
