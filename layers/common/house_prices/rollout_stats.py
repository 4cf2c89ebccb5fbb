"""Rollout guards (docs/rollouts.md): promote, roll back or wait, from mergeable sums, valid after every label.

**Errors.** Each labelled prediction gives an absolute percentage error, APE = |predicted − sale| / sale,
winsorized at ``APE_CAP`` (50 %): cities of every price level share one scale, and one mistyped sale
price cannot decide a rollout on its own.

**Shadow (paired).** Both models priced the same house, so each label gives a paired difference
dᵢ = APE_candidate,ᵢ − APE_live,ᵢ; most of the house-to-house spread cancels (the two errors are strongly
correlated), which is why shadow needs far fewer labels than canary. Stored: n, Σd, Σd², Σ APE_live.

**Canary (two samples).** Each house is priced by one arm; per version n, Σ APE, Σ APE² over the same
window, and the estimate is the difference of the two means with variance s²_c/n_c + s²_l/n_l.

**The test: a one-sided mixture sequential probability ratio test (mSPRT)** with a normal mixture,
as in Johari, Pekelis, Koomen & Walsh, "Always valid inference" (2017/2022). For an estimate x of the
effect (signed towards the alternative) with variance V, and a mixing distribution of the effect that
is half-normal with scale τ, the likelihood ratio integrates in closed form:

    Λ = 2·Φ(z) · √(V / (V + τ²)) · exp(z² / 2),    z = x·τ / √(V·(V + τ²))

Under the null (true effect ≤ 0) Λ is a non-negative supermartingale with mean ≤ 1, so by Ville's
inequality P(Λ ever reaches 1/α) ≤ α: the guard may look after every label, or after every batch of
labels, or skip looks, and its false-alarm rate stays ≤ α (the always-valid p-value is min(1, 1/Λ)).
V uses the plug-in sample variance (so the guarantee is asymptotic; ``min_labels`` keeps the estimate
sane, and ``bench/rollout_simulation.py`` measures the realised rate on real forests' errors).

Two such tests run side by side on the same sums:

* **roll back** when the candidate is shown worse than live: x = mean(d) (null: candidate no worse);
  false rollbacks of a candidate as good as live ≤ α;
* **promote** when the candidate is shown not worse than live by more than ``promote_margin`` × live's
  mean APE (non-inferiority, the offline gate's 5 % tolerance): x = margin − mean(d); false promotions
  of a candidate worse by the margin or more ≤ α.

Between 0 and the margin either outcome is acceptable (an indifference zone); when both fire at once,
rollback wins. τ is ``mixture_scale`` × live's mean APE: the test is most powerful for effects around
that size (10 % of live's error by default).

Why not the alternatives: a fixed-horizon t-test checked after every label ("peeking") inflates its
5 % false-alarm rate to 30–60 % over a few thousand looks; an SPRT with a point alternative (Wald) is
optimal only at that alternative and needs σ known, while a mixture covers every effect size and keeps
the guarantee with any stopping rule. docs/rollouts.md, "Statistics", has the numbers.

**Operational guards** (not accuracy): the candidate's error rate against live's over the same window,
from request and error counts, by the same one-sided mixture test against ``error_rate_margin``; and
its latency quantile against live's from log-spaced histograms (``live_quality.log_edges``), breached
when above live's × ``latency_ratio`` + ``latency_slack_ms`` (a margin check: histogram quantiles are
exact to one bucket, ±12 %).

Standard library only (the router's and the guard's Lambda layer carries no numpy).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from house_prices.live_quality import bucket_of, histogram_quantile, log_edges

# Above 50 % an error is a failure whatever its size; a lower cap also steadies the variance estimate
# (bench/rollout_simulation.py: fewer labels to a decision than at 100 %, and fewer false rollbacks).
APE_CAP = 0.5
Outcome = Literal["promote", "rollback", "wait"]
PROMOTE: Outcome = "promote"
ROLLBACK: Outcome = "rollback"
WAIT: Outcome = "wait"

# Floors that keep a degenerate window (every difference exactly 0, a perfect live model) finite.
_VARIANCE_FLOOR = 1e-18
_TAU_FLOOR = 1e-6
# The mixture's scale for error rates: the failures worth catching fast are a few percent of requests.
ERROR_RATE_TAU = 0.05
# Latency histogram: 0.1 ms to 100 s, 20 buckets per decade (plus one below and one above).
LATENCY_EDGES_MS = log_edges(0.1, 100_000.0)
LATENCY_BUCKETS = len(LATENCY_EDGES_MS) + 1


def capped_ape(predicted: float, sale_price: float) -> float:
    """|predicted − sale| / sale, at most ``APE_CAP`` (``sale_price`` > 0)."""
    if not sale_price > 0:
        raise ValueError(f"sale_price must be > 0, got {sale_price}")
    return min(abs(predicted - sale_price) / sale_price, APE_CAP)


# --- sufficient statistics: every field a count or a sum, merged by adding (DynamoDB ADD) ----------
# Their stored layout lives in house_prices.rollout_evidence (one home); these are the numbers the tests read.


@dataclass(frozen=True)
class PairedStats:
    """Shadow: labelled houses priced by both models. d = APE_candidate − APE_live."""

    n: int = 0
    sum_diff: float = 0.0
    sum_diff_sq: float = 0.0
    sum_live: float = 0.0  # Σ APE_live: live's mean error scales the margin and the mixture

    @classmethod
    def of(cls, candidate_price: float, live_price: float, sale_price: float) -> PairedStats:
        live = capped_ape(live_price, sale_price)
        diff = capped_ape(candidate_price, sale_price) - live
        return cls(1, diff, diff * diff, live)

    def merge(self, other: PairedStats) -> PairedStats:
        return PairedStats(
            self.n + other.n,
            self.sum_diff + other.sum_diff,
            self.sum_diff_sq + other.sum_diff_sq,
            self.sum_live + other.sum_live,
        )


@dataclass(frozen=True)
class ArmStats:
    """Canary: one version's labelled errors (capped APE) over the rollout's window."""

    n: int = 0
    sum_ape: float = 0.0
    sum_ape_sq: float = 0.0

    @classmethod
    def of(cls, predicted: float, sale_price: float) -> ArmStats:
        ape = capped_ape(predicted, sale_price)
        return cls(1, ape, ape * ape)

    def merge(self, other: ArmStats) -> ArmStats:
        return ArmStats(self.n + other.n, self.sum_ape + other.sum_ape, self.sum_ape_sq + other.sum_ape_sq)


@dataclass(frozen=True)
class CanaryStats:
    """Canary: the candidate's and live's labelled errors over the same window."""

    candidate: ArmStats = ArmStats()
    live: ArmStats = ArmStats()


@dataclass(frozen=True)
class RequestCounts:
    """Requests answered and failed (5xx, timeouts) by one version over the window."""

    requests: int = 0
    errors: int = 0

    def merge(self, other: RequestCounts) -> RequestCounts:
        return RequestCounts(self.requests + other.requests, self.errors + other.errors)


@dataclass(frozen=True)
class LatencyHistogram:
    """One version's latencies in fixed log-spaced buckets (``LATENCY_EDGES_MS``), mergeable by adding."""

    buckets: tuple[int, ...] = field(default=(0,) * LATENCY_BUCKETS)

    @classmethod
    def of(cls, *milliseconds: float) -> LatencyHistogram:
        counts = [0] * LATENCY_BUCKETS
        for value in milliseconds:
            counts[latency_bucket(value)] += 1
        return cls(tuple(counts))

    def merge(self, other: LatencyHistogram) -> LatencyHistogram:
        return LatencyHistogram(tuple(a + b for a, b in zip(self.buckets, other.buckets, strict=True)))

    @property
    def count(self) -> int:
        return sum(self.buckets)

    def quantile(self, q: float) -> float | None:
        return histogram_quantile(self.buckets, LATENCY_EDGES_MS, q)


