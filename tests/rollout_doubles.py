"""The one home of the rollout decider tests' fakes, rollouts and evidence.

``FakeRolloutRegistry`` and ``FakeEvidence`` satisfy ``rollouts.logic``'s ``RolloutRegistry`` and
``EvidenceSource`` protocols; the registry refuses a write to a rollout that is no longer running, as the
real one's conditional writes do. ``shadow_evidence`` / ``canary_evidence`` draw labelled errors with a
fixed seed, a candidate ``worse_by`` a relative amount (negative: better); ``scheduled_event`` is the
event EventBridge sends for a rule's schedule (the shape in the Lambda developer guide).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from house_prices.errors import DependencyFailure, RolloutConflict
from house_prices.naming import target_model
from house_prices.registry import LiveModel, Rollout, RolloutMode
from house_prices.rollout_evidence import RolloutEvidence
from tests import model_versions

LIVE = "20261125T040000Z-1a2b3c4d"
CANDIDATE = "20261201T040000Z-5e6f7a8b"
STARTED_AT = datetime(2026, 12, 1, 5, 0, tzinfo=UTC)
DURATION = timedelta(days=14)
SALE_PRICE = 300_000.0


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def rollout(
    mode: RolloutMode = "shadow",
    *,
    candidate: str = CANDIDATE,
    city: str = "Chicago_IL",
    weight_bp: int = 1000,
    started_at: datetime = STARTED_AT,
    duration: timedelta = DURATION,
    policy: Mapping[str, Any] | None = None,
) -> Rollout:
    return model_versions.rollout(
        city,
        candidate,
        mode,
        weight_bp,
        started_at=iso(started_at),
        deadline=iso(started_at + duration),
        revision=1,
        policy=policy,
    )


def running(city: str = "Chicago_IL", state: Rollout | None = None, live: str = LIVE) -> LiveModel:
    """``city``'s live item with a rollout running (a shadow one by default)."""
    return LiveModel(city, live, target_model(city, live), "2026-11-25T04:00:01+00:00", state or rollout(city=city))


@dataclass
class Write:
    action: str  # "promoted" | a RolloutOutcome
    city: str
    candidate_version: str
    actor: str
    reason: str
    evidence: dict[str, Any]
    at: datetime


@dataclass
class FakeRolloutRegistry:
    """Running rollouts by city; a write ends one, and a write to one not running is refused."""

    live: dict[str, LiveModel] = field(default_factory=dict)
    writes: list[Write] = field(default_factory=list)
    fail_writes: bool = False
    fail_listing: bool = False

    @classmethod
    def of(cls, *models: LiveModel) -> FakeRolloutRegistry:
        return cls({model.city: model for model in models})

    def rollouts(self) -> list[LiveModel]:
        if self.fail_listing:
            raise DependencyFailure("DynamoDB query failed: throttled")
        return sorted((m for m in self.live.values() if m.rollout is not None), key=lambda m: m.city)

    def promote_rollout(
        self, city: str, candidate_version: str, actor: str, reason: str, evidence: dict[str, Any], now: datetime
    ) -> LiveModel:
        model = self._running(city, candidate_version)
        assert model.rollout is not None
        promoted = LiveModel(city, candidate_version, model.rollout.candidate_target_model, "now")
        self.live[city] = promoted
        self.writes.append(Write("promoted", city, candidate_version, actor, reason, evidence, now))
        return promoted

    def end_rollout(
        self,
        city: str,
        candidate_version: str,
        outcome: str,
        actor: str,
        reason: str,
        evidence: dict[str, Any],
        now: datetime,
    ) -> None:
        model = self._running(city, candidate_version)
        self.live[city] = replace(model, rollout=None)
        self.writes.append(Write(outcome, city, candidate_version, actor, reason, evidence, now))

    def _running(self, city: str, candidate_version: str) -> LiveModel:
        if self.fail_writes:
            raise DependencyFailure("DynamoDB TransactWriteItems failed: throttled")
        model = self.live.get(city)
        if model is None or model.rollout is None or model.rollout.candidate_version != candidate_version:
            raise RolloutConflict(f"{city}: no rollout of {candidate_version} running")
        return model


@dataclass
class FakeEvidence:
    """Evidence by (city, candidate version); ``failing`` cities raise DependencyFailure for their whole batch."""

    items: dict[tuple[str, str], RolloutEvidence] = field(default_factory=dict)
    failing: set[str] = field(default_factory=set)
    batches: list[list[tuple[str, str]]] = field(default_factory=list)

    def evidence(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], RolloutEvidence]:
        self.batches.append(list(keys))
        if any(city in self.failing for city, _ in keys):
            raise DependencyFailure("DynamoDB BatchGetItem failed: throttled")
        return {key: self.items[key] for key in keys if key in self.items}


def _live_errors(rng: random.Random, n: int) -> list[float]:
    """Relative errors of a live model: ~10 % APE with a spread typical of house prices, signed."""
    return [rng.gauss(0.0, 0.12) for _ in range(n)]


def shadow_evidence(n: int, worse_by: float, seed: int = 7) -> RolloutEvidence:
    """``n`` paired labels: the candidate's error is live's scaled by ``1 + worse_by`` plus a little noise."""
    rng = random.Random(seed)
    evidence = RolloutEvidence()
    for error in _live_errors(rng, n):
        candidate_error = error * (1 + worse_by) + rng.gauss(0.0, 0.01)
        evidence = evidence.merge(
            RolloutEvidence.paired_label(SALE_PRICE * (1 + error), SALE_PRICE * (1 + candidate_error), SALE_PRICE)
        )
    return evidence


def canary_evidence(
    n: int,
    worse_by: float,
    seed: int = 7,
    *,
    candidate_failures: int = 0,
    live_latency_ms: float = 20.0,
    candidate_latency_ms: float = 20.0,
) -> RolloutEvidence:
    """``n`` labels per version, and ``n`` calls per version with the given latencies and candidate failures."""
    rng = random.Random(seed)
    evidence = RolloutEvidence()
    for live_error, candidate_error in zip(_live_errors(rng, n), _live_errors(rng, n), strict=True):
        evidence = evidence.merge(RolloutEvidence.arm_label("live", SALE_PRICE * (1 + live_error), SALE_PRICE))
        evidence = evidence.merge(
            RolloutEvidence.arm_label("candidate", SALE_PRICE * (1 + candidate_error * (1 + worse_by)), SALE_PRICE)
        )
    for index in range(n):
        evidence = evidence.merge(RolloutEvidence.call("live", live_latency_ms))
        evidence = evidence.merge(
            RolloutEvidence.call("candidate", candidate_latency_ms, failed=index < candidate_failures)
        )
    return evidence


def scheduled_event(
    at: datetime | str, rule_arn: str = "arn:aws:events:us-east-1:123456789012:rule/r"
) -> dict[str, Any]:
    """What an EventBridge rule's schedule sends to its target."""
    return {
        "version": "0",
        "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": at if isinstance(at, str) else iso(at).replace("+00:00", "Z"),
        "region": "us-east-1",
        "resources": [rule_arn],
        "detail": {},
    }
