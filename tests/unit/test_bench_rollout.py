"""bench/rollout_simulation.py: the vectorised guard is the real one, the effect sizes are exact, a small run works."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from bench import rollout_simulation as simulation
from bench.report import marked_blocks, replace_marked_block
from house_prices import rollout_stats
from house_prices.rollout_stats import ArmStats, CanaryStats, GuardPolicy, PairedStats


def synthetic_city(seed: int, houses: int = 4000, rho: float = 0.9) -> simulation.CityErrors:
    """Two models' errors with correlated sizes (no forests: fast), on prices around 400k."""
    rng = np.random.default_rng(seed)
    sale = rng.uniform(2e5, 6e5, houses)
    shared = rng.normal(0, 0.05, houses)
    own = rng.normal(0, 0.05, (2, houses))
    live = (shared + np.sqrt(1 - rho) * own[0]) * sale
    candidate = (shared + np.sqrt(1 - rho) * own[1]) * sale
    return simulation.CityErrors(f"Synthetic{seed}_XX", sale, live, candidate)


def test_the_vectorised_guard_decides_as_decide_does() -> None:
    # Given random paired sums around the decision boundaries
    rng = np.random.default_rng(5)
    policy = GuardPolicy()
    n = rng.integers(2, 3000, 400).astype(np.float64)
    mean = rng.normal(0, 0.004, 400)
    sd = rng.uniform(0.01, 0.06, 400)
    live = rng.uniform(0.03, 0.07, 400)
    total, total_sq = n * mean, (n - 1) * sd**2 + n * mean**2
    # When both judge them
    codes = simulation.guard_codes(n >= policy.min_labels, mean, sd**2 / n, live, policy)
    expected = [
        simulation.CODES[decide_paired(int(k), t, q, k * m, policy)]
        for k, t, q, m in zip(n, total, total_sq, live, strict=True)
    ]
    # Then they agree everywhere, and the sample holds all three outcomes
    assert codes.tolist() == expected
    assert set(expected) == {simulation.WAIT, simulation.ROLLBACK, simulation.PROMOTE}


def decide_paired(n: int, total: float, total_sq: float, live_total: float, policy: GuardPolicy) -> str:
    return rollout_stats.decide(PairedStats(n, total, total_sq, live_total), policy).outcome


def test_the_candidate_scale_makes_the_mean_capped_ape_exactly_the_ratio() -> None:
    city = synthetic_city(1)
    for ratio in (0.9, 1.0, 1.1):
        scaled = city.candidate_ape(city.scale_for(ratio)).mean()
        assert scaled == pytest.approx(ratio * city.live_ape().mean(), rel=1e-9)


def test_first_decision_takes_the_first_non_wait_code() -> None:
    codes = np.array([[0, 0, 1, 2], [0, 0, 0, 0], [2, 1, 1, 1]])
    outcome, index = simulation.first_decision(codes)
    assert outcome.tolist() == [1, 0, 2]
    assert index.tolist() == [2, -1, 0]


@pytest.mark.parametrize("mode", ["shadow", "canary"])
def test_a_small_run_agrees_with_decide_label_by_label_and_rolls_back_a_worse_candidate(mode: str) -> None:
    # Given two synthetic cities and a candidate 30 % worse
    cities = [synthetic_city(2), synthetic_city(3)]
    limit = 1500 if mode == "shadow" else 4000
    run = simulation.simulate_mode(mode, cities, 1.3, 20, 18, GuardPolicy(), limit, 0.3, 50.0, 21.0, verify=4)
    # Then replaying 4 rollouts through rollout_stats.decide changes no decision
    assert run["mismatches"] == 0
    assert run["verified_rollouts"] == 4
    # and most rollouts end in a rollback, none in a promotion, every decision with its labels and day
    summary = simulation.summarise("worse", mode, run, limit)
    assert summary["rolled_back"] >= 0.9
    assert summary["promoted"] == 0
    decided = [i for i, code in enumerate(run["outcomes"]) if code != simulation.WAIT]
    assert all(run["labels"][i] is not None and run["days"][i] > 0 for i in decided)


def test_the_replay_counts_a_disagreement() -> None:
    # A deliberately wrong code sequence (promote at every label) disagrees at the first decided label
    live = np.full(60, 0.05)
    candidate = np.full(60, 0.08)
    codes = np.full(60, simulation.PROMOTE)
    wrong = simulation._replay("shadow", live, candidate, np.zeros(60, bool), codes, GuardPolicy())
    assert wrong >= 1


def test_canary_codes_count_each_arm_and_wait_for_both() -> None:
    ape = np.array([[0.05] * 10])
    arms = np.array([[True] * 10])
    codes, n_candidate = simulation.canary_codes(ape, arms, GuardPolicy(min_labels=2))
    assert codes.tolist() == [[simulation.WAIT] * 10]  # live has no labels
    assert n_candidate.tolist() == [list(range(1, 11))]
    stats = CanaryStats(ArmStats(10, 0.5, 0.025), ArmStats())
    assert rollout_stats.decide(stats, GuardPolicy(min_labels=2)).outcome == "wait"


def test_the_block_renders_and_replaces_its_markers() -> None:
    # Given a tiny fake run's results
    rows = [
        {"scenario": s, "mode": m, "rollouts": 10, "rolled_back": 0.1, "promoted": 0.5, "undecided": 0.4,
         "max_labels": 100, "verified_rollouts": 1, "mismatches": 0, "peeking_rolled_back": 0.3,
         **({"expected": simulation.EXPECTED[s], "labels_to_decision": {"p50": 50.0, "p90": 90.0},
             "all_labels_to_decision": {"p50": 500.0, "p90": 900.0}, "days_to_decision": {"p50": 2.0, "p90": 3.0},
             "decided_within_200": 0.7} if simulation.EXPECTED[s] else {})}
        for m in ("shadow", "canary") for s in simulation.SCENARIOS
    ]  # fmt: skip
    scenario = {"ape_correlation": 0.8, "standardised_effect": 0.1, "one_look_power_at_200": 0.43}
    results: dict[str, Any] = {
        "rows": rows,
        "settings": {"rollouts": 10, "seed": 1, "cities": 2, "pool": 100, "delay_days": 21.0, "labels_per_day": 50.0,
                     "canary_weight": 0.1, "verify": 1, "policy": GuardPolicy().as_dict()},
        "errors": {"scenarios": dict.fromkeys(simulation.SCENARIOS, scenario), "live_mean_ape": 0.05,
                   "signed_error_correlation": 0.9},
        "routing": {"rounds": 1, "houses_per_round": 10, "routing_p99_over_parse_p99": 0.9, "met": True,
                    "us": {name: {"p50": 1.0, "p99": 2.0} for name in ("routing", "parse_house", "empty call")}},
        "uniformity": simulation.uniformity(10_000),
        "mismatches": 0, "seconds": 60.0, "generated": "now", "machine": "here",
    }  # fmt: skip
    results["targets"] = simulation.evaluate_targets(results)
    # When rendered into a document holding an old block
    text = replace_marked_block("# Benchmarks\n", simulation.BLOCK, "old")
    text = replace_marked_block(text, simulation.BLOCK, simulation.render_block(results))
    # Then the block is replaced, names every target and carries the table
    block = marked_blocks(text)[simulation.BLOCK]
    assert "old" not in block
    assert "| shadow (limit 100 labels) | 10 % worse | 10.0 % |" in block
    assert [t["met"] for t in results["targets"]] == [False, False, False, True, False]  # 10k keys < 1M
    assert sum(results["uniformity"]["deciles"]) == 10_000
