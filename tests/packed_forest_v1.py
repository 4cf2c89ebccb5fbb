"""A format version 1 writer, kept for the tests only: production writes version 2 (packed_forest.format).

Version 1 stored each node as one 16-byte record (``threshold <f4, feature <i4, left <i4, right <i4``)
in scikit-learn's own node order; a leaf's children are its own index. These helpers write exactly what
the version 1 packer wrote, so the tests can prove version 1 files still serve identically.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from packed_forest import format as packed_format


def _float32_at_or_below(threshold: np.ndarray) -> np.ndarray:
    rounded = threshold.astype(np.float32)
    above = rounded.astype(np.float64) > threshold
    rounded[above] = np.nextafter(rounded[above], np.float32(-np.inf))
    return rounded


def v1_members(model: Any, feature_names: Sequence[str]) -> dict[str, np.ndarray]:
    """The four version 1 members of a fitted RandomForest/ExtraTrees regressor."""
    offsets, blocks, values = [0], [], []
    for estimator in model.estimators_:
        tree = estimator.tree_
        count, start = int(tree.node_count), offsets[-1]
        index = np.arange(count)
        leaf = tree.children_left == -1
        block = np.zeros(count, dtype=packed_format.V1_NODE_DTYPE)
        block["threshold"] = np.where(leaf, np.float32(0), _float32_at_or_below(np.where(leaf, 0.0, tree.threshold)))
        block["feature"] = np.where(leaf, 0, tree.feature)
        block["left"] = np.where(leaf, index, tree.children_left) + start
        block["right"] = np.where(leaf, index, tree.children_right) + start
        blocks.append(block)
        values.append(np.asarray(tree.value[:, 0, 0], dtype=np.float64))
        offsets.append(start + count)
    nodes = np.concatenate(blocks)
    meta = {
        **packed_format.make_meta(list(feature_names), len(blocks), len(nodes), {"estimator": "test-v1-writer"}),
        "format_version": 1,
    }
    return {
        "meta": np.array(json.dumps(meta)),
        "trees": np.array(offsets, dtype=np.int64),
        "nodes": nodes,
        "value": np.concatenate(values),
    }


def npz(members: dict[str, Any], compress: bool = False, allow_pickle: bool = False) -> bytes:
    """The ``.npz`` bytes of ``members`` as ``np.savez`` writes them (any version, any members)."""
    buffer = io.BytesIO()
    (np.savez_compressed if compress else np.savez)(buffer, **members, allow_pickle=allow_pickle)
    return buffer.getvalue()
