"""A label's share of a rollout's evidence (docs/rollouts.md, "Evidence"): free of boto3 and env.

When a label joins a captured prediction whose capture line was tagged by a rollout (``captures``'
``rollout`` object: the prediction was made while that rollout ran), the label also becomes evidence of
that rollout, ADDed to its item (``house_prices.rollout_evidence``) in the *same* transaction that claims
the label, so it counts exactly once:

* **canary**: the version that priced the house (the tag's ``arm``) gets one labelled error:
  ``RolloutEvidence.arm_label(arm, price, sale)``;
* **shadow, sampled**: the candidate's price of the same house is the shadow record written when its
  capture object was scored (``quality.shadow``), found by prediction id in the prediction's (city,
  UTC day) partition, read once per invocation (``ShadowCache``, as ``JoinCache`` reads captures):
  ``RolloutEvidence.paired_label(live, candidate, sale)``. No record yet while the prediction is younger
  than ``capture_wait``: the label is **pending** (retried by the queue, nothing claimed); older, the
  candidate's call failed or its record is lost: the label still counts for live quality, **unpaired**
  (reported), with no rollout evidence;
* anything else (not sampled in shadow, a tag this code does not know): no rollout evidence.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, NamedTuple, Protocol

from house_prices.ids import parse_prediction_id
from house_prices.naming import VERSION_PATTERN
from house_prices.rollout_evidence import ARMS, RolloutEvidence

_VERSION = re.compile(VERSION_PATTERN)


class ShadowRecord(NamedTuple):
    """A sampled live prediction of a shadow rollout, priced by the candidate too (one line of a shadow object)."""

    prediction_id: str
    candidate_version: str
    candidate_price: float
    live_version: str
    live_price: float


class EvidenceIncrement(NamedTuple):
    """What to ADD to a rollout's evidence item: (city, ``rollout#{candidate}``) ← ``increments``."""

    city: str
    candidate_version: str
    increments: Mapping[str, int | float]


class Judgement(NamedTuple):
    """A label's rollout side: the evidence to add with its claim, or wait, or counted without a pair."""

    evidence: EvidenceIncrement | None = None
    pending: bool = False
    paired: bool = False
    unpaired: bool = False


NO_ROLLOUT = Judgement()


class ShadowSource(Protocol):
    def partition(self, city: str, day: str) -> Iterable[ShadowRecord]: ...


class Priced(Protocol):
    """What a label is scored against: a captured prediction, or its house index entry (``quality.logic``
    scores it, this module judges it for a rollout); its ``rollout`` tag (if any) is read with getattr."""

    @property
    def prediction_id(self) -> str: ...
    @property
    def city(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def price(self) -> float: ...


def is_version(value: object) -> bool:
    """A registry version (``VERSION_PATTERN``): a tag naming anything else never becomes an item key."""
    return isinstance(value, str) and _VERSION.fullmatch(value) is not None


class ShadowCache:
    """The shadow records of each (city, day) partition read in this invocation, by prediction id."""

    def __init__(self, shadows: ShadowSource) -> None:
        self._shadows = shadows
        self._partitions: dict[tuple[str, str], dict[str, ShadowRecord]] = {}

    def find(self, prediction_id: str, city: str, day: str) -> ShadowRecord | None:
        key = (city, day)
        if key not in self._partitions:
            self._partitions[key] = {r.prediction_id: r for r in self._shadows.partition(city, day)}
        return self._partitions[key].get(prediction_id)

    def forget(self, city: str, day: str) -> None:
        """Drop a partition: a later read sees records written since (a pending label's retry)."""
        self._partitions.pop((city, day), None)


class RolloutLabels:
    """Turns a joined label into its rollout evidence (``judge``); partitions cached per invocation."""

    def __init__(self, shadows: ShadowSource, capture_wait: timedelta) -> None:
        self._shadows = shadows
        self.capture_wait = capture_wait
        self.cache = ShadowCache(shadows)

    def new_invocation(self) -> None:
        self.cache = ShadowCache(self._shadows)

    def judge(self, prediction: Priced, sale_price: float, now: datetime) -> Judgement:
        tag: Any = getattr(prediction, "rollout", None)
        if not isinstance(tag, Mapping) or not sale_price > 0:
            return NO_ROLLOUT
        mode, arm = tag.get("mode"), tag.get("arm")
        candidate = tag.get("candidate")
        if not is_version(candidate) or arm not in ARMS:
            return NO_ROLLOUT
        candidate = str(candidate)
        if mode == "canary":
            # A candidate-arm prediction priced by another version is not the candidate's evidence.
            if arm == "candidate" and prediction.version != candidate:
                return NO_ROLLOUT
            evidence = RolloutEvidence.arm_label(arm, prediction.price, sale_price)
            return Judgement(EvidenceIncrement(prediction.city, candidate, evidence.increments()))
        if mode != "shadow" or tag.get("sampled") is not True or arm != "live":
            return NO_ROLLOUT
        made_at, city = parse_prediction_id(prediction.prediction_id)
        day = made_at.date().isoformat()
        record = self.cache.find(prediction.prediction_id, city, day)
        if record is None or record.candidate_version != candidate:
            if now - made_at < self.capture_wait:
                self.cache.forget(city, day)
                return Judgement(pending=True)
            return Judgement(unpaired=True)
        evidence = RolloutEvidence.paired_label(prediction.price, record.candidate_price, sale_price)
        return Judgement(EvidenceIncrement(prediction.city, candidate, evidence.increments()), paired=True)
