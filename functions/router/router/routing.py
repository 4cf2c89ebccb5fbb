"""Which houses of a request each side of a city's rollout prices (docs/rollouts.md, "Routing").

Pure and cheap: no I/O, no clock. ``plan`` turns a request's houses and the city's rollout (read with
the live item, so it costs no extra lookup) into at most two InvokeEndpoint calls and the capture
groups of the request. The bucketing itself (hash, stickiness, uniformity) is
``house_prices.rollout_bucket``'s; this module only applies it:

* **canary**: a house whose bucket is under the weight is priced by the candidate, the others by the
  live version; houses are grouped by side, one call per non-empty side;
* **shadow**: the live version prices every house (one call, as without a rollout); a house whose
  bucket is under the weight is marked ``sampled`` on its capture line, so the shadow scorer prices it
  with the candidate later, off the response path.

Weights of 0 and 10,000 basis points decide without hashing. ``Plan`` and ``Group`` are NamedTuples:
a frozen dataclass costs ~1 µs to build, which every request without a rollout would pay too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from house_prices.registry import Rollout
from house_prices.rollout_bucket import BASIS_POINTS, buckets

LIVE_ARM = "live"
CANDIDATE_ARM = "candidate"


class Group(NamedTuple):
    """Houses (indexes into the request, in request order) priced by one call and captured as one line."""

    indexes: Sequence[int]
    arm: str
    sampled: bool


class Plan(NamedTuple):
    """The houses each call prices (an empty side makes no call) and the capture groups of the request.

    ``groups`` are None outside a rollout: the request is captured untagged.
    """

    candidate: Sequence[int]
    live: Sequence[int]
    groups: tuple[Group, ...] | None


def plan(
    city: str,
    rollout: Rollout | None,
    rows: Sequence[Sequence[float]],
    house_ids: Sequence[str | None],
    tag_for_capture: bool = True,
) -> Plan:
    """Route a request's houses; ``tag_for_capture=False`` (no capture) skips shadow's buckets entirely."""
    count = len(rows)
    everyone = range(count)
    if rollout is None:
        return Plan((), everyone, None)
    if rollout.mode == "canary":
        chosen = _under_weight(city, rollout, rows, house_ids)
        if len(chosen) == count:
            return Plan(everyone, (), (Group(everyone, CANDIDATE_ARM, True),))
        if not chosen:
            return Plan((), everyone, (Group(everyone, LIVE_ARM, False),))
        rest = _others(chosen, count)
        return Plan(chosen, rest, (Group(chosen, CANDIDATE_ARM, True), Group(rest, LIVE_ARM, False)))
    # shadow: the live version prices everything; only the capture tag depends on the buckets.
    if not tag_for_capture:
        return Plan((), everyone, None)
    sampled = _under_weight(city, rollout, rows, house_ids)
    if len(sampled) == count or not sampled:
        return Plan((), everyone, (Group(everyone, LIVE_ARM, bool(sampled)),))
    return Plan((), everyone, (Group(sampled, LIVE_ARM, True), Group(_others(sampled, count), LIVE_ARM, False)))


def _others(chosen: Sequence[int], count: int) -> list[int]:
    taken = set(chosen)
    return [index for index in range(count) if index not in taken]


def _under_weight(
    city: str, rollout: Rollout, rows: Sequence[Sequence[float]], house_ids: Sequence[str | None]
) -> list[int]:
    """Indexes of the houses whose bucket is under the rollout's weight, in request order."""
    weight = rollout.weight_bp
    if weight <= 0:
        return []
    if weight >= BASIS_POINTS:
        return list(range(len(rows)))
    return [index for index, found in enumerate(buckets(city, rollout.salt, rows, house_ids)) if found < weight]
