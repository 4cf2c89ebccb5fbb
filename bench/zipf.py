"""Zipf traffic: which model each request asks for, a few popular and a long tail."""

from __future__ import annotations

import numpy as np


def zipf_sequence(models: int, exponent: float, length: int, seed: int = 7) -> np.ndarray:
    """Model indices drawn from Zipf(exponent) truncated at ``models`` ranks (rank order shuffled)."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, models + 1, dtype=np.float64) ** exponent
    cdf = np.cumsum(weights / weights.sum())
    ranks = np.searchsorted(cdf, rng.random(length), side="right").clip(0, models - 1)
    return rng.permutation(models)[ranks]
