"""Input drift per city model (docs/quality.md, "Drift"): reference bins, live counts, PSI and Jensen–Shannon.

Pure functions, standard library only (Python 3.9+: training imports this module inside SageMaker's images).

**Bins.** Training stores, per feature, the training rows' deciles as bin edges, de-duplicated (a discrete
feature such as bedrooms has fewer distinct deciles), and the training rows' count per bin. With ``k``
edges there are ``k + 1`` bins, the outer two open-ended: bin 0 is ``(-inf, edges[0])``, bin ``i`` is
``[edges[i-1], edges[i])``, the last ``[edges[-1], +inf)``; a live value outside the training range
still lands in a bin. ``bin_of`` is the one rule, used by training and by the live counts alike.

**Statistics** (natural logarithms), with ``p`` the reference proportions and ``q`` the live ones, each
proportion floored at ``EPSILON`` (1e-4) so that an empty bin gives a finite value (then renormalised):

* PSI = Σ (q − p) · ln(q / p): 0.1–0.2 is a moderate shift, above 0.2 a significant one (common practice);
* Jensen–Shannon **distance** = √JSD, JSD = ½ KL(p‖m) + ½ KL(q‖m), m = (p + q) / 2, in [0, √ln 2]: the
  form scipy's ``jensenshannon`` and Evidently return, and the one its common 0.1 threshold applies to.

A feature drifts when its PSI **or** its JS distance exceeds its threshold, and a (city, version) is
**drifting** when it has at least ``min_count`` (400) live predictions and any feature drifts. The minimum
is set by sampling noise, not by taste: against 600 training rows and 10 bins, noise alone gives a JS
distance of about √(9 · (1/n + 1/600) / 8) per feature, 0.087 at n = 200 and 0.069 at n = 400, so with 200
the 0.1 threshold flagged 61 % of unshifted cities at some check up to 500 predictions in
``bench/drift_simulation.py``, and with 400, 3–5 % at 500 predictions while still flagging every 0.5 σ shift.
"""

from __future__ import annotations

import bisect
import functools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

DECILES = tuple(k / 10 for k in range(1, 10))
EPSILON = 1e-4
DEFAULT_PSI_THRESHOLD = 0.2
DEFAULT_JS_THRESHOLD = 0.1
DEFAULT_MIN_COUNT = 400


