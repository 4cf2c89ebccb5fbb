"""A rollout's live evidence (docs/rollouts.md): the one definition of its item and of what one observation adds.

The evidence of a rollout is one item of the quality table (``QualityTable``: HASH ``city``, RANGE
``version``) whose ``version`` is ``rollout#{candidate version}`` (:func:`evidence_version`), so it never
collides with a version's own live-quality item. The quality function ADDs observations to it; the
decider (``functions/rollouts``) reads it every minute. Every field is a count or a sum, so evidence
merges by adding field by field, in any order (DynamoDB ``UpdateItem ADD`` on top-level attributes).

The statistics themselves are ``house_prices.rollout_stats``' (their one home); this module bundles
them per rollout and names their attributes:

* **paired** (shadow mode; ``pair_*``): n, Σd, Σd², Σ APE_live with d = APE_candidate − APE_live on
  the same labelled house (``rollout_stats.PairedStats``; APE capped at 100 %);
* **arms** (canary mode; ``live_*``, ``candidate_*``): per version n, Σ APE, Σ APE² of the labelled
  predictions it made during the rollout (``rollout_stats.ArmStats``);
* **operational**, per version: InvokeEndpoint calls and failed calls (``{arm}_requests``,
  ``{arm}_errors``: ``rollout_stats.RequestCounts``) and the calls' latency histogram
  (``{arm}_lat_{bucket}``, only non-zero buckets: ``rollout_stats.LatencyHistogram``).

Each statistic's fields become ``{prefix}{field name}`` attributes (``pair_n``, ``pair_sum_diff``,
``live_sum_ape``, ``candidate_requests``...), so a field added to a statistic is stored without a change here.

Plain Python values only here (``to_item``/``from_item``): the AttributeValue mapping is the adapters'.
Standard library only: it ships in the layer.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal, TypeVar

from house_prices.live_quality import EVIDENCE_PREFIX
from house_prices.rollout_stats import (
    LATENCY_BUCKETS,
    ArmStats,
    CanaryStats,
    LatencyHistogram,
    PairedStats,
    RequestCounts,
)

Arm = Literal["live", "candidate"]
ARMS: tuple[Arm, ...] = ("live", "candidate")
# Attribute names (top-level: DynamoDB ADDs top-level attributes only).
PAIRED_PREFIX = "pair_"
LATENCY_PREFIX = "lat_"
UPDATED_AT = "updated_at"


def evidence_version(candidate_version: str) -> str:
    """The quality table's ``version`` key of a rollout's evidence item."""
    return f"{EVIDENCE_PREFIX}{candidate_version}"


def is_evidence_version(version: str) -> bool:
    """True for an evidence item's key (readers of per-version live quality skip these items)."""
    return version.startswith(EVIDENCE_PREFIX)


def _arm_prefix(arm: Arm) -> str:
    return f"{arm}_"


