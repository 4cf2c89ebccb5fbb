"""Error metrics of predictions (numpy only): what training reports and what model-sync measures.

One home for the metric definitions, so a reported ``validation.ae_p50`` and a measured one mean the
same thing. R² follows scikit-learn's ``r2_score`` (1 - SS_res / SS_tot); it is undefined (None) for
fewer than two rows or constant targets.
"""

from __future__ import annotations

from typing import Any

import numpy as np

PERCENTILES = (10, 50, 90)


def error_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    absolute_errors = np.abs(y_true - y_pred)
    p10, p50, p90 = np.percentile(absolute_errors, PERCENTILES)
    total = float(np.sum((y_true - y_true.mean()) ** 2)) if len(y_true) else 0.0
    r2 = 1.0 - float(np.sum((y_true - y_pred) ** 2)) / total if len(y_true) > 1 and total > 0 else None
    return {"ae_p10": float(p10), "ae_p50": float(p50), "ae_p90": float(p90), "r2": r2, "rows": len(y_true)}
