"""house_prices.rollout_stats: the mixture SPRT's value, its false-alarm rate under peeking, and the guards."""

from __future__ import annotations

import math
import random
from statistics import NormalDist

import pytest
from hypothesis import given
from hypothesis import strategies as st

from house_prices import rollout_stats
from house_prices.rollout_stats import (
    ArmStats,
    CanaryStats,
    GuardPolicy,
    LatencyHistogram,
    PairedStats,
    RequestCounts,
    check_error_rate,
    check_latency,
    decide,
    log_mixture_ratio,
)

counts = st.integers(0, 10_000)
sums = st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False)


def mixture_by_quadrature(estimate: float, variance: float, tau: float, steps: int = 20_000) -> float:
    """Λ as its definition: the Gaussian likelihood ratio of effect θ, averaged over θ ~ half-normal(τ)."""
    top = 12 * tau
    width = top / steps
    total = 0.0
    for k in range(steps + 1):
        theta = k * width
        weight = 2 / tau * NormalDist().pdf(theta / tau)
        ratio = math.exp(theta * estimate / variance - theta * theta / (2 * variance))
        total += (0.5 if k in (0, steps) else 1.0) * weight * ratio
    return total * width


@pytest.mark.parametrize(
    ("estimate", "variance", "tau"), [(0.01, 1e-4, 0.02), (-0.003, 4e-6, 0.005), (0.002, 1e-6, 0.004)]
)
def test_the_closed_form_is_the_mixture_integral(estimate: float, variance: float, tau: float) -> None:
    # Λ = 2Φ(z)·√(V/(V+τ²))·exp(z²/2) against a direct numerical integral of its definition
    assert math.exp(log_mixture_ratio(estimate, variance, tau)) == pytest.approx(
        mixture_by_quadrature(estimate, variance, tau), rel=1e-6
    )


def test_a_hand_computed_value() -> None:
    # x = 0.01, V = 1e-4, τ = 0.02: z = 0.01·0.02/√(1e-4·5e-4) = 0.894427, Φ(z) = 0.814453
    # log Λ = ½·ln(1/5) + z²/2 + ln(2·0.814453) = -0.804719 + 0.4 + 0.487909 = 0.083190
    assert log_mixture_ratio(0.01, 1e-4, 0.02) == pytest.approx(0.083190, abs=2e-6)


def test_the_far_left_tail_stays_finite() -> None:
    # z ≈ -10,000, where Φ(z) underflows: Λ ≈ 2·√(V/(V+τ²)) / (|z|·√(2π)), by the tail expansion
    z = -1.0 * 0.01 / math.sqrt(1e-8 * (1e-8 + 1e-4))
    expected = math.log(2 * math.sqrt(1e-8 / (1e-8 + 1e-4)) / (-z * math.sqrt(2 * math.pi)))
    assert log_mixture_ratio(-1.0, 1e-8, 0.01) == pytest.approx(expected, rel=1e-6)


def null_false_alarms(streams: int, labels: int, seed: int, policy: GuardPolicy) -> tuple[int, int]:
    """(mSPRT rollbacks, peeking one-sided z-test rollbacks) over null paired streams, checked at every label."""
    rng = random.Random(seed)
    guard = peeking = 0
    for _ in range(streams):
        n, total, total_sq, live_total = 0, 0.0, 0.0, 0.0
        guard_fired = peek_fired = False
        for _ in range(labels):
            live = abs(rng.gauss(0.05, 0.05))
            diff = rng.gauss(0.0, 0.04)  # candidate as good as live
            n, total, total_sq, live_total = n + 1, total + diff, total_sq + diff * diff, live_total + live
            if n < policy.min_labels:
                continue
            if not guard_fired:
                guard_fired = decide(PairedStats(n, total, total_sq, live_total), policy).outcome == "rollback"
            if not peek_fired:
                sd = math.sqrt(max(total_sq - total * total / n, 0.0) / (n - 1) / n)
                peek_fired = total / n > 1.6449 * sd
            if guard_fired and peek_fired:
                break
        guard += guard_fired
        peeking += peek_fired
    return guard, peeking