def latency_bucket(milliseconds: float) -> int:
    """The latency histogram bucket of one request (for a caller that stores buckets itself)."""
    return bucket_of(max(milliseconds, 0.0), LATENCY_EDGES_MS)


# --- policy and decisions ------------------------------------------------------------------------


@dataclass(frozen=True)
class GuardPolicy:
    """A rollout's guard settings (stored with the rollout; every field has a default)."""

    alpha: float = 0.05  # false rollback (candidate as good as live) and false promotion rate
    min_labels: int = 50  # paired labels (shadow), or labels per arm (canary), before any decision
    promote_margin: float = 0.05  # promote when shown not worse than live by this share of live's error
    mixture_scale: float = 0.10  # τ: the effect the test is tuned for, as a share of live's error
    min_requests: int = 100  # per arm, before the operational guards may fire
    error_rate_margin: float = 0.01  # candidate's error rate may exceed live's by this much
    latency_quantile: float = 0.99
    latency_ratio: float = 1.5  # candidate's latency quantile may reach live's × this + the slack
    latency_slack_ms: float = 5.0

    def __post_init__(self) -> None:
        checks = {
            "alpha": 0 < self.alpha < 1,
            "min_labels": isinstance(self.min_labels, int) and self.min_labels >= 2,
            "promote_margin": 0 <= self.promote_margin < 1,
            "mixture_scale": self.mixture_scale > 0,
            "min_requests": isinstance(self.min_requests, int) and self.min_requests >= 1,
            "error_rate_margin": 0 <= self.error_rate_margin < 1,
            "latency_quantile": 0 < self.latency_quantile < 1,
            "latency_ratio": self.latency_ratio >= 1,
            "latency_slack_ms": self.latency_slack_ms >= 0,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"{name}: invalid value {getattr(self, name)!r}")

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> GuardPolicy:
        """A policy from stored values: unknown names and wrong types raise ValueError naming the field."""
        known = {f.name: f for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        for name, value in values.items():
            if name not in known:
                raise ValueError(f"{name}: not a guard policy setting")
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{name}: must be a number, got {type(value).__name__}")
            default = getattr(cls(), name)
            if isinstance(default, int):
                if value != int(value):
                    raise ValueError(f"{name}: must be a whole number, got {value}")
                value = int(value)
            kwargs[name] = float(value) if isinstance(default, float) else value
        return cls(**kwargs)


@dataclass(frozen=True)
class Decision:
    """The accuracy guard's verdict and the numbers behind it (recorded in the rollout's history)."""

    outcome: Outcome
    reason: str
    mode: Literal["shadow", "canary"]
    labels: int  # paired labels (shadow) or the candidate's labels (canary)
    live_labels: int  # = labels in shadow
    difference: float | None  # mean APE candidate − live (> 0: the candidate is worse)
    relative_difference: float | None  # difference / live's mean APE
    std_error: float | None
    live_mean_ape: float | None
    p_rollback: float  # always-valid p-value of "candidate no worse than live"
    p_promote: float  # always-valid p-value of "candidate worse than live by the margin or more"
    alpha: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class OperationalCheck:
    """An operational guard: ``breached`` means roll back now."""

    name: Literal["error_rate", "latency"]
    breached: bool
    reason: str
    candidate_value: float | None
    live_value: float | None
    limit: float | None
    candidate_samples: int
    live_samples: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- the mixture likelihood ratio --------------------------------------------------------------

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def _log_phi(z: float) -> float:
    """log Φ(z), accurate in the far left tail too (where Φ underflows)."""
    if z > -30:
        return math.log(0.5 * math.erfc(-z / math.sqrt(2)))
    return -0.5 * z * z - math.log(-z) - _LOG_SQRT_2PI


def log_mixture_ratio(estimate: float, variance: float, tau: float) -> float:
    """log Λ of the one-sided normal-mixture SPRT: ``estimate`` signed towards the alternative.

    ``variance`` is the estimate's (σ²/n for a mean), ``tau`` the half-normal mixture's scale.
    """
    v = max(variance, _VARIANCE_FLOOR)
    t2 = max(tau, _TAU_FLOOR) ** 2
    z = estimate * math.sqrt(t2) / math.sqrt(v * (v + t2))
    return 0.5 * math.log(v / (v + t2)) + 0.5 * z * z + math.log(2.0) + _log_phi(z)


def _p_value(log_ratio: float) -> float:
    return 1.0 if log_ratio <= 0 else math.exp(-log_ratio)


def _variance(n: int, total: float, total_sq: float) -> float:
    mean = total / n
    return max(total_sq - n * mean * mean, 0.0) / (n - 1)


def _verdict(
    mode: Literal["shadow", "canary"],
    labels: int,
    live_labels: int,
    difference: float,
    variance: float,
    live_mean: float,
    policy: GuardPolicy,
) -> Decision:
    tau = policy.mixture_scale * live_mean
    margin = policy.promote_margin * live_mean
    log_rollback = log_mixture_ratio(difference, variance, tau)
    log_promote = log_mixture_ratio(margin - difference, variance, tau)
    threshold = math.log(1 / policy.alpha)
    if log_rollback >= threshold:
        outcome, reason = ROLLBACK, "the candidate's error is higher than live's"
    elif log_promote >= threshold:
        outcome, reason = PROMOTE, f"the candidate is not worse than live by {policy.promote_margin:.0%} or more"
    else:
        outcome, reason = WAIT, "not enough evidence yet"
    return Decision(
        outcome,
        reason,
        mode,
        labels,
        live_labels,
        difference,
        difference / live_mean if live_mean > 0 else None,
        math.sqrt(variance),
        live_mean,
        _p_value(log_rollback),
        _p_value(log_promote),
        policy.alpha,
    )


def _too_few(mode: Literal["shadow", "canary"], labels: int, live_labels: int, policy: GuardPolicy) -> Decision:
    reason = f"fewer than {policy.min_labels} labels" + (" per version" if mode == "canary" else "")
    return Decision(WAIT, reason, mode, labels, live_labels, None, None, None, None, 1.0, 1.0, policy.alpha)


def decide(stats: PairedStats | CanaryStats, policy: GuardPolicy) -> Decision:
    """Promote, roll back or wait, from shadow's paired sums or canary's per-version sums."""
    if isinstance(stats, PairedStats):
        if stats.n < policy.min_labels:
            return _too_few("shadow", stats.n, stats.n, policy)
        variance = _variance(stats.n, stats.sum_diff, stats.sum_diff_sq) / stats.n
        return _verdict(
            "shadow", stats.n, stats.n, stats.sum_diff / stats.n, variance, stats.sum_live / stats.n, policy
        )
    candidate, live = stats.candidate, stats.live
    if min(candidate.n, live.n) < policy.min_labels:
        return _too_few("canary", candidate.n, live.n, policy)
    variance = (
        _variance(candidate.n, candidate.sum_ape, candidate.sum_ape_sq) / candidate.n
        + _variance(live.n, live.sum_ape, live.sum_ape_sq) / live.n
    )
    live_mean = live.sum_ape / live.n
    return _verdict(
        "canary", candidate.n, live.n, candidate.sum_ape / candidate.n - live_mean, variance, live_mean, policy
    )


# --- operational guards ------------------------------------------------------------------------


def check_error_rate(candidate: RequestCounts, live: RequestCounts, policy: GuardPolicy) -> OperationalCheck:
    """Breached when the candidate's error rate is shown above live's + ``error_rate_margin`` (always valid).

    Rates are smoothed by one error and one success per version (Agresti–Caffo) for the variance only,
    so a window without any error still has one.
    """
    rate_c = candidate.errors / candidate.requests if candidate.requests else None
    rate_l = live.errors / live.requests if live.requests else None
    limit = (rate_l or 0.0) + policy.error_rate_margin
    if candidate.requests < policy.min_requests or rate_c is None:
        reason = f"fewer than {policy.min_requests} candidate requests"
        return OperationalCheck("error_rate", False, reason, rate_c, rate_l, limit, candidate.requests, live.requests)

    def smoothed_variance(counts: RequestCounts) -> float:
        p = (counts.errors + 1) / (counts.requests + 2)
        return p * (1 - p) / counts.requests

    variance = smoothed_variance(candidate) + (smoothed_variance(live) if live.requests else 0.0)
    log_ratio = log_mixture_ratio(rate_c - limit, variance, ERROR_RATE_TAU)
    breached = log_ratio >= math.log(1 / policy.alpha)
    reason = (
        f"error rate {rate_c:.2%} is above live's {rate_l or 0.0:.2%} + {policy.error_rate_margin:.2%} "
        f"(p {_p_value(log_ratio):.3g})"
        if breached
        else "error rate within live's + margin"
    )
    return OperationalCheck("error_rate", breached, reason, rate_c, rate_l, limit, candidate.requests, live.requests)


def check_latency(candidate: LatencyHistogram, live: LatencyHistogram, policy: GuardPolicy) -> OperationalCheck:
    """Breached when the candidate's latency quantile exceeds live's × ``latency_ratio`` + ``latency_slack_ms``."""
    n_c, n_l = candidate.count, live.count
    q_c = candidate.quantile(policy.latency_quantile)
    q_l = live.quantile(policy.latency_quantile)
    if min(n_c, n_l) < policy.min_requests or q_c is None or q_l is None:
        reason = f"fewer than {policy.min_requests} timed requests per version"
        return OperationalCheck("latency", False, reason, q_c, q_l, None, n_c, n_l)
    limit = q_l * policy.latency_ratio + policy.latency_slack_ms
    breached = q_c > limit
    name = f"p{policy.latency_quantile * 100:g}"
    reason = (
        f"{name} {q_c:.1f} ms is above live's {q_l:.1f} ms × {policy.latency_ratio:g} + {policy.latency_slack_ms:g} ms"
        if breached
        else f"{name} within live's × {policy.latency_ratio:g} + {policy.latency_slack_ms:g} ms"
    )
    return OperationalCheck("latency", breached, reason, q_c, q_l, limit, n_c, n_l)