@dataclass(frozen=True)
class Reference:
    """One feature's reference: interior bin edges (strictly increasing) and training counts per bin."""

    edges: tuple[float, ...]
    counts: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.counts) != len(self.edges) + 1:
            raise ValueError(f"{len(self.edges)} edges need {len(self.edges) + 1} counts, got {len(self.counts)}")
        if any(b <= a for a, b in zip(self.edges, self.edges[1:])):
            raise ValueError("reference edges must be strictly increasing")
        if any(c < 0 for c in self.counts):
            raise ValueError("reference counts must be ≥ 0")

    def to_json(self) -> dict[str, list[Any]]:
        return {"edges": list(self.edges), "counts": list(self.counts)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Reference:
        return cls(tuple(float(e) for e in data["edges"]), tuple(int(c) for c in data["counts"]))


def quantile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q`` quantile of sorted values, interpolated linearly (numpy's default method)."""
    if not sorted_values:
        raise ValueError("no values")
    position = q * (len(sorted_values) - 1)
    low = math.floor(position)
    high = min(low + 1, len(sorted_values) - 1)
    return float(sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low))


def reference_edges(values: Iterable[float], quantiles: Sequence[float] = DECILES) -> tuple[float, ...]:
    """The values' quantiles as strictly increasing interior edges (duplicates dropped)."""
    ordered = sorted(float(v) for v in values)
    edges: list[float] = []
    for q in quantiles:
        edge = quantile(ordered, q)
        if not edges or edge > edges[-1]:
            edges.append(edge)
    return tuple(edges)


def bin_of(value: float, edges: Sequence[float]) -> int:
    """The bin holding ``value``: 0 below ``edges[0]``, ``i`` for ``[edges[i-1], edges[i])``."""
    return bisect.bisect_right(edges, value)


def bin_counts(values: Iterable[float], edges: Sequence[float]) -> list[int]:
    counts = [0] * (len(edges) + 1)
    for value in values:
        counts[bin_of(value, edges)] += 1
    return counts


def build_reference(values: Sequence[float], quantiles: Sequence[float] = DECILES) -> Reference:
    edges = reference_edges(values, quantiles)
    return Reference(edges, tuple(bin_counts(values, edges)))


def proportions(counts: Sequence[float], epsilon: float = EPSILON) -> list[float]:
    """Counts as proportions, each floored at ``epsilon`` and renormalised to sum to 1."""
    total = float(sum(counts))
    if total <= 0:
        raise ValueError("no counts")
    # max(x, epsilon) spelled out (the same value, NaN included): a report computes this 12 times.
    floored = [epsilon if epsilon > x else x for x in [c / total for c in counts]]
    norm = sum(floored)
    return [p / norm for p in floored]


def _check(reference: Sequence[float], live: Sequence[float]) -> None:
    if len(reference) != len(live):
        raise ValueError(f"{len(reference)} reference bins but {len(live)} live bins")


def psi(reference: Sequence[float], live: Sequence[float], epsilon: float = EPSILON) -> float:
    """Population stability index of live counts against reference counts (same bins)."""
    _check(reference, live)
    return _psi(proportions(reference, epsilon), proportions(live, epsilon))


def js_distance(reference: Sequence[float], live: Sequence[float], epsilon: float = EPSILON) -> float:
    """Jensen–Shannon distance (√ of the divergence, natural log) of live against reference counts."""
    _check(reference, live)
    return _js(proportions(reference, epsilon), proportions(live, epsilon))


# Lists rather than generators inside sum(): the same terms added in the same order (so the same floats), faster.
def _psi(p: Sequence[float], q: Sequence[float]) -> float:
    log = math.log
    return sum([(qi - pi) * log(qi / pi) for pi, qi in zip(p, q)])


def _js(p: Sequence[float], q: Sequence[float]) -> float:
    log = math.log
    m = [(pi + qi) / 2 for pi, qi in zip(p, q)]
    divergence = 0.5 * sum([pi * log(pi / mi) for pi, mi in zip(p, m)]) + 0.5 * sum(
        [qi * log(qi / mi) for qi, mi in zip(q, m)]
    )
    return math.sqrt(max(divergence, 0.0))


@functools.lru_cache(maxsize=4096)
def _reference_proportions(counts: tuple[int, ...]) -> list[float]:
    # A version's reference never changes, and its drift report is recomputed after each capture object:
    # its proportions are computed once per process (callers only read the list).
    return proportions(counts)


@dataclass(frozen=True)
class Thresholds:
    psi: float = DEFAULT_PSI_THRESHOLD
    js: float = DEFAULT_JS_THRESHOLD
    min_count: int = DEFAULT_MIN_COUNT


DEFAULT_THRESHOLDS = Thresholds()


@dataclass(frozen=True)
class FeatureDrift:
    feature: str
    psi: float
    js: float
    drifting: bool


@dataclass(frozen=True)
class DriftReport:
    count: int
    features: tuple[FeatureDrift, ...]
    drifting: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "drifting": self.drifting,
            "features": {
                f.feature: {"psi": round(f.psi, 6), "js": round(f.js, 6), "drifting": f.drifting} for f in self.features
            },
        }


def drift_report(
    references: Mapping[str, Reference],
    live_counts: Mapping[str, Sequence[int]],
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
) -> DriftReport:
    """Per feature PSI and JS distance of live counts against the references; features without live counts skipped.

    ``count`` is the number of live predictions (the largest per-feature total, as every prediction
    counts once in every feature). Below ``thresholds.min_count`` nothing is flagged.
    """
    compared = []
    count = 0
    for name, reference in references.items():
        live = live_counts.get(name)
        if live is None:
            continue
        total = sum(live)
        if total <= 0 or sum(reference.counts) <= 0:
            continue
        _check(reference.counts, live)
        count = max(count, int(total))
        compared.append((name, reference, live))
    enough = count >= thresholds.min_count
    features = []
    for name, reference, live in compared:
        # psi() and js_distance() of the same proportions, each computed once (the same floats).
        p_ref, q_live = _reference_proportions(reference.counts), proportions(live)
        p, j = _psi(p_ref, q_live), _js(p_ref, q_live)
        features.append(FeatureDrift(name, p, j, enough and (p > thresholds.psi or j > thresholds.js)))
    flagged = tuple(features)
    return DriftReport(count, flagged, any(f.drifting for f in flagged))