@dataclass(frozen=True)
class RolloutEvidence:
    """Everything the decider knows about one rollout; ``merge`` is associative and commutative."""

    paired: PairedStats = field(default_factory=PairedStats)
    live: ArmStats = field(default_factory=ArmStats)
    candidate: ArmStats = field(default_factory=ArmStats)
    live_requests: RequestCounts = field(default_factory=RequestCounts)
    candidate_requests: RequestCounts = field(default_factory=RequestCounts)
    live_latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    candidate_latency: LatencyHistogram = field(default_factory=LatencyHistogram)

    # --- the transforms of one observation
    @classmethod
    def paired_label(cls, live_price: float, candidate_price: float, sale_price: float) -> RolloutEvidence:
        """Shadow: both versions priced the same house, and its sale price is now known."""
        return cls(paired=PairedStats.of(candidate_price, live_price, sale_price))

    @classmethod
    def arm_label(cls, arm: Arm, predicted: float, sale_price: float) -> RolloutEvidence:
        """Canary: one version priced a house during the rollout, and its sale price is now known."""
        stats = ArmStats.of(predicted, sale_price)
        return cls(live=stats) if arm == "live" else cls(candidate=stats)

    @classmethod
    def call(cls, arm: Arm, latency_ms: float | None, failed: bool = False) -> RolloutEvidence:
        """One InvokeEndpoint call of a version (a batch of rows is one call); ``latency_ms`` None: not timed."""
        if latency_ms is not None and not (math.isfinite(latency_ms) and latency_ms >= 0):
            raise ValueError(f"latency_ms must be a finite number >= 0, got {latency_ms!r}")
        requests = RequestCounts(1, int(failed))
        latency = LatencyHistogram() if latency_ms is None else LatencyHistogram.of(latency_ms)
        if arm == "live":
            return cls(live_requests=requests, live_latency=latency)
        return cls(candidate_requests=requests, candidate_latency=latency)

    def merge(self, other: RolloutEvidence) -> RolloutEvidence:
        return RolloutEvidence(
            self.paired.merge(other.paired),
            self.live.merge(other.live),
            self.candidate.merge(other.candidate),
            self.live_requests.merge(other.live_requests),
            self.candidate_requests.merge(other.candidate_requests),
            self.live_latency.merge(other.live_latency),
            self.candidate_latency.merge(other.candidate_latency),
        )

    # --- per version
    def arm(self, arm: Arm) -> ArmStats:
        return self.live if arm == "live" else self.candidate

    def requests(self, arm: Arm) -> RequestCounts:
        return self.live_requests if arm == "live" else self.candidate_requests

    def latency(self, arm: Arm) -> LatencyHistogram:
        return self.live_latency if arm == "live" else self.candidate_latency

    @property
    def canary(self) -> CanaryStats:
        return CanaryStats(candidate=self.candidate, live=self.live)

    # --- the item (plain Python values)
    def to_item(self) -> dict[str, int | float]:
        """Every attribute this evidence amounts to; latency buckets only where non-zero."""
        item: dict[str, int | float] = _sums(self.paired, PAIRED_PREFIX)
        for arm in ARMS:
            prefix = _arm_prefix(arm)
            item.update(_sums(self.arm(arm), prefix))
            item.update(_sums(self.requests(arm), prefix))
            item.update({f"{prefix}{LATENCY_PREFIX}{i}": n for i, n in enumerate(self.latency(arm).buckets) if n})
        return item

    def increments(self) -> dict[str, int | float]:
        """The non-zero attributes to ``ADD`` (the item then equals the merge of everything added)."""
        return {name: value for name, value in self.to_item().items() if value}

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> RolloutEvidence:
        """Read back what ``increments`` were added up to; a missing attribute is 0, others are ignored."""

        def latency(arm: Arm) -> LatencyHistogram:
            prefix = f"{_arm_prefix(arm)}{LATENCY_PREFIX}"
            return LatencyHistogram(tuple(int(_number(item, f"{prefix}{i}")) for i in range(LATENCY_BUCKETS)))

        live, candidate = _arm_prefix("live"), _arm_prefix("candidate")
        return cls(
            _read(PairedStats, item, PAIRED_PREFIX),
            _read(ArmStats, item, live),
            _read(ArmStats, item, candidate),
            _read(RequestCounts, item, live),
            _read(RequestCounts, item, candidate),
            latency("live"),
            latency("candidate"),
        )

    def summary(self) -> dict[str, Any]:
        """The counts a decision records next to the guards' numbers (what there was to decide on)."""
        return {
            "paired_labels": self.paired.n,
            "live_labels": self.live.n,
            "candidate_labels": self.candidate.n,
            "live_requests": self.live_requests.requests,
            "live_errors": self.live_requests.errors,
            "candidate_requests": self.candidate_requests.requests,
            "candidate_errors": self.candidate_requests.errors,
            "live_timed": self.live_latency.count,
            "candidate_timed": self.candidate_latency.count,
        }


Sums = TypeVar("Sums", PairedStats, ArmStats, RequestCounts)


def _sums(stats: PairedStats | ArmStats | RequestCounts, prefix: str) -> dict[str, int | float]:
    """A statistic's fields as attributes: ``{prefix}{field name}`` (its fields are all counts or sums)."""
    return {f"{prefix}{f.name}": getattr(stats, f.name) for f in fields(stats)}


def _read(kind: type[Sums], item: Mapping[str, Any], prefix: str) -> Sums:
    """The inverse of ``_sums``: an int field reads as int, a float one as float, a missing one as 0."""
    values: dict[str, Any] = {}
    for f in fields(kind):
        number = _number(item, f"{prefix}{f.name}")
        values[f.name] = int(number) if isinstance(f.default, int) else number
    return kind(**values)


def _number(item: Mapping[str, Any], name: str) -> float:
    value = item.get(name, 0)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def add_update(increments: Mapping[str, int | float], updated_at: str) -> tuple[str, dict[str, str], dict[str, Any]]:
    """``UpdateExpression``, its attribute names and its *plain* values for ADDing ``increments``.

    The adapter maps the values to AttributeValues its own way. ``updated_at`` is SET alongside.
    """
    names = {f"#a{i}": name for i, name in enumerate(increments)}
    values: dict[str, Any] = {f":a{i}": value for i, value in enumerate(increments.values())}
    names["#u"] = UPDATED_AT
    values[":u"] = updated_at
    adds = ", ".join(f"#a{i} :a{i}" for i in range(len(increments)))
    return (f"ADD {adds} SET #u = :u" if adds else "SET #u = :u"), names, values
