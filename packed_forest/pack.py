"""Pack a fitted scikit-learn forest into node arrays (the only module that touches sklearn objects).

Refuses, with the reason, what the packed format cannot reproduce exactly: anything but a fitted
single-output ``RandomForestRegressor``/``ExtraTreesRegressor``, splits that depend on missing values
(an infinite threshold), and feature counts or names that disagree with the ones given.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from packed_forest.forest import PackedForest
from packed_forest.format import LEAF_THRESHOLD, ForestArrays, PackedForestError, from_children, make_meta

# Forests whose prediction is the plain mean of their trees' predictions.
SUPPORTED_ESTIMATORS = ("RandomForestRegressor", "ExtraTreesRegressor")
_SKLEARN_LEAF = -1


def _float32_at_or_below(threshold: np.ndarray) -> np.ndarray:
    """The largest float32 <= each float64 threshold: decides ``float32(x) <= t`` exactly like ``t``."""
    rounded = threshold.astype(np.float32)
    above = rounded.astype(np.float64) > threshold
    rounded[above] = np.nextafter(rounded[above], np.float32(-np.inf))
    return rounded


def pack_forest(model: Any, feature_names: Sequence[str]) -> PackedForest:
    """The packed equivalent of ``model``; raises PackedForestError naming what cannot be represented."""
    kind = type(model).__name__
    if kind not in SUPPORTED_ESTIMATORS:
        raise PackedForestError(f"cannot pack a {kind}: only {', '.join(SUPPORTED_ESTIMATORS)} are supported")
    trees = getattr(model, "estimators_", None)
    if not trees:
        raise PackedForestError(f"the {kind} is not fitted (no estimators_)")
    n_outputs = getattr(model, "n_outputs_", 1)
    if n_outputs != 1:
        raise PackedForestError(f"the {kind} predicts {n_outputs} outputs; the packed format holds one")
    n_features = getattr(model, "n_features_in_", None)
    if n_features != len(feature_names):
        raise PackedForestError(
            f"the {kind} was fitted on {n_features} features, but {len(feature_names)} names were given"
        )
    fitted_names = getattr(model, "feature_names_in_", None)
    if fitted_names is not None and list(fitted_names) != list(feature_names):
        raise PackedForestError(f"the {kind} was fitted on features {list(fitted_names)}, not {list(feature_names)}")

    offsets = [0]
    blocks: dict[str, list[np.ndarray]] = {"feature": [], "threshold": [], "left": [], "right": [], "value": []}
    for number, estimator in enumerate(trees):
        tree = estimator.tree_
        if tree.n_outputs != 1 or tree.value.shape[1:] != (1, 1):
            raise PackedForestError(f"tree {number} is not a single-output regression tree")
        count = int(tree.node_count)
        start = offsets[-1]
        index = np.arange(count, dtype=np.int64)
        leaf = tree.children_left == _SKLEARN_LEAF
        threshold = np.asarray(tree.threshold, dtype=np.float64)
        if not np.isfinite(threshold[~leaf]).all():
            raise PackedForestError(
                f"tree {number} splits on missing values (infinite threshold); the packed format serves finite inputs "
                "only — train without missing values"
            )
        # A split at float32 max (never written by scikit-learn's splitters) is refused by the format's
        # validation in from_children, like any file's.
        blocks["threshold"].append(np.where(leaf, LEAF_THRESHOLD, _float32_at_or_below(np.where(leaf, 0.0, threshold))))
        blocks["feature"].append(np.where(leaf, 0, tree.feature))
        blocks["left"].append(np.where(leaf, index, tree.children_left) + start)
        blocks["right"].append(np.where(leaf, index, tree.children_right) + start)
        blocks["value"].append(np.asarray(tree.value[:, 0, 0], dtype=np.float64))
        offsets.append(start + count)

    producer = {"estimator": kind, "sklearn": _sklearn_version(), "numpy": np.__version__}
    columns = {name: np.concatenate(parts) for name, parts in blocks.items()}
    meta = make_meta(list(feature_names), len(trees), offsets[-1], producer)
    # Renumbered breadth-first, siblings side by side (the format's layout), and validated.
    arrays: ForestArrays = from_children(
        meta,
        np.asarray(offsets, dtype=np.int64),
        feature=columns["feature"],
        threshold=columns["threshold"],
        left=columns["left"],
        right=columns["right"],
        value=columns["value"],
    )
    return PackedForest(arrays)


def _sklearn_version() -> str:
    import sklearn

    return str(sklearn.__version__)
