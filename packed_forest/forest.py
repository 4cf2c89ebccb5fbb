"""``PackedForest``: a validated packed file, evaluated for all trees at once with numpy alone.

Siblings are adjacent (format version 2), so one step from a node is
``first_child + (x[feature] > threshold)``: the left child if ``x <= threshold``, else the right one.
Two walks, both bit-identical to ``RandomForestRegressor.predict``:

* one row: decide every node at once, which gives the next-node array in one add, then hop
  ``max_depth`` times from all roots together — a handful of numpy calls whatever the forest's size,
  which is what a single house costs;
* many rows: walk every (row, tree) pair one level per step, ``max_depth`` steps.

A leaf's first child is itself and its threshold float32 max (no finite row goes right), so a walk
that reaches a leaf early just stays there. Nothing is copied per model: the arrays stay the file's
(memory-mapped, shared) pages.
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

    __slots__ = ("_arrays", "_feature", "_first_child", "_roots", "_threshold", "_value", "max_depth")

    def __init__(self, arrays: ForestArrays) -> None:
        self._arrays = arrays
        self._threshold = arrays.threshold
        self._feature = arrays.feature
        self._first_child = arrays.first_child
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
        return self._arrays.n_nodes

    @property
    def format_version(self) -> int:
        """The version of the file this forest came from (a packed, unwritten forest: the current one)."""
        return self._arrays.source_version

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
        # Indexing, not take(): see predict_one (take() copies a whole unaligned memory-mapped array).
        values = self._value[leaves]
        # In tree order, one tree at a time, like sklearn's running sum (np.sum would sum pairwise).
        total = np.cumsum(values, axis=1)[:, -1]
        total /= self.n_trees
        return total

    def predict_one(self, row: np.ndarray) -> float:
        """``predict(row[np.newaxis])[0]`` for one row the caller has already made a finite float32 1-D array
        of ``n_features`` values, without re-checking it: the serving hot path (``container.fastpath``),
        where the checks and the 2-D wrappers cost more than half of the walk itself. Same walk, same sum
        order, same division: bit-identical."""
        # Indexing, not take(): a memory-mapped member is rarely 8-byte aligned in its file, and take()
        # copies a whole unaligned array to gather from it (the 100 leaves' values cost 167 KB of copying).
        total = self._value[self._leaves_of_one_row(row)].cumsum()[-1]
        return float(total) / self.n_trees

    def _leaves_of_one_row(self, row: np.ndarray) -> np.ndarray:
        # int32 (the add keeps first_child's dtype): half the bytes of intp, measured as fast here.
        next_node = self._first_child + (row.take(self._feature) > self._threshold)
        node = self._roots
        for _ in range(self.max_depth):
            node = next_node.take(node)
        return node

    def _leaves_level_by_level(self, features: np.ndarray) -> np.ndarray:
        n_rows, n_features = features.shape
        flat = features.reshape(-1)
        node = np.tile(self._roots, n_rows)
        row_start = np.repeat(np.arange(n_rows, dtype=np.intp) * n_features, self.n_trees)
        feature, threshold, first_child = self._feature, self._threshold, self._first_child
        for _ in range(self.max_depth):
            goes_right = flat.take(feature.take(node) + row_start) > threshold.take(node)
            # As intp: numpy converts any other index dtype on every take, which costs more than this.
            node = np.add(first_child.take(node), goes_right, dtype=np.intp)
        return node.reshape(n_rows, self.n_trees)
