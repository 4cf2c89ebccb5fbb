"""Percentiles, Prometheus histograms (parsed, subtracted, quantiles) and the model-load phases they time."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def percentiles(values: Sequence[float], points: Sequence[float] = (50, 90, 99)) -> dict[str, float]:
    if not values:
        return {f"p{point:g}": float("nan") for point in points}
    array = np.asarray(values, dtype=np.float64)
    return {f"p{point:g}": float(np.percentile(array, point)) for point in points}


def histogram_quantile(buckets: Mapping[float, float], quantile: float) -> float:
    """Prometheus-style quantile from cumulative bucket counts (upper bound -> count), linear in a bucket."""
    ordered = sorted(buckets.items())
    if not ordered or ordered[-1][1] <= 0:
        return float("nan")
    rank = quantile * ordered[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for upper, count in ordered:
        if count >= rank:
            if upper == float("inf"):
                return lower_bound
            span = count - lower_count
            return lower_bound + (upper - lower_bound) * ((rank - lower_count) / span if span else 1.0)
        lower_bound, lower_count = upper, count
    return lower_bound


def prometheus_histograms(text: str) -> dict[str, dict[str, Any]]:
    """Every histogram in an exposition text: name -> {sum, count, buckets}, summed over labels.

    Tolerant by design: unknown families are ignored and a missing family is simply absent.
    """
    from prometheus_client.parser import text_string_to_metric_families

    histograms: dict[str, dict[str, Any]] = {}
    for family in text_string_to_metric_families(text):
        if family.type != "histogram":
            continue
        entry = histograms.setdefault(family.name, {"sum": 0.0, "count": 0.0, "buckets": {}})
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                bound = float(sample.labels.get("le", "inf"))
                entry["buckets"][bound] = entry["buckets"].get(bound, 0.0) + sample.value
            elif sample.name.endswith("_sum"):
                entry["sum"] += sample.value
            elif sample.name.endswith("_count"):
                entry["count"] += sample.value
    return histograms


def subtract_histograms(after: dict[str, dict[str, Any]], before: dict[str, dict[str, Any]]) -> dict[str, Any]:
    delta: dict[str, dict[str, Any]] = {}
    for name, entry in after.items():
        base = before.get(name, {"sum": 0.0, "count": 0.0, "buckets": {}})
        delta[name] = {
            "sum": entry["sum"] - base["sum"],
            "count": entry["count"] - base["count"],
            "buckets": {b: c - base["buckets"].get(b, 0.0) for b, c in entry["buckets"].items()},
        }
    return delta


def phase_of(metric: str) -> str | None:
    """Which part of a model load a histogram times, by name; None for the rest (tolerant by design)."""
    lowered = metric.lower()
    if "wait" in lowered or "unload" in lowered or "invocation" in lowered:
        return None
    for phase, words in (
        ("download", ("download",)),
        ("extract", ("extract", "unpack")),
        ("model_fn", ("loading", "load")),
    ):
        if any(word in lowered for word in words):
            return phase
    return None


def load_phases(histograms: Mapping[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    phases: dict[str, dict[str, float]] = {}
    for name, entry in histograms.items():
        phase = phase_of(name)
        if phase is None or entry["count"] <= 0:
            continue
        phases[f"{phase} ({name})"] = {
            "count": entry["count"],
            "mean_ms": entry["sum"] / entry["count"] * 1000,
            "p50_ms": histogram_quantile(entry["buckets"], 0.5) * 1000,
            "p99_ms": histogram_quantile(entry["buckets"], 0.99) * 1000,
        }
    return phases
