"""rollouts.logic: each running rollout promoted, rolled back, kept waiting or timed out, with in-memory fakes."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import pytest

from house_prices.errors import InvalidInput
from rollouts.logic import EVIDENCE_BATCH, Outcome, RolloutDecider, Verdict, judge, recordable, scheduled_time
from tests.rollout_doubles import (
    CANDIDATE,
    DURATION,
    LIVE,
    STARTED_AT,
    FakeEvidence,
    FakeRolloutRegistry,
    canary_evidence,
    rollout,
    running,
    scheduled_event,
    shadow_evidence,
)

NOW = STARTED_AT + timedelta(days=1)
KEY = ("Chicago_IL", CANDIDATE)


def decider(registry: FakeRolloutRegistry, evidence: FakeEvidence) -> RolloutDecider:
    return RolloutDecider(registry, evidence, judge)


def test_a_better_shadow_candidate_is_promoted_with_its_numbers() -> None:
    # Given a shadow rollout whose candidate errs 10 % less than live on 400 paired labels
    registry = FakeRolloutRegistry.of(running())
    evidence = FakeEvidence({KEY: shadow_evidence(400, worse_by=-0.10)})
    # When the decider runs
    report = decider(registry, evidence).evaluate(NOW)
    # Then the candidate is promoted through the registry, by the decider, with the numbers it rests on
    [write] = registry.writes
    assert (write.action, write.city, write.candidate_version, write.actor) == ("promoted", *KEY, "rollouts")
    assert write.evidence["verdict"] == "promote"
    assert write.evidence["evidence"]["paired_labels"] == 400
    assert write.evidence["guards"]["accuracy"]["outcome"] == "promote"
    assert write.evidence["guards"]["accuracy"]["p_promote"] <= 0.05
    assert write.evidence["decided_at"] == "2026-12-02T05:00:00+00:00"
    assert write.reason == write.evidence["guards"]["accuracy"]["reason"]
    # And the history is stamped with the decision time (the simulated clock), not the machine's
    assert write.at == NOW
    # And the report counts it
    assert [d.outcome for d in report.decisions] == [Outcome.PROMOTED]
    assert report.count(Outcome.PROMOTED) == 1
    assert report.in_progress == 0
    assert report.decisions[0].live_version == LIVE


def test_a_worse_shadow_candidate_is_rolled_back() -> None:
    registry = FakeRolloutRegistry.of(running())
    evidence = FakeEvidence({KEY: shadow_evidence(200, worse_by=0.10)})
    report = decider(registry, evidence).evaluate(NOW)
    [write] = registry.writes
    assert write.action == "rolled_back"
    assert write.evidence["guards"]["accuracy"]["p_rollback"] <= 0.05
    assert "higher than live" in write.reason
    assert report.count(Outcome.ROLLED_BACK) == 1


def test_too_few_labels_waits_and_writes_nothing() -> None:
    # Given 10 labels (the default policy wants 50)
    registry = FakeRolloutRegistry.of(running())
    evidence = FakeEvidence({KEY: shadow_evidence(10, worse_by=0.5)})
    report = decider(registry, evidence).evaluate(NOW)
    assert registry.writes == []
    [decision] = report.decisions
    assert decision.outcome is Outcome.WAITING
    assert "fewer than 50 labels" in decision.reason
    assert report.in_progress == 1


def test_a_rollout_without_any_evidence_item_waits() -> None:
    registry = FakeRolloutRegistry.of(running())
    report = decider(registry, FakeEvidence()).evaluate(NOW)
    assert [d.outcome for d in report.decisions] == [Outcome.WAITING]
    assert report.decisions[0].evidence["evidence"]["paired_labels"] == 0


@pytest.mark.parametrize(("after", "outcome"), [(-1, Outcome.WAITING), (0, Outcome.TIMED_OUT), (60, Outcome.TIMED_OUT)])
def test_the_deadline_ends_a_rollout_that_reached_no_decision(after: int, outcome: Outcome) -> None:
    # Given a rollout that never gathered enough labels, evaluated around its deadline
    registry = FakeRolloutRegistry.of(running())
    evidence = FakeEvidence({KEY: shadow_evidence(10, worse_by=0.0)})
    report = decider(registry, evidence).evaluate(STARTED_AT + DURATION + timedelta(seconds=after))
    # Then it waits up to the deadline and is timed out from then on, with the reason
    assert [d.outcome for d in report.decisions] == [outcome]
    if outcome is Outcome.TIMED_OUT:
        [write] = registry.writes
        assert write.action == "timed_out"
        assert write.reason.startswith("no decision by the deadline 2026-12-15T05:00:00+00:00")
        assert report.count(Outcome.TIMED_OUT) == 1
    else:
        assert registry.writes == []


def test_evidence_decides_even_at_the_deadline() -> None:
    # Given a clear rollback verdict on the deadline's tick: the evidence wins over the time limit
    registry = FakeRolloutRegistry.of(running())
    evidence = FakeEvidence({KEY: shadow_evidence(200, worse_by=0.10)})
    decider(registry, evidence).evaluate(STARTED_AT + DURATION)
    assert [w.action for w in registry.writes] == ["rolled_back"]


def test_a_canary_candidate_that_fails_is_rolled_back_on_its_error_rate() -> None:
    # Given a canary whose candidate fails 100 of 1000 calls while live fails none, and is as accurate as live
    state = rollout("canary")
    registry = FakeRolloutRegistry.of(running(state=state))
    evidence = FakeEvidence({KEY: canary_evidence(1000, worse_by=0.0, candidate_failures=100)})
    report = decider(registry, evidence).evaluate(NOW)
    [write] = registry.writes
    assert write.action == "rolled_back"
    assert "error rate" in write.reason
    assert write.evidence["guards"]["error_rate"]["breached"] is True
    assert report.count(Outcome.ROLLED_BACK) == 1


def test_a_slow_canary_candidate_is_rolled_back_on_latency() -> None:
    registry = FakeRolloutRegistry.of(running(state=rollout("canary")))
    evidence = FakeEvidence({KEY: canary_evidence(200, worse_by=0.0, candidate_latency_ms=120.0)})
    decider(registry, evidence).evaluate(NOW)
    [write] = registry.writes
    assert write.action == "rolled_back"
    assert write.evidence["guards"]["latency"]["breached"] is True
    assert "p99" in write.reason


def test_shadow_latency_is_not_a_guard() -> None:
    # Given a shadow candidate scored in slow batches off the response path, as accurate as live is
    verdict = judge("shadow", {}, canary_evidence(200, worse_by=0.0, candidate_latency_ms=500.0))
    # Then its batch latency does not roll it back (it says nothing about a live request's)
    assert "latency" not in verdict.numbers
    assert verdict.action == "wait"
    assert "error_rate" in verdict.numbers


def test_a_better_canary_candidate_is_promoted() -> None:
    registry = FakeRolloutRegistry.of(running(state=rollout("canary")))
    evidence = FakeEvidence({KEY: canary_evidence(3000, worse_by=-0.30)})
    decider(registry, evidence).evaluate(NOW)
    assert [w.action for w in registry.writes] == ["promoted"]


def test_the_rollouts_own_policy_is_applied() -> None:
    # Given 60 labels: enough for the default minimum (50), not for this rollout's (500)
    strict = rollout(policy={"min_labels": 500})
    registry = FakeRolloutRegistry.of(running(state=strict))
    evidence = FakeEvidence({KEY: shadow_evidence(60, worse_by=0.3)})
    report = decider(registry, evidence).evaluate(NOW)
    assert registry.writes == []
    assert "fewer than 500 labels" in report.decisions[0].reason
    assert report.decisions[0].evidence["guards"]["policy"]["min_labels"] == 500


def test_an_unreadable_policy_never_decides_but_still_times_out() -> None:
    bad = rollout(policy={"alpha": "five percent"})
    registry = FakeRolloutRegistry.of(running(state=bad))
    evidence = FakeEvidence({KEY: shadow_evidence(400, worse_by=0.3)})
    waiting = decider(registry, evidence).evaluate(NOW)
    assert registry.writes == []
    assert "guard policy is invalid" in waiting.decisions[0].reason
    assert "alpha" in waiting.decisions[0].reason
    decider(registry, evidence).evaluate(STARTED_AT + DURATION)
    assert [w.action for w in registry.writes] == ["timed_out"]


def test_a_rerun_of_the_same_minute_does_not_promote_twice() -> None:
    # Given a tick that promoted the candidate
    registry = FakeRolloutRegistry.of(running())
    evidence = FakeEvidence({KEY: shadow_evidence(400, worse_by=-0.10)})
    decider(registry, evidence).evaluate(NOW)
    # When the same minute runs again
    again = decider(registry, evidence).evaluate(NOW)
    # Then there is nothing left to decide, and one promotion in all
    assert again.decisions == ()
    assert [w.action for w in registry.writes] == ["promoted"]


def test_a_write_refused_by_the_registry_is_reported_as_already_ended() -> None:
    # Given an overlapping run that listed the rollout before another run (or an operator) ended it
    registry = FakeRolloutRegistry.of(running())
    stale = registry.rollouts()
    registry.end_rollout("Chicago_IL", CANDIDATE, "aborted", "operator", "by hand", {}, NOW)

    class StaleListing(FakeRolloutRegistry):
        def rollouts(self) -> list[Any]:
            return stale

    overlapping = StaleListing(registry.live, registry.writes)
    evidence = FakeEvidence({KEY: shadow_evidence(400, worse_by=-0.10)})
    # When it decides to promote
    report = decider(overlapping, evidence).evaluate(NOW)
    # Then the conditional write refuses, and the decision says so (not promoted, not failed)
    [decision] = report.decisions
    assert decision.outcome is Outcome.ALREADY_ENDED
    assert "not written" in decision.reason
    assert report.count(Outcome.PROMOTED) == 0
    assert report.in_progress == 0
    assert [w.action for w in registry.writes] == ["aborted"]


def test_one_rollouts_failure_does_not_stop_the_others() -> None:
    # Given two rollouts, the registry failing writes: both fail, and both stay in progress
    registry = FakeRolloutRegistry.of(running("Chicago_IL"), running("Dallas_TX"))
    registry.fail_writes = True
    evidence = FakeEvidence(
        {
            KEY: shadow_evidence(400, worse_by=-0.10),
            ("Dallas_TX", CANDIDATE): shadow_evidence(400, worse_by=-0.10),
        }
    )
    report = decider(registry, evidence).evaluate(NOW)
    assert [d.outcome for d in report.decisions] == [Outcome.FAILED, Outcome.FAILED]
    assert all("throttled" in d.reason for d in report.decisions)
    assert report.in_progress == 2


def test_an_evidence_read_failure_fails_that_batch_only() -> None:
    # Given more rollouts than one evidence read takes, and the read of the first batch failing
    cities = [f"City_{index:03d}" for index in range(EVIDENCE_BATCH + 1)]
    registry = FakeRolloutRegistry.of(*(running(city, rollout(city=city)) for city in cities))
    evidence = FakeEvidence({(city, CANDIDATE): shadow_evidence(400, worse_by=0.10) for city in cities})
    evidence.failing = {cities[0]}
    report = decider(registry, evidence).evaluate(NOW)
    # Then one read per 100 rollouts, the first batch's rollouts failed, the last one decided
    assert [len(batch) for batch in evidence.batches] == [EVIDENCE_BATCH, 1]
    outcomes = [d.outcome for d in report.decisions]
    assert outcomes == [Outcome.FAILED] * EVIDENCE_BATCH + [Outcome.ROLLED_BACK]
    assert [w.city for w in registry.writes] == [cities[-1]]


def test_a_registry_listing_failure_propagates() -> None:
    from house_prices.errors import DependencyFailure

    registry = FakeRolloutRegistry(fail_listing=True)
    with pytest.raises(DependencyFailure):
        decider(registry, FakeEvidence()).evaluate(NOW)


def test_a_custom_judge_is_called_with_the_mode_policy_and_evidence() -> None:
    seen: list[tuple[str, Any, int]] = []

    def recording_judge(mode: str, policy: Any, evidence: Any) -> Verdict:
        seen.append((mode, dict(policy), evidence.paired.n))
        return Verdict("wait", "judged", {"x": 1})

    registry = FakeRolloutRegistry.of(running(state=rollout(policy={"alpha": 0.01})))
    evidence = FakeEvidence({KEY: shadow_evidence(5, worse_by=0.0)})
    report = RolloutDecider(registry, evidence, recording_judge).evaluate(NOW)
    assert seen == [("shadow", {"alpha": 0.01}, 5)]
    assert report.decisions[0].evidence["guards"] == {"x": 1}


def test_report_as_dict_counts_every_outcome() -> None:
    registry = FakeRolloutRegistry.of(running("A"), running("B"), running("C"))
    evidence = FakeEvidence(
        {("A", CANDIDATE): shadow_evidence(400, worse_by=-0.1), ("B", CANDIDATE): shadow_evidence(200, worse_by=0.1)}
    )
    summary = decider(registry, evidence).evaluate(NOW).as_dict()
    assert summary == {
        "at": "2026-12-02T05:00:00+00:00",
        "rollouts": 3,
        "in_progress": 1,
        "promoted": 1,
        "rolled_back": 1,
        "timed_out": 0,
        "waiting": 1,
        "already_ended": 0,
        "failed": 0,
    }


def test_the_decision_time_is_the_scheduled_events_time() -> None:
    assert scheduled_time(scheduled_event("2026-12-02T05:00:00Z")) == NOW
    assert scheduled_time({"time": "2026-12-02T06:00:00+01:00"}) == NOW


@pytest.mark.parametrize(
    "event", [{}, {"time": ""}, {"time": "yesterday"}, {"time": "2026-12-02T05:00:00"}, {"time": 5}]
)
def test_an_event_without_a_usable_time_is_refused_naming_the_field(event: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput) as raised:
        scheduled_time(event)
    assert [p.field for p in raised.value.problems] == ["time"]


def test_recorded_numbers_are_ones_dynamodb_stores_and_people_read() -> None:
    # DynamoDB's numbers stop at 1e-130; an always-valid p-value can be far smaller
    assert recordable({"p": 2.08e-144, "x": [1 / 3, math.inf], "n": 400, "s": "a"}) == {
        "p": 0.0,
        "x": [0.333333, None],
        "n": 400,
        "s": "a",
    }


def test_a_judge_that_fails_on_one_rollout_leaves_the_others_decided() -> None:
    def judging(mode: str, policy: Any, evidence: Any) -> Verdict:
        if evidence.paired.n == 7:
            raise ZeroDivisionError("float division by zero")
        return judge(mode, policy, evidence)

    registry = FakeRolloutRegistry.of(running("A"), running("B"))
    evidence = FakeEvidence(
        {("A", CANDIDATE): shadow_evidence(7, worse_by=0.0), ("B", CANDIDATE): shadow_evidence(200, worse_by=0.1)}
    )
    report = RolloutDecider(registry, evidence, judging).evaluate(NOW.replace(tzinfo=None))
    assert [d.outcome for d in report.decisions] == [Outcome.FAILED, Outcome.ROLLED_BACK]
    assert "ZeroDivisionError" in report.decisions[0].reason
    assert report.at == "2026-12-02T05:00:00+00:00"
