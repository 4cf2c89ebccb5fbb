"""Live quality (docs/quality.md): mergeable error aggregates per (city, version): sums and log-spaced histograms.

Every field is a count or a sum, so two aggregates merge by adding field by field, in any order and
any grouping: DynamoDB's ``UpdateItem ADD`` on top-level attributes applies one label's increments,
nothing is ever rescanned. The medians come from fixed histograms whose bucket edges never change
(changing them would need a new attribute prefix):

* absolute percentage error (APE = |predicted − sale| / sale): ``APE_PER_DECADE`` buckets per decade
  from 0.01 % to 1000 %, plus one below and one above;
* absolute error in dollars (AE, the figure the quality gate measured offline as
  ``validation.ae_p50``): the same spacing from $1 to $10M, plus one below and one above.

A median read from a bucket is interpolated log-linearly inside it, so it is off by at most one
bucket's width: a factor 10^(1/20) ≈ 1.122 (±12 %), whatever the number of labels.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import compress
from typing import Any

PER_DECADE = 20


def log_edges(low: float, high: float, per_decade: int = PER_DECADE) -> tuple[float, ...]:
    """Edges ``low·10^(k/per_decade)`` up to ``high`` inclusive: bucket 0 is [0, low), the last ≥ high."""
    decades = round(math.log10(high / low))
    return tuple(low * 10 ** (k / per_decade) for k in range(decades * per_decade + 1))


APE_EDGES = log_edges(1e-4, 10.0)
AE_EDGES = log_edges(1.0, 1e7)
APE_BUCKETS = len(APE_EDGES) + 1
AE_BUCKETS = len(AE_EDGES) + 1
# DynamoDB attribute names (top-level: ADD works on top-level attributes only).
COUNT = "n"
ABS_SUM = "abs_sum"
SIGNED_SUM = "signed_sum"
APE_PREFIX = "ape_"
AE_PREFIX = "ae_"
# Each bucket's attribute name, and the (histogram, index) it stands for: spelled once, not per label.
_APE_NAMES = tuple(f"{APE_PREFIX}{i}" for i in range(APE_BUCKETS))
_AE_NAMES = tuple(f"{AE_PREFIX}{i}" for i in range(AE_BUCKETS))
_BUCKET_SLOTS = {
    **{name: (0, i) for i, name in enumerate(_APE_NAMES)},
    **{name: (1, i) for i, name in enumerate(_AE_NAMES)},
}


def bucket_of(value: float, edges: Sequence[float]) -> int:
    """The bucket holding ``value`` ≥ 0: 0 below ``edges[0]``, ``i`` for [edges[i-1], edges[i])."""
    return bisect.bisect_right(edges, value)


def histogram_quantile(buckets: Sequence[int], edges: Sequence[float], q: float = 0.5) -> float | None:
    """The ``q`` quantile of the values counted in ``buckets`` (None when empty), interpolated log-linearly."""
    total = sum(buckets)
    if total <= 0:
        return None
    rank = q * total
    seen = 0
    for index, count in enumerate(buckets):
        if count <= 0:
            continue
        if seen + count >= rank:
            share = (rank - seen) / count
            if index == 0:
                return edges[0] * share
            if index == len(edges):
                return edges[-1]
            low, high = edges[index - 1], edges[index]
            return low * (high / low) ** share
        seen += count
    return edges[-1]


@dataclass(frozen=True)
class Aggregate:
    """The errors of a set of labelled predictions; ``merge`` is associative and commutative."""

    count: int = 0
    abs_error_sum: float = 0.0
    signed_error_sum: float = 0.0  # predicted − sale: > 0 means the model prices too high
    ape_buckets: tuple[int, ...] = field(default=(0,) * APE_BUCKETS)
    ae_buckets: tuple[int, ...] = field(default=(0,) * AE_BUCKETS)

    @classmethod
    def of(cls, predicted: float, sale_price: float) -> Aggregate:
        """One labelled prediction (``sale_price`` > 0, both finite)."""
        error = predicted - sale_price
        ape = [0] * APE_BUCKETS
        ape[bucket_of(abs(error) / sale_price, APE_EDGES)] = 1
        ae = [0] * AE_BUCKETS
        ae[bucket_of(abs(error), AE_EDGES)] = 1
        return cls(1, abs(error), error, tuple(ape), tuple(ae))

    def merge(self, other: Aggregate) -> Aggregate:
        return Aggregate(
            self.count + other.count,
            self.abs_error_sum + other.abs_error_sum,
            self.signed_error_sum + other.signed_error_sum,
            tuple(a + b for a, b in zip(self.ape_buckets, other.ape_buckets, strict=True)),
            tuple(a + b for a, b in zip(self.ae_buckets, other.ae_buckets, strict=True)),
        )

    @property
    def mae(self) -> float | None:
        return self.abs_error_sum / self.count if self.count else None

    @property
    def bias(self) -> float | None:
        return self.signed_error_sum / self.count if self.count else None

    @property
    def median_ape(self) -> float | None:
        return histogram_quantile(self.ape_buckets, APE_EDGES)

    @property
    def median_ae(self) -> float | None:
        return histogram_quantile(self.ae_buckets, AE_EDGES)

    def increments(self) -> dict[str, int | float]:
        """The non-zero attributes to ``ADD`` (the item then equals the merge of everything added)."""
        out: dict[str, int | float] = {
            COUNT: self.count,
            ABS_SUM: self.abs_error_sum,
            SIGNED_SUM: self.signed_error_sum,
        }
        # The non-zero buckets' names and counts, picked in C (a label fills one bucket of each of 262).
        out.update(zip(compress(_APE_NAMES, self.ape_buckets), filter(None, self.ape_buckets), strict=True))
        out.update(zip(compress(_AE_NAMES, self.ae_buckets), filter(None, self.ae_buckets), strict=True))
        return out

    @classmethod
    def from_attributes(cls, item: Mapping[str, Any]) -> Aggregate:
        """Read back what ``increments`` were added up to (plain Python numbers; missing means 0)."""

        def number(value: Any) -> float:
            return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0

        # One pass over the item's attributes (a few dozen) rather than a lookup per bucket (262).
        buckets: tuple[list[int], list[int]] = ([0] * APE_BUCKETS, [0] * AE_BUCKETS)
        for name, value in item.items():
            slot = _BUCKET_SLOTS.get(name)
            if slot is not None:
                buckets[slot[0]][slot[1]] = int(number(value))
        return cls(
            int(number(item.get(COUNT, 0))),
            number(item.get(ABS_SUM, 0)),
            number(item.get(SIGNED_SUM, 0)),
            tuple(buckets[0]),
            tuple(buckets[1]),
        )


@dataclass(frozen=True)
class QualitySummary:
    """What ``GET /locations/{city}`` and ``ops quality`` show for one (city, version)."""

    city: str
    version: str
    count: int
    mae: float | None
    median_ape: float | None
    bias: float | None
    median_ae: float | None
    offline_ae_p50: float | None

    @property
    def live_vs_offline(self) -> float | None:
        """Live median absolute error over the gate's measured one: 1 as measured, 2 twice as bad."""
        if self.median_ae is None or not self.offline_ae_p50:
            return None
        return self.median_ae / self.offline_ae_p50

    @classmethod
    def of(cls, city: str, version: str, aggregate: Aggregate, offline_ae_p50: float | None) -> QualitySummary:
        return cls(
            city,
            version,
            aggregate.count,
            aggregate.mae,
            aggregate.median_ape,
            aggregate.bias,
            aggregate.median_ae,
            offline_ae_p50,
        )

    def as_dict(self) -> dict[str, Any]:
        def rounded(value: float | None, digits: int) -> float | None:
            return None if value is None else round(value, digits)

        return {
            "version": self.version,
            "count": self.count,
            "mae": rounded(self.mae, 2),
            "median_ape": rounded(self.median_ape, 4),
            "bias": rounded(self.bias, 2),
            "median_ae": rounded(self.median_ae, 2),
            "offline_ae_p50": rounded(self.offline_ae_p50, 2),
            "live_vs_offline": rounded(self.live_vs_offline, 3),
        }


