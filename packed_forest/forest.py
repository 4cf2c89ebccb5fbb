"""``PackedForest``: a validated packed file, evaluated for all trees at once with numpy alone.

Two walks, both bit-identical to ``RandomForestRegressor.predict``:

* one row: decide every node at once (``x[feature] <= threshold``), turn the decisions into a
  next-node array, then hop ``max_depth`` times from all roots together — a handful of numpy calls
  whatever the forest's size, which is what a single house costs;
* many rows: walk every (row, tree) pair one level per step, ``max_depth`` steps.

Leaves point at themselves, so a walk that reaches a leaf early just stays there.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from packed_forest.format import ForestArrays, PackedForestError, read

# Above this many rows the level walk beats deciding every node for every row.
_ONE_ROW_PATH_MAX_ROWS = 1


class PackedForest:
    """A forest ready to predict; arrays are read-only (possibly memory-mapped) and never copied per call."""

    __slots__ = ("_arrays", "_feature", "_left", "_right", "_roots", "_threshold", "_value", "max_depth")

    def __init__(self, arrays: ForestArrays) -> None:
        self._arrays = arrays
        nodes = arrays.nodes
        self._threshold = nodes["threshold"]
        self._feature = nodes["feature"]
        self._left = nodes["left"]
        self._right = nodes["right"]
        self._value = arrays.value
        self._roots = np.ascontiguousarray(arrays.trees[:-1], dtype=np.intp)
        self.max_depth = arrays.max_depth

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, mmap: bool = False) -> PackedForest:
        return cls(read(Path(path), mmap_arrays=mmap))

    @classmethod
    def from_bytes(cls, data: bytes) -> PackedForest:
        return cls(read(data))

    @property
    def arrays(self) -> ForestArrays:
        return self._arrays

    @property
    def meta(self) -> Mapping[str, Any]:
        return self._arrays.meta

    @property
    def n_features(self) -> int:
        return self._arrays.n_features

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self._arrays.feature_names

    @property
    def n_trees(self) -> int:
        return self._arrays.n_trees

    @property
    def n_nodes(self) -> int:
        return len(self._arrays.nodes)

    @property
    def format_version(self) -> int:
        return int(self._arrays.meta["format_version"])

    @property
    def nbytes(self) -> int:
        """Bytes of node data this forest holds (shared page cache when memory-mapped)."""
        return self._arrays.nbytes + self._roots.nbytes

    def __repr__(self) -> str:
        return f"PackedForest(trees={self.n_trees}, nodes={self.n_nodes}, features={self.n_features})"

    def predict(self, rows: np.ndarray) -> np.ndarray:
        """One float64 prediction per row of ``rows`` (shape ``(n, n_features)``, finite numbers)."""
        features = np.asarray(rows)
        if features.ndim != 2 or features.shape[1] != self.n_features:
            raise PackedForestError(f"expected rows of {self.n_features} features, got shape {features.shape}")
        # sklearn casts inputs to float32 before comparing; so do we (values stay exact below 2**24).
        features = np.ascontiguousarray(features, dtype=np.float32)
        if not np.isfinite(features).all():
            raise PackedForestError("every feature must be a finite number")
        if features.shape[0] == 0:
            return np.zeros(0, dtype=np.float64)
        if features.shape[0] <= _ONE_ROW_PATH_MAX_ROWS:
            leaves = self._leaves_of_one_row(features[0])[np.newaxis, :]
        else:
            leaves = self._leaves_level_by_level(features)
        values = self._value.take(leaves)
        # In tree order, one tree at a time, like sklearn's running sum (np.sum would sum pairwise).
        total = np.cumsum(values, axis=1)[:, -1]
        total /= self.n_trees
        return total

    def _leaves_of_one_row(self, row: np.ndarray) -> np.ndarray:
        goes_left = row.take(self._feature) <= self._threshold
        next_node = np.where(goes_left, self._left, self._right)
        node = self._roots
        for _ in range(self.max_depth):
            node = next_node.take(node)
        return node

    def _leaves_level_by_level(self, features: np.ndarray) -> np.ndarray:
        n_rows, n_features = features.shape
        flat = features.reshape(-1)
        node = np.tile(self._roots, n_rows)
        row_start = np.repeat(np.arange(n_rows, dtype=np.intp) * n_features, self.n_trees)
        nodes = self._arrays.nodes
        for _ in range(self.max_depth):
            # One gather of whole 16-byte records: taking from a strided field would copy the field first.
            record = nodes.take(node)
            goes_left = flat.take(record["feature"] + row_start) <= record["threshold"]
            # As intp: numpy converts any other index dtype on every take, which costs more than this cast.
            node = np.where(goes_left, record["left"], record["right"]).astype(np.intp)
        return node.reshape(n_rows, self.n_trees)