def test_checking_after_every_label_keeps_false_rollbacks_under_alpha_where_peeking_does_not() -> None:
    # Given 200 null streams of 600 paired labels (fixed seed), checked after every label
    guard, peeking = null_false_alarms(200, 600, seed=18, policy=GuardPolicy())
    # Then the mixture SPRT rolls back at most 5 % of equal candidates (7 with this seed); a one-sided
    # z-test peeking at every label rolls back several times as many (51)
    assert guard <= 10
    assert peeking >= 3 * 10


def paired(n: int, mean: float, sd: float, live_mean: float = 0.05) -> PairedStats:
    """Sums of n differences with this mean and sample standard deviation."""
    return PairedStats(n, n * mean, (n - 1) * sd * sd + n * mean * mean, n * live_mean)


def test_below_the_minimum_sample_the_guard_waits_whatever_the_evidence() -> None:
    decision = decide(paired(49, 0.05, 0.001), GuardPolicy(min_labels=50))
    assert (decision.outcome, decision.difference, decision.p_rollback) == ("wait", None, 1.0)
    assert "fewer than 50" in decision.reason


def test_a_clearly_worse_candidate_is_rolled_back_with_its_numbers() -> None:
    decision = decide(paired(400, 0.01, 0.04), GuardPolicy())
    assert decision.outcome == "rollback"
    assert decision.relative_difference == pytest.approx(0.2)
    assert decision.std_error == pytest.approx(0.04 / math.sqrt(400))
    assert decision.p_rollback < 0.05 < decision.p_promote
    assert decision.as_dict()["outcome"] == "rollback"


def test_a_clearly_better_candidate_is_promoted() -> None:
    decision = decide(paired(400, -0.005, 0.04), GuardPolicy())
    assert decision.outcome == "promote"
    assert decision.p_promote < 0.05


def test_a_candidate_identical_to_live_is_promoted_never_rolled_back() -> None:
    # Every difference exactly 0: zero variance, still finite, and not worse than live by the margin
    decision = decide(PairedStats(60, 0.0, 0.0, 3.0), GuardPolicy())
    assert decision.outcome == "promote"
    assert decision.p_rollback == 1.0


def test_little_evidence_waits() -> None:
    assert decide(paired(100, 0.001, 0.04), GuardPolicy()).outcome == "wait"


@given(st.integers(2, 5000), st.floats(-0.02, 0.02), st.floats(0.001, 0.1))
def test_swapping_candidate_and_live_swaps_the_two_tests(n: int, mean: float, sd: float) -> None:
    # With no margin, "candidate worse" for (c, l) is "candidate better" for (l, c), with the same evidence
    policy = GuardPolicy(min_labels=2, promote_margin=0.0)
    forward = decide(paired(n, mean, sd), policy)
    backward = decide(paired(n, -mean, sd), policy)
    assert forward.p_rollback == pytest.approx(backward.p_promote, rel=1e-9, abs=1e-300)
    assert forward.p_promote == pytest.approx(backward.p_rollback, rel=1e-9, abs=1e-300)


def arm(n: int, mean: float, sd: float) -> ArmStats:
    return ArmStats(n, n * mean, (n - 1) * sd * sd + n * mean * mean)


def test_canary_compares_the_two_arms_means_with_both_variances() -> None:
    # Given 2,000 candidate labels at mean APE 6 % and 18,000 live at 5 %, both with sd 5 %
    decision = decide(CanaryStats(arm(2000, 0.06, 0.05), arm(18_000, 0.05, 0.05)), GuardPolicy())
    # Then the candidate is rolled back, and the standard error is √(s²/n_c + s²/n_l)
    assert decision.outcome == "rollback"
    assert (decision.labels, decision.live_labels, decision.mode) == (2000, 18_000, "canary")
    assert decision.std_error == pytest.approx(math.sqrt(0.05**2 / 2000 + 0.05**2 / 18_000))
    assert decision.difference == pytest.approx(0.01)


def test_canary_waits_for_the_minimum_in_each_arm_and_promotes_a_better_candidate() -> None:
    assert decide(CanaryStats(arm(49, 0.01, 0.05), arm(10_000, 0.05, 0.05)), GuardPolicy()).outcome == "wait"
    assert decide(CanaryStats(arm(3000, 0.04, 0.05), arm(20_000, 0.05, 0.05)), GuardPolicy()).outcome == "promote"
    equal = decide(CanaryStats(arm(3000, 0.05, 0.05), arm(3000, 0.05, 0.05)), GuardPolicy(promote_margin=0.0))
    assert equal.outcome == "wait"