# The quality table's item (template.yaml QualityTable): key (city, version), the aggregate's
# attributes, the gate's offline figure of the version, and whether the version is degraded.
CITY = "city"
VERSION = "version"
# The ``version`` key of a rollout's evidence item starts so (``house_prices.rollout_evidence``): every real
# version starts with its UTC year, so ``version < EVIDENCE_PREFIX`` selects versions only.
EVIDENCE_PREFIX = "rollout#"
OFFLINE = "offline_ae_p50"
UPDATED_AT = "updated_at"
DEGRADED = "degraded"
DEFAULT_DEGRADED_RATIO = 1.5
# The live median is read from a histogram (±12 %) of few labels: below ~50 its sampling noise alone
# (a median's standard error is ~1.25 σ/√n) can cross 1.5 × for a model that errs as it did offline.
DEFAULT_DEGRADED_MIN_COUNT = 50


@dataclass(frozen=True)
class DegradationRule:
    """A (city, version) is **degraded** when it has at least ``min_count`` labels and its live median
    absolute error exceeds ``ratio`` × the gate's offline one (``QualitySummary.live_vs_offline``)."""

    ratio: float = DEFAULT_DEGRADED_RATIO
    min_count: int = DEFAULT_DEGRADED_MIN_COUNT

    def applies(self, summary: QualitySummary) -> bool:
        ratio = summary.live_vs_offline
        return summary.count >= self.min_count and ratio is not None and ratio > self.ratio


DEFAULT_DEGRADATION = DegradationRule()


def summary_from_item(item: Mapping[str, Mapping[str, Any]]) -> QualitySummary:
    """A quality table item as DynamoDB's low-level API returns it (``{"n": {"N": "3"}, ...}``) → summary."""
    plain: dict[str, Any] = {}
    for name, attribute in item.items():
        if "N" in attribute:
            plain[name] = float(attribute["N"])
        elif "S" in attribute:
            plain[name] = attribute["S"]
    offline = plain.get(OFFLINE)
    return QualitySummary.of(
        str(plain.get(CITY, "")),
        str(plain.get(VERSION, "")),
        Aggregate.from_attributes(plain),
        offline if isinstance(offline, float) else None,
    )
