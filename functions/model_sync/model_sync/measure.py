"""Measure a packed forest on a city's held-out validation rows (numpy; no pickle, no sklearn).

Validation rows are the notebook's headerless CSV (``PRICE`` first, then ``schema.FEATURE_NAMES``). A file
that is not that shape is a ValidationRowsProblem: the gate then treats the city as unmeasurable.
"""

from __future__ import annotations

import io

import numpy as np

from house_prices.schema import CSV_COLUMNS
from model_sync.gate import Measured
from packed_forest import PackedForest, PackedForestError
from packed_forest.evaluation import error_metrics

# A validation file far larger than any city's split is a mistake, not data; keep the Lambda's memory bounded.
MAX_VALIDATION_BYTES = 64 * 1024 * 1024


class ValidationRowsProblem(ValueError):
    """The validation rows cannot be used; the message says why."""


def parse_rows(raw: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(features, prices) from the notebook's validation CSV."""
    try:
        rows = np.loadtxt(io.StringIO(raw.decode("utf-8")), delimiter=",", ndmin=2, dtype=np.float64)
    except (UnicodeDecodeError, ValueError) as error:
        raise ValidationRowsProblem(f"validation rows are not a numeric CSV: {error}") from error
    if rows.size == 0:
        raise ValidationRowsProblem("validation rows file is empty")
    if rows.shape[1] != len(CSV_COLUMNS):
        raise ValidationRowsProblem(f"validation rows have {rows.shape[1]} columns; expected {', '.join(CSV_COLUMNS)}")
    if not np.isfinite(rows).all():
        raise ValidationRowsProblem("validation rows hold non-finite numbers")
    return rows[:, 1:], rows[:, 0]


def measure(forest: PackedForest, features: np.ndarray, prices: np.ndarray) -> Measured:
    try:
        predictions = forest.predict(features)
    except PackedForestError as error:
        raise ValidationRowsProblem(f"cannot evaluate the model on the validation rows: {error}") from error
    metrics = error_metrics(prices, predictions)
    return Measured(ae_p50=float(metrics["ae_p50"]), rows=len(prices), metrics=metrics)
