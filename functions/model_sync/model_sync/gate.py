"""The quality gate: may a freshly trained version replace the live one?

Policies (``QUALITY_GATE``):

* ``always`` — every valid artifact goes live (newest wins);
* ``not-worse-than-live-by:<pct>`` — the candidate's validation AE p50 (lower is better) may be at
  most ``pct`` % above the live version's. With no live version (or a live version without usable
  metrics) the candidate goes live.

Independently of the policy, an artifact whose ``features`` differ from ``schema.FEATURE_NAMES``
(names or order) is rejected for good: the router sends CSV columns in that order, so such a model
would silently predict garbage. So is one pickled by a scikit-learn minor version other than the
endpoint's (``SERVING_SKLEARN_VERSION``): the container could not load it, and every request would
fail with a ModelError once it went live.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from house_prices.schema import FEATURE_NAMES

_NOT_WORSE = re.compile(r"not-worse-than-live-by:(?P<pct>\d+(\.\d+)?)")
METRIC = "validation.ae_p50"


@dataclass(frozen=True)
class GatePolicy:
    mode: str  # "always" | "not-worse-than-live-by"
    tolerance_pct: float = 0.0

    @classmethod
    def parse(cls, text: str) -> GatePolicy:
        value = text.strip()
        if value == "always":
            return cls("always")
        match = _NOT_WORSE.fullmatch(value)
        if match:
            pct = float(match["pct"])
            if math.isfinite(pct):
                return cls("not-worse-than-live-by", pct)
        raise ValueError(
            f"QUALITY_GATE={text!r} is not a policy; use 'always' or 'not-worse-than-live-by:<pct>' (e.g. ':5')"
        )

    def __str__(self) -> str:
        return self.mode if self.mode == "always" else f"{self.mode}:{self.tolerance_pct:g}"


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reason: str


def ae_p50(metrics: Mapping[str, Any] | None) -> float | None:
    """The gate metric, or None when it is missing or not a finite non-negative number."""
    validation = (metrics or {}).get("validation")
    value = validation.get("ae_p50") if isinstance(validation, Mapping) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) and value >= 0 else None


def minor_version(version: str) -> str:
    """``1.4.2`` -> ``1.4``: pickles are compatible within a scikit-learn minor version at best."""
    return ".".join(version.strip().split(".")[:2])


def metrics_problem(metrics: Mapping[str, Any], serving_sklearn: str | None = None) -> str | None:
    """Why a candidate's metrics.json makes it unservable (permanent), or None."""
    if serving_sklearn:
        versions = metrics.get("versions")
        trained = versions.get("sklearn") if isinstance(versions, Mapping) else None
        if not isinstance(trained, str) or minor_version(trained) != minor_version(serving_sklearn):
            return (
                f"trained with scikit-learn {trained!r} but the endpoint serves {serving_sklearn}: "
                "a pickle only loads on the scikit-learn version that wrote it"
            )
    features = metrics.get("features")
    if features is None:
        return "metrics.json has no 'features' list, so its column order cannot be checked"
    if not isinstance(features, list) or features != list(FEATURE_NAMES):
        return f"metrics.json features {features!r} differ from the serving order {list(FEATURE_NAMES)!r}"
    if ae_p50(metrics) is None:
        return f"metrics.json lacks a finite non-negative {METRIC}"
    return None


def decide(policy: GatePolicy, candidate: Mapping[str, Any], live: Mapping[str, Any] | None) -> GateDecision:
    """Compare candidate metrics with the live version's (None when nothing is live)."""
    candidate_p50 = ae_p50(candidate)
    if candidate_p50 is None:
        return GateDecision(False, f"candidate has no usable {METRIC}")
    if policy.mode == "always":
        return GateDecision(True, "gate 'always'")
    if live is None:
        return GateDecision(True, f"no live version; {METRIC}={candidate_p50:g}")
    live_p50 = ae_p50(live)
    if live_p50 is None:
        return GateDecision(True, f"live version has no usable {METRIC}; candidate {candidate_p50:g}")
    ceiling = live_p50 * (1 + policy.tolerance_pct / 100)
    comparison = f"{METRIC} {candidate_p50:g} vs live {live_p50:g} (limit {ceiling:g}, {policy})"
    if candidate_p50 <= ceiling:
        return GateDecision(True, f"passed: {comparison}")
    return GateDecision(False, f"held back: {comparison}")