@given(st.lists(st.tuples(st.floats(1e3, 1e6), st.floats(1e3, 1e6), st.floats(1e3, 1e6)), max_size=20))
def test_paired_sums_merge_in_any_order(
    labels: list[tuple[float, float, float]],
) -> None:
    # Given one PairedStats per label, merged forwards and backwards
    ones = [PairedStats.of(c, live, sale) for c, live, sale in labels]
    forwards, backwards = PairedStats(), PairedStats()
    for one in ones:
        forwards = forwards.merge(one)
    for one in reversed(ones):
        backwards = one.merge(backwards)
    # Then both orders agree
    assert forwards.n == backwards.n == len(labels)
    assert forwards.sum_diff == pytest.approx(backwards.sum_diff, abs=1e-9)
    assert forwards.sum_diff_sq == pytest.approx(backwards.sum_diff_sq, abs=1e-9)
    assert forwards.sum_live == pytest.approx(backwards.sum_live, abs=1e-9)


def test_arm_stats_merge_and_the_ape_is_capped() -> None:
    one = ArmStats.of(predicted=900_000, sale_price=300_000)
    assert one == ArmStats(1, rollout_stats.APE_CAP, rollout_stats.APE_CAP**2)
    assert one.merge(ArmStats.of(330_000, 300_000)) == ArmStats(2, 0.5 + 0.1, 0.25 + 0.1 * 0.1)
    assert PairedStats.of(330_000, 270_000, 300_000) == PairedStats(1, 0.0, 0.0, 0.1)
    with pytest.raises(ValueError, match="sale_price"):
        rollout_stats.capped_ape(1.0, 0.0)


def test_policy_validation_and_round_trip_name_the_field() -> None:
    policy = GuardPolicy(alpha=0.01, min_labels=80)
    assert GuardPolicy.from_mapping(policy.as_dict()) == policy
    assert GuardPolicy.from_mapping({"min_labels": 80.0}).min_labels == 80
    with pytest.raises(ValueError, match="alpha"):
        GuardPolicy(alpha=1.5)
    with pytest.raises(ValueError, match="colour"):
        GuardPolicy.from_mapping({"colour": 1})
    with pytest.raises(ValueError, match="min_labels: must be a whole number"):
        GuardPolicy.from_mapping({"min_labels": 2.5})
    with pytest.raises(ValueError, match="alpha: must be a number"):
        GuardPolicy.from_mapping({"alpha": "0.05"})


def test_a_failing_candidate_breaches_the_error_rate_guard() -> None:
    policy = GuardPolicy(min_requests=100)
    failing = check_error_rate(RequestCounts(120, 30), RequestCounts(1000, 2), policy)
    assert failing.breached
    assert failing.candidate_value == pytest.approx(0.25)
    assert not check_error_rate(RequestCounts(1000, 3), RequestCounts(9000, 20), policy).breached
    too_few = check_error_rate(RequestCounts(99, 99), RequestCounts(1000, 0), policy)
    assert not too_few.breached
    assert "fewer than 100" in too_few.reason


def test_equal_error_rates_never_breach_even_without_any_live_error() -> None:
    assert not check_error_rate(RequestCounts(500, 0), RequestCounts(5000, 0), GuardPolicy()).breached


def test_a_slow_candidate_breaches_the_latency_guard() -> None:
    live = LatencyHistogram.of(*[10.0] * 990, *[40.0] * 10)
    slow = LatencyHistogram.of(*[30.0] * 990, *[200.0] * 10)
    same = LatencyHistogram.of(*[11.0] * 990, *[42.0] * 10)
    breached = check_latency(slow, live, GuardPolicy())
    assert breached.breached
    assert breached.live_value is not None
    assert breached.limit == pytest.approx(breached.live_value * 1.5 + 5.0)
    assert not check_latency(same, live, GuardPolicy()).breached
    assert not check_latency(LatencyHistogram.of(500.0), live, GuardPolicy()).breached  # too few timings
    assert live.merge(slow).count == 2000