# Live counts in the QualityTable item of a (city, version): top-level numbers (``UpdateItem ADD`` works on
# top-level attributes only), the bins being the version's own reference bins.
LIVE_COUNT = "drift_n"
LIVE_PREFIX = "drift_"
# The last computed report (``DriftReport.to_json``), a map SET after each capture object's counts.
REPORT = "drift"


def live_attribute(feature: str, index: int) -> str:
    """``drift_{FEATURE}_{bin}``: the live count of ``feature`` in reference bin ``index``."""
    return f"{LIVE_PREFIX}{feature}_{index}"


@functools.lru_cache(maxsize=256)
def _live_attributes(feature: str, bins: int) -> tuple[str, ...]:
    # The attribute names of a feature's bins, spelled once per process rather than per value counted.
    return tuple(live_attribute(feature, index) for index in range(bins))


def live_increments(rows: Iterable[Mapping[str, float]], references: Mapping[str, Reference]) -> dict[str, int]:
    """What a batch of captured feature rows adds: ``drift_n`` and one count per feature per reference bin.

    A feature missing from a row (or not a finite number) is not counted for that row; the others are.
    """
    rows = rows if isinstance(rows, (list, tuple)) else list(rows)
    increments: dict[str, int] = {}
    for name, reference in references.items():
        # One feature at a time over all rows: its edges and attribute names are looked up once.
        edges = reference.edges
        counts = [0] * (len(edges) + 1)
        for row in rows:
            value = row.get(name)
            kind = type(value)
            if kind is float:
                if not math.isfinite(value):
                    continue
            elif kind is int:
                value = float(value)
            elif isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                continue
            else:
                value = float(value)
            counts[bisect.bisect_right(edges, value)] += 1
        for attribute, counted in zip(_live_attributes(name, len(counts)), counts):
            if counted:
                increments[attribute] = counted
    if rows:
        increments[LIVE_COUNT] = len(rows)
    return increments


def live_counts(item: Mapping[str, Any], references: Mapping[str, Reference]) -> dict[str, list[int]]:
    """The live counts per feature per reference bin read back from an item (plain numbers; missing means 0)."""

    def number(value: Any) -> int:
        return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0

    counts: dict[str, list[int]] = {}
    get = item.get
    for name, reference in references.items():
        # Plain ints (what the adapter reads back) pass as they are; anything else goes through number().
        values = [get(attribute, 0) for attribute in _live_attributes(name, len(reference.counts))]
        counts[name] = [value if type(value) is int else number(value) for value in values]
    return counts


def references_from_metrics(metrics: Mapping[str, Any] | None) -> dict[str, Reference]:
    """A version's references from its recorded metrics (``reference``); {} for a model trained without them."""
    raw = (metrics or {}).get("reference")
    references: dict[str, Reference] = {}
    if not isinstance(raw, Mapping):
        return references
    for name, data in raw.items():
        try:
            references[str(name)] = Reference.from_json(data)
        except (KeyError, TypeError, ValueError):
            continue  # a malformed feature's reference is skipped; the others still count
    return references


def report_from_item(item: Mapping[str, Any]) -> dict[str, Any] | None:
    """The saved drift report of a QualityTable item as DynamoDB's typed JSON holds it (None before the first)."""
    value = _untyped(item.get(REPORT))
    return value if isinstance(value, dict) and isinstance(value.get("drifting"), bool) else None


def _untyped(value: Any) -> Any:
    if not isinstance(value, Mapping) or len(value) != 1:
        return None
    kind, inner = next(iter(value.items()))
    if kind == "M" and isinstance(inner, Mapping):
        return {str(k): _untyped(v) for k, v in inner.items()}
    if kind == "L" and isinstance(inner, list):
        return [_untyped(v) for v in inner]
    if kind == "N":
        number = float(inner)
        return int(number) if number.is_integer() and "." not in str(inner) else number
    if kind in ("S", "BOOL"):
        return inner
    return None
