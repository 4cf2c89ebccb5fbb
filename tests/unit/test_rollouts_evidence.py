"""house_prices.rollout_evidence: one observation's transform, merging, and the item's attributes."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest

from house_prices.rollout_evidence import (
    EVIDENCE_PREFIX,
    Arm,
    RolloutEvidence,
    add_update,
    evidence_version,
    is_evidence_version,
)
from house_prices.rollout_stats import APE_CAP, LatencyHistogram, latency_bucket
from tests.rollout_doubles import canary_evidence, shadow_evidence


def random_evidence(seed: int) -> RolloutEvidence:
    rng = random.Random(seed)
    evidence = RolloutEvidence()
    for _ in range(rng.randint(1, 20)):
        sale = rng.uniform(50_000, 900_000)
        kind = rng.choice(["paired", "live", "candidate", "call"])
        if kind == "paired":
            one = RolloutEvidence.paired_label(sale * rng.uniform(0.7, 1.3), sale * rng.uniform(0.7, 1.3), sale)
        elif kind == "call":
            one = RolloutEvidence.call(rng.choice(["live", "candidate"]), rng.uniform(0, 500), rng.random() < 0.2)
        else:
            one = RolloutEvidence.arm_label(kind, sale * rng.uniform(0.5, 1.5), sale)  # type: ignore[arg-type]
        evidence = evidence.merge(one)
    return evidence


def close(a: RolloutEvidence, b: RolloutEvidence) -> bool:
    """Equal up to float rounding of the sums (addition is not associative in floating point)."""
    left, right = a.to_item(), b.to_item()
    return left.keys() == right.keys() and all(math.isclose(left[k], right[k], abs_tol=1e-12) for k in left)


def test_the_key_of_a_rollouts_evidence_never_looks_like_a_version() -> None:
    assert evidence_version("20261201T040000Z-5e6f7a8b") == "rollout#20261201T040000Z-5e6f7a8b"
    assert is_evidence_version(evidence_version("v"))
    assert not is_evidence_version("20261201T040000Z-5e6f7a8b")
    assert EVIDENCE_PREFIX.endswith("#")


def test_a_paired_label_adds_the_candidates_error_minus_lives() -> None:
    # Given a house sold for 100: live said 110 (10 %), the candidate 95 (5 %)
    evidence = RolloutEvidence.paired_label(live_price=110.0, candidate_price=95.0, sale_price=100.0)
    # Then one paired label, d = 0.05 − 0.10, and live's error kept for the margin
    assert evidence.paired.n == 1
    assert evidence.paired.sum_diff == pytest.approx(-0.05)
    assert evidence.paired.sum_diff_sq == pytest.approx(0.0025)
    assert evidence.paired.sum_live == pytest.approx(0.10)
    assert evidence.live.n == evidence.candidate.n == 0


def test_a_wild_prediction_counts_at_most_the_cap() -> None:
    evidence = RolloutEvidence.paired_label(live_price=100.0, candidate_price=10_000.0, sale_price=100.0)
    assert evidence.paired.sum_diff == pytest.approx(APE_CAP)


@pytest.mark.parametrize("arm", ["live", "candidate"])
def test_an_arm_label_goes_to_that_arm_only(arm: Arm) -> None:
    evidence = RolloutEvidence.arm_label(arm, predicted=120.0, sale_price=100.0)
    assert evidence.arm(arm).n == 1
    assert evidence.arm(arm).sum_ape == pytest.approx(0.2)
    other: Arm = "candidate" if arm == "live" else "live"
    assert evidence.arm(other).n == 0
    assert evidence.paired.n == 0


def test_a_call_counts_a_request_its_failure_and_its_latency() -> None:
    failed = RolloutEvidence.call("candidate", 42.0, failed=True)
    assert (failed.candidate_requests.requests, failed.candidate_requests.errors) == (1, 1)
    assert failed.candidate_latency == LatencyHistogram.of(42.0)
    assert failed.live_requests.requests == 0
    untimed = RolloutEvidence.call("live", None)
    assert (untimed.live_requests.requests, untimed.live_requests.errors) == (1, 0)
    assert untimed.live_latency.count == 0


@pytest.mark.parametrize("latency", [-1.0, math.nan, math.inf])
def test_a_call_with_an_impossible_latency_is_refused(latency: float) -> None:
    with pytest.raises(ValueError, match="latency_ms"):
        RolloutEvidence.call("live", latency)


@pytest.mark.parametrize("seed", range(20))
def test_merge_is_associative_and_commutative(seed: int) -> None:
    a, b, c = (random_evidence(seed * 3 + i) for i in range(3))
    assert close(a.merge(b).merge(c), a.merge(b.merge(c)))
    assert close(a.merge(b), b.merge(a))
    assert a.merge(RolloutEvidence()) == a


@pytest.mark.parametrize("seed", range(20))
def test_the_item_reads_back_as_the_same_evidence(seed: int) -> None:
    evidence = random_evidence(seed)
    item: dict[str, Any] = {"city": "Chicago_IL", "version": "rollout#v", "updated_at": "now", **evidence.to_item()}
    assert RolloutEvidence.from_item(item) == evidence


def test_adding_every_observations_increments_gives_the_merged_item() -> None:
    # Given observations ADDed one at a time to an item, as DynamoDB's UpdateItem ADD does
    observations = [random_evidence(seed) for seed in range(30)]
    stored: dict[str, float] = {}
    for observation in observations:
        expression, names, values = add_update(observation.increments(), "2026-12-02T05:00:00+00:00")
        assert expression.startswith("ADD ")
        for placeholder, name in names.items():
            if name != "updated_at":
                stored[name] = stored.get(name, 0) + values[placeholder.replace("#", ":")]
    # Then the item reads as the merge of them all
    merged = RolloutEvidence()
    for observation in observations:
        merged = merged.merge(observation)
    assert close(RolloutEvidence.from_item(stored), merged)


def test_increments_are_the_non_zero_attributes_only() -> None:
    evidence = RolloutEvidence.call("live", 10.0)
    assert evidence.increments() == {"live_requests": 1, f"live_lat_{latency_bucket(10.0)}": 1}
    assert set(evidence.to_item()) > set(evidence.increments())
    assert RolloutEvidence().increments() == {}


def test_an_empty_update_only_stamps_the_time() -> None:
    assert add_update({}, "t") == ("SET #u = :u", {"#u": "updated_at"}, {":u": "t"})


def test_missing_and_foreign_attributes_read_as_zero() -> None:
    assert RolloutEvidence.from_item({}) == RolloutEvidence()
    assert RolloutEvidence.from_item({"pair_n": True, "live_n": "3", "candidate_requests": None}) == RolloutEvidence()


def test_the_summary_counts_what_there_was_to_decide_on() -> None:
    summary = shadow_evidence(30, worse_by=0.0).merge(canary_evidence(5, worse_by=0.0, candidate_failures=2)).summary()
    assert summary == {
        "paired_labels": 30,
        "live_labels": 5,
        "candidate_labels": 5,
        "live_requests": 5,
        "live_errors": 0,
        "candidate_requests": 5,
        "candidate_errors": 2,
        "live_timed": 5,
        "candidate_timed": 5,
    }
