"""Decide every running rollout once per scheduled tick: promote, roll back, keep waiting, or time out.

Free of boto3 and of the environment. For each rollout the registry lists (``registry.rollouts()``, one
Query of the sparse ``rollouts`` index):

1. its evidence is read (the quality table's ``rollout#{candidate}`` item, ``house_prices.rollout_evidence``);
2. the guards judge it (``house_prices.rollout_stats``: the operational guards and the always-valid
   sequential test, under the rollout's own stored policy): promote, roll back or wait;
3. promote → ``registry.promote_rollout`` (the candidate becomes live through the monotonic write);
   roll back → ``registry.end_rollout(..., "rolled_back")``; wait past the deadline →
   ``registry.end_rollout(..., "timed_out")``; wait → nothing is written.

Every write carries the numbers it was decided on (the registry's history item keeps them: the audit
trail). The decision time is the scheduled event's ``time`` (a simulated clock for demos and tests),
never this machine's clock.

Idempotent: the registry's writes are conditional, so a re-run of the same minute, or two overlapping
invocations, cannot promote twice: the loser's write is refused, which means another run (or an
operator) already ended the rollout, and is reported as ``already_ended``, not as a failure.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import Any, Literal, Protocol

from house_prices import rollout_stats
from house_prices.errors import (
    DependencyFailure,
    DomainError,
    FieldProblem,
    InvalidInput,
    NoRollout,
    PromotionRefused,
    RolloutConflict,
)
from house_prices.observability import logger
from house_prices.rollout_evidence import RolloutEvidence

ACTOR = "rollouts"
# How many rollouts' evidence one read asks for (DynamoDB BatchGetItem takes at most 100 keys).
EVIDENCE_BATCH = 100


class RolloutState(Protocol):
    """What the decider reads of ``house_prices.registry.Rollout``."""

    @property
    def candidate_version(self) -> str: ...
    @property
    def mode(self) -> str: ...
    @property
    def weight_bp(self) -> int: ...
    @property
    def started_at(self) -> str: ...
    @property
    def deadline(self) -> str: ...
    @property
    def policy(self) -> Mapping[str, Any]: ...


class RunningRollout(Protocol):
    """What the decider reads of ``house_prices.registry.LiveModel`` (a city's live item)."""

    @property
    def city(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def rollout(self) -> RolloutState | None: ...


class RolloutRegistry(Protocol):
    """``house_prices.registry.ModelRegistry``'s rollout methods (conditional writes, domain errors only)."""

    def rollouts(self) -> Sequence[RunningRollout]: ...

    def promote_rollout(
        self, city: str, candidate_version: str, actor: str, reason: str, evidence: dict[str, Any], now: datetime
    ) -> object: ...

    def end_rollout(
        self,
        city: str,
        candidate_version: str,
        outcome: str,
        actor: str,
        reason: str,
        evidence: dict[str, Any],
        now: datetime,
    ) -> None: ...


class EvidenceSource(Protocol):
    def evidence(self, keys: Sequence[tuple[str, str]]) -> Mapping[tuple[str, str], RolloutEvidence]:
        """(city, candidate version) → its evidence; a key with none yet is absent (or empty evidence)."""
        ...


@dataclass(frozen=True)
class Verdict:
    """The guards' answer for one rollout, with the numbers it rests on."""

    action: Literal["promote", "rollback", "wait"]
    reason: str
    numbers: Mapping[str, Any] = field(default_factory=dict)


# (mode, the rollout's stored policy, its evidence) → verdict; the default is house_prices.rollout_stats'.
Judge = Callable[[str, Mapping[str, Any], RolloutEvidence], Verdict]


class Outcome(Enum):
    PROMOTED = "promoted"
    ROLLED_BACK = "rolled_back"
    TIMED_OUT = "timed_out"
    WAITING = "waiting"
    # The conditional write was refused: another run or an operator ended (or changed) the rollout first.
    ALREADY_ENDED = "already_ended"
    FAILED = "failed"


@dataclass(frozen=True)
class Decision:
    city: str
    live_version: str
    candidate_version: str
    mode: str
    outcome: Outcome
    reason: str
    evidence: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "city": self.city,
            "live_version": self.live_version,
            "candidate_version": self.candidate_version,
            "mode": self.mode,
            "outcome": self.outcome.value,
            "reason": self.reason,
            "evidence": dict(self.evidence),
        }


@dataclass(frozen=True)
class Report:
    at: str
    decisions: tuple[Decision, ...] = ()

    def count(self, outcome: Outcome) -> int:
        return sum(1 for decision in self.decisions if decision.outcome is outcome)

    @property
    def in_progress(self) -> int:
        """Rollouts still running after this tick (a failed one is still running)."""
        return self.count(Outcome.WAITING) + self.count(Outcome.FAILED)

    def as_dict(self) -> dict[str, Any]:
        counts = Counter(decision.outcome.value for decision in self.decisions)
        return {
            "at": self.at,
            "rollouts": len(self.decisions),
            "in_progress": self.in_progress,
            **{outcome.value: counts.get(outcome.value, 0) for outcome in Outcome},
        }


def scheduled_time(event: Mapping[str, Any]) -> datetime:
    """The decision time: the scheduled event's ``time`` (ISO-8601, e.g. ``2026-01-01T12:00:00Z``)."""
    raw = event.get("time")
    if not isinstance(raw, str) or not raw:
        raise InvalidInput([FieldProblem("time", "is required: the scheduled event's ISO-8601 time")])
    return parse_time(raw, "time")


def parse_time(text: str, name: str) -> datetime:
    """An ISO-8601 time with its offset (``Z`` accepted) as an aware UTC datetime; InvalidInput naming ``name``."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise InvalidInput([FieldProblem(name, f"must be an ISO-8601 time with its offset, got {text!r}")])
    return moment.astimezone(UTC)


class RolloutDecider:
    def __init__(self, registry: RolloutRegistry, evidence: EvidenceSource, judge: Judge, actor: str = ACTOR) -> None:
        self._registry = registry
        self._evidence = evidence
        self._judge = judge
        self._actor = actor

    def evaluate(self, now: datetime) -> Report:
        """One tick: every running rollout decided at ``now``.

        Listing the rollouts failing raises ``DependencyFailure`` (nothing was decided). A rollout whose
        evidence or write fails is reported ``failed`` and the others are still decided; it is decided
        again on the next tick. A naive ``now`` is taken as UTC.
        """
        now = (now if now.tzinfo else now.replace(tzinfo=UTC)).astimezone(UTC)
        at = now.isoformat(timespec="seconds")
        running = [(live, live.rollout) for live in self._registry.rollouts() if live.rollout is not None]
        found = self._read_evidence([(live.city, rollout.candidate_version) for live, rollout in running])
        decisions = []
        for live, rollout in running:
            key = (live.city, rollout.candidate_version)
            evidence = found.get(key)
            if isinstance(evidence, DependencyFailure):
                decision = self._decision(live, rollout, Outcome.FAILED, evidence.message, {})
            else:
                try:
                    decision = self._decide(live, rollout, evidence or RolloutEvidence(), now, at)
                except (ValueError, ArithmeticError) as error:  # one rollout's odd numbers must not stop the others
                    decision = self._decision(live, rollout, Outcome.FAILED, f"{type(error).__name__}: {error}", {})
            _log(decision)
            decisions.append(decision)
        return Report(at, tuple(decisions))

    def _read_evidence(
        self, keys: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], RolloutEvidence | DependencyFailure]:
        found: dict[tuple[str, str], RolloutEvidence | DependencyFailure] = {}
        for start in range(0, len(keys), EVIDENCE_BATCH):
            chunk = keys[start : start + EVIDENCE_BATCH]
            try:
                found.update(self._evidence.evidence(chunk))
            except DependencyFailure as error:
                found.update({key: error for key in chunk})
        return found

    def _decide(
        self, live: RunningRollout, rollout: RolloutState, evidence: RolloutEvidence, now: datetime, at: str
    ) -> Decision:
        verdict = self._judge(rollout.mode, rollout.policy, evidence)
        deadline = _deadline(rollout)
        numbers: dict[str, Any] = recordable(
            {
                "decided_at": at,
                "mode": rollout.mode,
                "weight_bp": rollout.weight_bp,
                "started_at": rollout.started_at,
                "deadline": rollout.deadline,
                "verdict": verdict.action,
                "guards": dict(verdict.numbers),
                "evidence": evidence.summary(),
            }
        )
        if verdict.action == "promote":
            outcome, reason = Outcome.PROMOTED, verdict.reason
        elif verdict.action == "rollback":
            outcome, reason = Outcome.ROLLED_BACK, verdict.reason
        elif deadline is not None and now >= deadline:
            outcome, reason = Outcome.TIMED_OUT, f"no decision by the deadline {rollout.deadline}: {verdict.reason}"
        else:
            return self._decision(live, rollout, Outcome.WAITING, verdict.reason, numbers)
        try:
            self._write(live, rollout, outcome, reason, numbers, now)
        except (PromotionRefused, RolloutConflict, NoRollout) as refused:
            # A conditional write lost: the rollout was ended or changed since it was listed.
            return self._decision(live, rollout, Outcome.ALREADY_ENDED, f"{reason} (not written: {refused})", numbers)
        except DependencyFailure as error:
            return self._decision(live, rollout, Outcome.FAILED, f"{reason} (not written: {error.message})", numbers)
        return self._decision(live, rollout, outcome, reason, numbers)

    def _write(
        self,
        live: RunningRollout,
        rollout: RolloutState,
        outcome: Outcome,
        reason: str,
        numbers: dict[str, Any],
        now: datetime,
    ) -> None:
        """The history item is stamped ``now``, the decision time: the audit trail follows a simulated clock too."""
        city, candidate = live.city, rollout.candidate_version
        if outcome is Outcome.PROMOTED:
            self._registry.promote_rollout(city, candidate, self._actor, reason, numbers, now)
        else:
            self._registry.end_rollout(city, candidate, outcome.value, self._actor, reason, numbers, now)

    @staticmethod
    def _decision(
        live: RunningRollout, rollout: RolloutState, outcome: Outcome, reason: str, numbers: Mapping[str, Any]
    ) -> Decision:
        return Decision(live.city, live.version, rollout.candidate_version, rollout.mode, outcome, reason, numbers)


def judge(mode: str, stored_policy: Mapping[str, Any], evidence: RolloutEvidence) -> Verdict:
    """The guards of ``house_prices.rollout_stats`` under the rollout's stored policy.

    Operational first (a candidate that fails or slows down is rolled back whatever its accuracy), then
    the always-valid sequential test on the labels: paired differences in shadow mode, the two versions'
    samples in canary mode. The latency guard runs in canary mode only: there both versions answer live
    requests the same way, while shadow scores the candidate in batches off the response path, whose
    latency says nothing about a live request's. A stored policy the guards cannot read never decides:
    the rollout waits (and times out at its deadline) with the reason.
    """
    try:
        policy = rollout_stats.GuardPolicy.from_mapping(stored_policy)
    except ValueError as error:
        return Verdict("wait", f"the rollout's guard policy is invalid ({error})", {"policy": dict(stored_policy)})
    error_rate = rollout_stats.check_error_rate(evidence.candidate_requests, evidence.live_requests, policy)
    checks = [error_rate]
    if mode == "canary":
        checks.append(rollout_stats.check_latency(evidence.candidate_latency, evidence.live_latency, policy))
    stats = evidence.paired if mode == "shadow" else evidence.canary
    accuracy = rollout_stats.decide(stats, policy)
    numbers: dict[str, Any] = {
        "policy": policy.as_dict(),
        "accuracy": accuracy.as_dict(),
        **{check.name: check.as_dict() for check in checks},
    }
    breached = [check for check in checks if check.breached]
    if breached:
        return Verdict("rollback", "; ".join(check.reason for check in breached), numbers)
    return Verdict(accuracy.outcome, accuracy.reason, numbers)


def recordable(value: Any) -> Any:
    """``value`` with every float kept to 6 significant digits, what DynamoDB can store (its exponent stops at
    −130: an always-valid p-value of 1e-144 is refused) and a person reads; a non-finite float becomes None."""
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return 0.0 if abs(value) < 1e-100 else float(f"{value:.6g}")
    if isinstance(value, Mapping):
        return {str(key): recordable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [recordable(item) for item in value]
    return value


def _deadline(rollout: RolloutState) -> datetime | None:
    """The rollout's deadline; an unreadable one never times out (the registry writes it, so it is a bug)."""
    try:
        return parse_time(rollout.deadline, "deadline")
    except DomainError:
        logger.error("Rollout deadline unreadable", extra={"deadline": rollout.deadline})
        return None


def _log(decision: Decision) -> None:
    """A decision that changes something at INFO with its numbers; a waiting one at DEBUG: logged every minute for
    every running rollout, its ~2 KB line would cost more in CloudWatch Logs than the whole decider (docs/rollouts.md,
    Costs)."""
    if decision.outcome is Outcome.FAILED:
        logger.warning("Rollout decision", extra=decision.as_dict())
    elif decision.outcome is Outcome.WAITING:
        logger.debug("Rollout decision", extra=decision.as_dict())
    else:
        logger.info("Rollout decision", extra=decision.as_dict())
