"""The quality gate: may a freshly trained version replace the live one? Decided on measured errors.

model-sync measures the candidate and the live model itself, on the same held-out validation rows of
the city (``model_prep/{city}/val/``); ``metrics.json`` is recorded, never trusted. Policies
(``QUALITY_GATE``):

* ``always`` — every valid artifact goes live (newest wins), measured or not;
* ``not-worse-than-live-by:<pct>`` — the candidate's measured validation AE p50 (lower is better) may
  be at most ``pct`` % above the live version's, measured on the same rows. With nothing live the
  candidate goes live. Without validation rows nothing can be measured, so this policy holds it back.

Independently of the policy, an artifact is rejected for good when its ``metrics.json`` lists
features other than ``schema.FEATURE_NAMES`` or reports a validation AE p50 that disagrees with the
measured one by more than ``REPORTED_TOLERANCE``: such an artifact was trained on other data or lies.
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
# Relative gap allowed between a reported and a measured AE p50. Training measures the same rows
# with the same packed forest, so an honest artifact agrees to the last digit; the slack covers
# rounding by other training code.
REPORTED_TOLERANCE = 0.01


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


@dataclass(frozen=True)
class Measured:
    """A model's errors on the city's validation rows, measured by model-sync."""

    ae_p50: float
    rows: int
    metrics: Mapping[str, Any]


def reported_ae_p50(metrics: Mapping[str, Any] | None) -> float | None:
    """The artifact's own claim, or None when missing or not a finite non-negative number."""
    validation = (metrics or {}).get("validation")
    value = validation.get("ae_p50") if isinstance(validation, Mapping) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        value = float(value)
    except OverflowError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def recorded_ae_p50(metrics: Mapping[str, Any] | None) -> float | None:
    """What an operator should read for a registered version: the measured AE p50, else the reported one."""
    measured = (metrics or {}).get("measured")
    value = reported_ae_p50(measured) if isinstance(measured, Mapping) else None
    return reported_ae_p50(metrics) if value is None else value


def metrics_problem(metrics: Mapping[str, Any]) -> str | None:
    """Why a candidate's metrics.json makes it unservable (permanent), or None."""
    features = metrics.get("features")
    if features is None:
        return "metrics.json has no 'features' list, so its column order cannot be checked"
    if not isinstance(features, list) or features != list(FEATURE_NAMES):
        return f"metrics.json features {features!r:.300} differ from the serving order {list(FEATURE_NAMES)!r}"
    if reported_ae_p50(metrics) is None:
        return f"metrics.json lacks a finite non-negative {METRIC}"
    return None


def disagreement(reported: Mapping[str, Any], measured: Measured) -> str | None:
    """Why the reported error cannot be believed, or None when it matches the measured one."""
    claim = reported_ae_p50(reported)
    if claim is None:
        return f"metrics.json lacks a finite non-negative {METRIC}"
    allowed = REPORTED_TOLERANCE * max(claim, measured.ae_p50)
    if abs(claim - measured.ae_p50) <= allowed:
        return None
    return (
        f"metrics.json reports {METRIC}={claim:g} but model-sync measured {measured.ae_p50:g} on "
        f"{measured.rows} validation rows (tolerance {REPORTED_TOLERANCE:.0%}): trained on other data, or untrue"
    )


def decide(
    policy: GatePolicy,
    candidate: Measured | None,
    live: Measured | None,
    *,
    has_live: bool,
    unmeasured_reason: str = "",
) -> GateDecision:
    """``candidate``/``live`` are None when they could not be measured (``unmeasured_reason`` says why)."""
    if policy.mode == "always":
        suffix = f" ({METRIC} {candidate.ae_p50:g} measured)" if candidate else f"; not measured: {unmeasured_reason}"
        return GateDecision(True, f"gate 'always'{suffix}")
    if candidate is None:
        return GateDecision(
            False, f"held back: {unmeasured_reason}; only the 'always' gate can promote without validation rows"
        )
    if not has_live:
        return GateDecision(True, f"no live version; measured {METRIC}={candidate.ae_p50:g}")
    if live is None:
        return GateDecision(
            True, f"live version could not be measured ({unmeasured_reason}); candidate {candidate.ae_p50:g}"
        )
    ceiling = live.ae_p50 * (1 + policy.tolerance_pct / 100)
    comparison = (
        f"measured {METRIC} {candidate.ae_p50:g} vs live {live.ae_p50:g} on the same {candidate.rows} rows "
        f"(limit {ceiling:g}, {policy})"
    )
    if candidate.ae_p50 <= ceiling:
        return GateDecision(True, f"passed: {comparison}")
    return GateDecision(False, f"held back: {comparison}")
