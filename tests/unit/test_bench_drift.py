"""bench/drift_simulation.py: the simulated shift is what it claims, and a small fixed-seed run meets the target."""

from __future__ import annotations

import numpy as np

from bench import drift_simulation as simulation
from house_prices import drift


def test_a_discrete_feature_moves_by_whole_grid_steps_and_its_mean_by_half_a_sigma() -> None:
    # Given bedrooms 2..6 (grid 1) in training and live
    rng = np.random.default_rng(1)
    train = rng.integers(2, 7, 5000).astype(np.float64)
    live = rng.integers(2, 7, 20000).astype(np.float64)
    # When shifted
    moved = simulation.shifted_values(live, train, np.random.default_rng(2))
    # Then every value stays an integer, and the mean moves by 0.5 σ (within sampling error)
    assert np.all(moved == np.round(moved))
    assert abs((moved - live).mean() - 0.5 * train.std()) < 0.02


def test_a_continuous_feature_is_shifted_by_half_a_sigma() -> None:
    rng = np.random.default_rng(3)
    train = rng.normal(3000, 750, 600)
    live = rng.normal(3000, 750, 50)
    assert np.allclose(simulation.shifted_values(live, train, rng) - live, 0.5 * train.std())


def test_a_small_fixed_seed_run_flags_every_shift_and_few_unshifted_cities() -> None:
    # Given 24 cities (12 shifted, two per feature) / When simulated with the default thresholds
    result = simulation.simulate(24, seed=17, horizon=500, step=50, thresholds=drift.Thresholds())
    summary = simulation.summarise(result, 500)
    # Then every shifted city is flagged by 500 predictions, and at most one unshifted city at 500
    assert summary["shifted_cities"] == summary["unshifted_cities"] == 12
    assert summary["shifted_flagged"] == 12
    assert summary["unshifted_flagged_at_horizon"] <= 1
    assert {row["cities"] for row in summary["per_feature"].values()} == {2}
