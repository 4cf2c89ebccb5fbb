"""The registry's rollout state (ModelRegistry against moto's DynamoDB in process: an adapter test).

Rules under test (docs/rollouts.md, "Registry state"): a rollout lives on the city's live item; every
write is conditional on the revision it read; starting, promoting and ending are single transactions that
keep the versions' statuses and the audit trail in step with the live item.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from moto import mock_aws

from house_prices.errors import InvalidInput, NoRollout, PromotionRefused, RolloutConflict, UnknownVersion
from house_prices.registry import (
    LIVE_RECORD,
    ModelRegistry,
    Rollout,
    Status,
)
from local.template import Template
from tests.model_versions import model_version

TABLE = "registry-rollouts"
CITY = "Chicago_IL"
OLD, LIVE, CAND, NEWER = (
    "20261125T030000Z-99999999",
    "20261125T040000Z-aaaaaaaa",
    "20261125T050000Z-bbbbbbbb",
    "20261125T060000Z-cccccccc",
)
T0 = datetime(2026, 11, 26, 9, 0, 0, tzinfo=UTC)
DAY = 86_400.0
POLICY = {"alpha": 0.05, "min_labels": 50}


@functools.cache
def registry_table() -> dict[str, Any]:
    """CreateTable arguments as template.yaml declares the registry (both sparse indexes); parsed once."""
    return Template.load().table_definition("RegistryTable")


@pytest.fixture
def dynamodb() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(TableName=TABLE, **registry_table())
        yield client


@pytest.fixture
def registry(dynamodb: Any) -> ModelRegistry:
    """CITY with LIVE live, and OLD, CAND and NEWER recorded as standby."""
    registry = ModelRegistry(dynamodb, TABLE)
    for name in (OLD, LIVE, CAND, NEWER):
        registry.record_version(model_version(CITY, name, reason="pending"))
    registry.promote(CITY, LIVE)
    return registry


def statuses(registry: ModelRegistry, city: str = CITY) -> dict[str, Status]:
    return {v.version: v.status for v in registry.versions(city)}


def start(registry: ModelRegistry, candidate: str = CAND, **kwargs: Any) -> Rollout:
    options: dict[str, Any] = {
        "mode": "canary",
        "weight_bp": 1000,
        "policy": POLICY,
        "duration_seconds": 7 * DAY,
        "actor": "operator",
        "reason": "gate passed",
        "now": T0,
    }
    options.update(kwargs)
    return registry.start_rollout(CITY, candidate, **options)


def test_a_started_rollout_is_on_the_live_item_listed_by_the_index_and_in_the_history(
    registry: ModelRegistry,
) -> None:
    # When a canary of CAND starts at T0 for 7 days
    rollout = start(registry)
    # Then the live item carries it (the router's one GetItem sees it), with a fresh salt
    live = registry.live_model(CITY)
    assert live.version == LIVE
    assert live.rollout == rollout
    assert (rollout.candidate_version, rollout.candidate_target_model) == (CAND, f"{CITY}.{CAND}.tar.gz")
    assert (rollout.mode, rollout.weight_bp, rollout.policy, rollout.started_by) == ("canary", 1000, POLICY, "operator")
    assert (rollout.started_at, rollout.deadline) == ("2026-11-26T09:00:00+00:00", "2026-12-03T09:00:00+00:00")
    assert len(rollout.salt) == 16
    assert rollout.salt != start_salt_of_another_city(registry)
    # And the candidate's status says so, with the reason given
    assert statuses(registry)[CAND] == "candidate"
    assert registry.version(CITY, CAND).reason == "gate passed"
    # And one Query of the sparse index finds it (and the other city's), by city
    assert next((m.city, m.rollout) for m in registry.rollouts()) == (CITY, rollout)
    assert [m.city for m in registry.rollouts()] == [CITY, "Dallas_TX"]
    # And the history has the start with its settings
    (event,) = registry.rollout_history(CITY)
    assert (event.action, event.candidate_version, event.live_version) == ("started", CAND, LIVE)
    assert event.actor == "operator"
    assert event.evidence["weight_bp"] == 1000
    assert event.evidence["deadline"] == rollout.deadline


def start_salt_of_another_city(registry: ModelRegistry) -> str:
    for name in (LIVE, CAND):
        registry.record_version(model_version("Dallas_TX", name))
    registry.promote("Dallas_TX", LIVE)
    return registry.start_rollout("Dallas_TX", CAND, "shadow", 10_000, {}, DAY, "model-sync").salt


@pytest.mark.parametrize(
    ("candidate", "error", "message"),
    [
        (LIVE, PromotionRefused, "not newer than the live version"),
        (OLD, PromotionRefused, "not newer than the live version"),
        ("20261125T070000Z-dddddddd", UnknownVersion, "Unknown version"),
    ],
)
def test_only_a_recorded_version_newer_than_live_may_enter_a_rollout(
    registry: ModelRegistry, candidate: str, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        start(registry, candidate)
    assert registry.live_model(CITY).rollout is None
    assert registry.rollout_history(CITY) == []


def test_a_rejected_version_or_a_city_without_live_version_is_refused(registry: ModelRegistry) -> None:
    registry.set_status(CITY, NEWER, "rejected", reason="lied about its metrics")
    with pytest.raises(PromotionRefused, match="was rejected"):
        start(registry, NEWER)
    registry.record_version(model_version("Dallas_TX", CAND))
    with pytest.raises(PromotionRefused, match="no live version"):
        registry.start_rollout("Dallas_TX", CAND, "canary", 100, {}, DAY, "operator")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"mode": "blue-green"}, "mode"),
        ({"weight_bp": 10_001}, "weight_bp"),
        ({"weight_bp": -1}, "weight_bp"),
        ({"weight_bp": 12.5}, "weight_bp"),
        ({"duration_seconds": 0}, "duration_seconds"),
    ],
)
def test_invalid_settings_name_the_field(registry: ModelRegistry, kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        start(registry, **kwargs)
    assert [problem.field for problem in raised.value.problems] == [field]


def test_a_second_rollout_is_refused_unless_it_replaces_the_first(registry: ModelRegistry) -> None:
    first = start(registry)
    # When another candidate arrives without replace / Then it is a conflict and nothing changes
    with pytest.raises(RolloutConflict, match=f"rollout of {CAND} is running"):
        start(registry, NEWER)
    # And the same candidate is never restarted (a new salt would re-shuffle the houses), even with replace
    with pytest.raises(RolloutConflict):
        start(registry, CAND, replace=True)
    assert registry.live_model(CITY).rollout == first
    # When the newer one replaces it
    second = start(registry, NEWER, replace=True, mode="shadow", weight_bp=10_000)
    # Then the first candidate is back to standby, with why, in the same transaction; the history says both
    assert registry.live_model(CITY).rollout == second
    assert second.revision == first.revision + 1
    assert statuses(registry) == {NEWER: "candidate", CAND: "standby", LIVE: "live", OLD: "standby"}
    assert registry.version(CITY, CAND).reason == f"rollout superseded: superseded by a rollout of {NEWER}"
    assert [(e.action, e.candidate_version) for e in registry.rollout_history(CITY)] == [
        ("started", NEWER),
        ("superseded", CAND),
        ("started", CAND),
    ]


def test_weight_changes_bump_the_revision_and_a_stale_revision_is_refused(registry: ModelRegistry) -> None:
    rollout = start(registry)
    # When the weight goes to 50 % on the revision just read
    changed = registry.set_rollout_weight(CITY, CAND, 5000, "operator", expected_revision=rollout.revision)
    # Then the live item holds it at the next revision, and the history records from/to
    assert (changed.weight_bp, changed.revision) == (5000, rollout.revision + 1)
    assert registry.live_model(CITY).rollout == changed
    latest = registry.rollout_history(CITY)[0]
    assert (latest.action, latest.evidence) == ("weight", {"from_bp": 1000, "to_bp": 5000})
    # When a writer still holding the first revision tries / Then it loses (no lost update)
    with pytest.raises(RolloutConflict, match="revision"):
        registry.set_rollout_weight(CITY, CAND, 100, "operator", expected_revision=rollout.revision)
    assert registry.live_model(CITY).rollout == changed
    # And setting the same weight again writes nothing
    assert registry.set_rollout_weight(CITY, CAND, 5000, "operator") == changed
    assert len(registry.rollout_history(CITY)) == 2


def test_rollout_writes_name_the_missing_rollout(registry: ModelRegistry) -> None:
    with pytest.raises(NoRollout):
        registry.set_rollout_weight(CITY, CAND, 100, "operator")
    with pytest.raises(NoRollout):
        registry.promote_rollout(CITY, CAND, "decider", "better", {})
    with pytest.raises(NoRollout):
        registry.end_rollout(CITY, CAND, "aborted", "operator", "changed my mind", {})
    start(registry)
    with pytest.raises(NoRollout, match=NEWER):
        registry.end_rollout(CITY, NEWER, "aborted", "operator", "wrong candidate", {})


def test_promotion_is_one_transaction_and_a_retried_decision_is_a_no_op(registry: ModelRegistry) -> None:
    start(registry)
    evidence = {"labels": 212, "p_promote": 0.004, "ratio": math.inf}
    # When the decider promotes the candidate
    live = registry.promote_rollout(CITY, CAND, "decider", "not worse than live", evidence, now=T0)
    # Then it is live, the rollout is gone (from the item and the index), and the statuses moved together
    assert (live.version, live.rollout) == (CAND, None)
    stored = registry.live_model(CITY)
    assert (stored.version, stored.target_model, stored.rollout) == (CAND, f"{CITY}.{CAND}.tar.gz", None)
    assert registry.rollouts() == []
    assert statuses(registry) == {NEWER: "standby", CAND: "live", LIVE: "standby", OLD: "standby"}
    assert registry.version(CITY, CAND).reason == "not worse than live"
    # And the history keeps the numbers (an infinite ratio as text, which DynamoDB cannot store as a number)
    promoted = registry.rollout_history(CITY)[0]
    assert (promoted.action, promoted.live_version) == ("promoted", LIVE)
    assert promoted.evidence == {"labels": 212, "p_promote": 0.004, "ratio": "inf"}
    # When the decision is retried (a redelivered schedule event) / Then nothing changes
    assert registry.promote_rollout(CITY, CAND, "decider", "again", {}).version == CAND
    assert len(registry.rollout_history(CITY)) == 2
    # And the monotonic rule still holds for events: the old live version cannot come back without force
    with pytest.raises(PromotionRefused):
        registry.promote(CITY, LIVE)


@pytest.mark.parametrize(
    ("outcome", "status"),
    [("rolled_back", "rejected"), ("aborted", "standby"), ("timed_out", "standby")],
)
def test_ending_a_rollout_leaves_live_alone_and_sets_the_candidates_status(
    registry: ModelRegistry, outcome: Any, status: Status
) -> None:
    start(registry)
    registry.end_rollout(CITY, CAND, outcome, "decider", "MAPE +12 % on 180 paired labels", {"n": 180})
    live = registry.live_model(CITY)
    assert (live.version, live.rollout) == (LIVE, None)
    assert registry.rollouts() == []
    assert statuses(registry)[CAND] == status
    assert registry.version(CITY, CAND).reason.endswith("by decider: MAPE +12 % on 180 paired labels")
    assert registry.rollout_history(CITY)[0].action == outcome
    # A second end of the same rollout finds none
    with pytest.raises(NoRollout):
        registry.end_rollout(CITY, CAND, outcome, "decider", "again", {})


def test_promoted_is_not_an_end_outcome(registry: ModelRegistry) -> None:
    start(registry)
    with pytest.raises(InvalidInput, match="outcome"):
        registry.end_rollout(CITY, CAND, "promoted", "decider", "", {})  # type: ignore[arg-type]


def test_a_rolled_back_candidate_can_never_go_live(registry: ModelRegistry) -> None:
    start(registry)
    registry.end_rollout(CITY, CAND, "rolled_back", "decider", "worse", {})
    with pytest.raises(PromotionRefused, match="rejected"):
        registry.promote(CITY, CAND)
    with pytest.raises(PromotionRefused, match="rejected"):
        start(registry)


def test_an_operator_rollback_with_promote_aborts_the_rollout_consistently(registry: ModelRegistry) -> None:
    start(registry)
    # When an operator promotes an older version (force) while CAND is in a rollout
    registry.promote(CITY, OLD, expected_live=LIVE, force=True, reason="incident")
    # Then OLD is live, the rollout ended, CAND is standby again, and the history says who aborted it
    live = registry.live_model(CITY)
    assert (live.version, live.rollout) == (OLD, None)
    assert registry.rollouts() == []
    assert statuses(registry) == {NEWER: "standby", CAND: "standby", LIVE: "standby", OLD: "live"}
    event = registry.rollout_history(CITY)[0]
    assert (event.action, event.candidate_version, event.actor) == ("aborted", CAND, "operator")


def test_model_sync_promoting_a_newer_version_supersedes_the_rollout(registry: ModelRegistry) -> None:
    start(registry)
    # An older version than the candidate is refused without force: the candidate counts for the monotonic rule
    registry.record_version(model_version(CITY, "20261125T045000Z-abababab"))
    with pytest.raises(PromotionRefused, match=f"newer version {CAND} is in a canary rollout"):
        registry.promote(CITY, "20261125T045000Z-abababab")
    registry.promote(CITY, NEWER, reason="gate passed")
    assert statuses(registry) == {
        NEWER: "live",
        CAND: "standby",
        "20261125T045000Z-abababab": "standby",
        LIVE: "standby",
        OLD: "standby",
    }
    assert next((e.action, e.actor) for e in registry.rollout_history(CITY)) == ("superseded", "model-sync")


def test_promoting_the_candidate_outside_the_rollout_records_a_promotion(registry: ModelRegistry) -> None:
    start(registry)
    registry.promote(CITY, CAND, expected_live=LIVE, force=True)
    assert registry.live_model(CITY).rollout is None
    assert statuses(registry)[CAND] == "live"
    assert registry.rollout_history(CITY)[0].action == "promoted"


def test_a_promotion_on_a_stale_read_never_wipes_a_rollout_started_meanwhile(
    registry: ModelRegistry, dynamodb: Any
) -> None:
    # Given an operator's promote() that read the live item before a rollout started
    other = ModelRegistry(dynamodb, TABLE)
    real_find_live = registry.find_live

    def stale_read(city: str) -> Any:
        seen = real_find_live(city)
        start(other)  # lands after our read
        return seen

    registry.find_live = stale_read  # type: ignore[method-assign]
    # When it writes / Then it is refused, and the rollout and its candidate's status survive
    with pytest.raises(PromotionRefused):
        registry.promote(CITY, OLD, expected_live=LIVE, force=True)
    assert other.live_model(CITY).rollout is not None
    assert statuses(other)[CAND] == "candidate"


def test_a_decision_retries_over_a_concurrent_weight_change(registry: ModelRegistry, dynamodb: Any) -> None:
    # Given the decider read the rollout, then an operator changed its weight before the decider wrote
    start(registry)
    other = ModelRegistry(dynamodb, TABLE)
    real_find_live = registry.find_live
    calls = []

    def read_then_weight(city: str) -> Any:
        seen = real_find_live(city)
        if not calls:
            other.set_rollout_weight(city, CAND, 2500, "operator")
        calls.append(seen)
        return seen

    registry.find_live = read_then_weight  # type: ignore[method-assign]
    # When it promotes / Then the first write loses on the revision, the re-read one wins
    assert registry.promote_rollout(CITY, CAND, "decider", "better", {}).version == CAND
    assert len(calls) == 2
    assert [e.action for e in other.rollout_history(CITY)] == ["promoted", "weight", "started"]


def test_history_is_newest_first_and_limited(registry: ModelRegistry) -> None:
    start(registry)
    for weight in (2000, 3000, 4000):
        registry.set_rollout_weight(CITY, CAND, weight, "operator", now=T0)  # same second: the revision orders them
    history = registry.rollout_history(CITY)
    assert [e.action for e in history] == ["weight", "weight", "weight", "started"]
    assert [e.evidence.get("to_bp") for e in history[:3]] == [4000, 3000, 2000]
    assert [e.revision for e in history] == sorted((e.revision for e in history), reverse=True)
    assert len(registry.rollout_history(CITY, limit=2)) == 2
    # The history items (same partition) never show up as versions
    assert sorted(statuses(registry)) == sorted((OLD, LIVE, CAND, NEWER))


def test_override_is_set_read_and_cleared(registry: ModelRegistry) -> None:
    assert registry.rollout_override(CITY) is None
    registry.set_rollout_override(CITY, "canary:5,days:3")
    assert registry.rollout_override(CITY) == "canary:5,days:3"
    assert registry.rollout_override("Dallas_TX") is None
    registry.set_rollout_override(CITY, "off")
    assert registry.rollout_override(CITY) == "off"
    registry.set_rollout_override(CITY, None)
    assert registry.rollout_override(CITY) is None
    assert len(registry.versions(CITY)) == 4  # the override item is not a version


def test_a_live_item_written_before_rollouts_reads_as_revision_zero(registry: ModelRegistry, dynamodb: Any) -> None:
    # Given a live item as the registry wrote it before rollouts (no revision attribute)
    dynamodb.update_item(
        TableName=TABLE,
        Key={"city": {"S": CITY}, "record": {"S": LIVE_RECORD}},
        UpdateExpression="REMOVE rollout_revision",
    )
    # When a rollout starts / Then it starts at revision 1
    assert start(registry).revision == 1
