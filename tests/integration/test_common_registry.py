"""The DynamoDB registry adapter against moto (in-process: an adapter test), and rollout writes racing over
real sockets against the threaded moto server (two writers that read the same state: exactly one wins)."""

from __future__ import annotations

import threading
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import pytest
from moto import mock_aws

from house_prices.errors import DomainError, NoRollout, PromotionRefused, RolloutConflict, UnknownCity, UnknownVersion
from house_prices.registry import LIVE_RECORD, LiveModel, ModelRegistry, ModelVersion, Status
from local.moto_services import MotoServer, client, create_table
from tests.model_versions import model_version

TABLE = "registry-test"
OLD, MID, NEW = "20261125T040000Z-aaaaaaaa", "20261125T050000Z-bbbbbbbb", "20261125T060000Z-cccccccc"


@pytest.fixture
def dynamodb() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_table(client, TABLE)
        yield client


@pytest.fixture
def registry(dynamodb: Any) -> ModelRegistry:
    return ModelRegistry(dynamodb, TABLE)


def version(city: str, name: str, ae_p50: float = 1000.0, status: Status = "standby", reason: str = "") -> ModelVersion:
    metrics = {"validation": {"ae_p50": ae_p50, "r2": 0.97, "rows": 300}}
    return model_version(city, name, status, metrics=metrics, reason=reason)


def test_recording_is_idempotent_and_keeps_the_first_record(registry: ModelRegistry) -> None:
    # Given a recorded version
    first, created = registry.record_version(version("Chicago_IL", OLD, ae_p50=1234.5))
    # When the same version is recorded again with different metrics (a redelivered event)
    again, created_again = registry.record_version(version("Chicago_IL", OLD, ae_p50=1.0))
    # Then the first record stands and floats survive the Decimal round trip
    assert (created, created_again) == (True, False)
    assert again.metrics["validation"]["ae_p50"] == 1234.5 == first.metrics["validation"]["ae_p50"]
    assert registry.version("Chicago_IL", OLD).metrics == first.metrics


def test_promotion_is_monotonic(registry: ModelRegistry) -> None:
    for name in (OLD, MID, NEW):
        registry.record_version(version("Chicago_IL", name))
    # Given NEW is live
    registry.promote("Chicago_IL", NEW)
    # When an older version's (late, out-of-order) event tries to promote it
    with pytest.raises(PromotionRefused):
        registry.promote("Chicago_IL", MID)
    # Then NEW stays live and the statuses agree
    assert registry.live_model("Chicago_IL").version == NEW
    assert {v.version: v.status for v in registry.versions("Chicago_IL")} == {
        NEW: "live",
        MID: "standby",
        OLD: "standby",
    }
    # And promoting the live version again is a no-op
    assert registry.promote("Chicago_IL", NEW).version == NEW


def test_newer_version_replaces_live_and_old_goes_to_standby(registry: ModelRegistry) -> None:
    registry.record_version(version("Chicago_IL", OLD))
    registry.record_version(version("Chicago_IL", NEW))
    registry.promote("Chicago_IL", OLD)
    live = registry.promote("Chicago_IL", NEW)
    assert live.target_model == f"Chicago_IL.{NEW}.tar.gz"
    assert registry.version("Chicago_IL", OLD).status == "standby"
    assert [v.version for v in registry.versions("Chicago_IL")] == [NEW, OLD]


def test_rollback_needs_the_expected_live_version(registry: ModelRegistry) -> None:
    for name in (OLD, NEW):
        registry.record_version(version("Chicago_IL", name))
    registry.promote("Chicago_IL", NEW)
    # When an operator rolls back with a stale expectation / Then it is refused
    with pytest.raises(PromotionRefused, match=f"live version is '{NEW}', expected '{MID}'"):
        registry.promote("Chicago_IL", OLD, expected_live=MID, force=True)
    with pytest.raises(PromotionRefused, match=f"live version is '{NEW}', expected '{OLD}'"):
        registry.promote("Chicago_IL", OLD, expected_live=OLD, force=True)
    # When the expectation matches / Then the older version goes live
    assert registry.promote("Chicago_IL", OLD, expected_live=NEW, force=True).version == OLD
    assert registry.live_model("Chicago_IL").version == OLD
    assert registry.version("Chicago_IL", NEW).status == "standby"


def test_rejected_versions_can_never_go_live(registry: ModelRegistry) -> None:
    registry.record_version(version("Chicago_IL", OLD, status="rejected"))
    with pytest.raises(PromotionRefused):
        registry.promote("Chicago_IL", OLD)
    with pytest.raises(UnknownCity):
        registry.live_model("Chicago_IL")


def test_unknown_records_raise_domain_errors(registry: ModelRegistry) -> None:
    with pytest.raises(UnknownCity):
        registry.live_model("Nowhere")
    with pytest.raises(UnknownVersion):
        registry.version("Nowhere", OLD)
    with pytest.raises(UnknownVersion):
        registry.set_status("Nowhere", OLD, "standby")


def test_live_models_lists_each_city_once(registry: ModelRegistry) -> None:
    for city in ("Dallas_TX", "Chicago_IL"):
        for name in (OLD, NEW):
            registry.record_version(version(city, name))
        registry.promote(city, NEW)
    assert [(m.city, m.version) for m in registry.live_models()] == [("Chicago_IL", NEW), ("Dallas_TX", NEW)]
    registry.set_status("Dallas_TX", OLD, "rejected", reason="bad")
    assert registry.version("Dallas_TX", OLD).reason == "bad"


def test_promote_stores_the_reason_and_demotes_exactly_the_replaced_version(registry: ModelRegistry) -> None:
    for name in (OLD, MID, NEW):
        registry.record_version(version("Dallas_TX", name, reason="pending"))
    registry.promote("Dallas_TX", OLD, reason="first")
    registry.promote("Dallas_TX", NEW, reason="third")
    # An older version can never replace a newer live one without force
    with pytest.raises(PromotionRefused, match=f"newer version {NEW} is live"):
        registry.promote("Dallas_TX", MID)
    statuses = {v.version: (v.status, v.reason) for v in registry.versions("Dallas_TX")}
    assert statuses == {OLD: ("standby", "first"), MID: ("standby", "pending"), NEW: ("live", "third")}


def test_promotion_racing_a_concurrent_one_is_refused_not_doubly_live(registry: ModelRegistry, dynamodb: Any) -> None:
    # Given OLD live and another writer promoting MID between our read and our write
    for name in (OLD, MID, NEW):
        registry.record_version(version("Dallas_TX", name, reason="pending"))
    registry.promote("Dallas_TX", OLD)
    other = ModelRegistry(dynamodb, TABLE)
    real_find_live = registry.find_live

    def stale_read(city: str) -> LiveModel | None:
        seen = real_find_live(city)
        other.promote(city, MID)  # lands after our read
        return seen

    registry.find_live = stale_read  # type: ignore[method-assign]
    # When we try to promote NEW on the stale view
    with pytest.raises(PromotionRefused):
        registry.promote("Dallas_TX", NEW)
    # Then exactly one version is live (MID), and a fresh attempt succeeds and demotes MID
    assert [v.version for v in other.versions("Dallas_TX") if v.status == "live"] == [MID]
    other.promote("Dallas_TX", NEW)
    assert [v.version for v in other.versions("Dallas_TX") if v.status == "live"] == [NEW]


# --- rollout writes racing over the wire ------------------------------------------------------------------

REGION = "us-east-1"
CAND, NEWER = "20261125T070000Z-dddddddd", "20261125T080000Z-eeeeeeee"
DAY = 86_400.0


@pytest.fixture
def served() -> Iterator[str]:
    """The threaded moto server (as the local stack runs it: writes isolated like DynamoDB's), CITY=Dallas_TX
    with NEW live and CAND, NEWER recorded."""
    with MotoServer() as server:
        # moto's backends are process-wide: start from nothing, whatever ran before in this process.
        urllib.request.urlopen(urllib.request.Request(f"{server.url}/moto-api/reset", method="POST"), timeout=10)
        dynamodb = client("dynamodb", server.url, REGION)
        create_table(dynamodb, TABLE)
        registry = ModelRegistry(dynamodb, TABLE)
        for name in (OLD, NEW, CAND, NEWER):
            registry.record_version(version("Dallas_TX", name, reason="pending"))
        registry.promote("Dallas_TX", NEW)
        yield server.url


def writer(url: str, barrier: threading.Barrier) -> ModelRegistry:
    """A registry with its own connection whose first read of the live item waits for the other writer's:
    both then write on the same state, at the same time."""
    registry = ModelRegistry(client("dynamodb", url, REGION), TABLE)
    real_get = registry._get
    waited = threading.Event()

    def get_then_wait(city: str, record: str) -> dict[str, Any] | None:
        item = real_get(city, record)
        if record == LIVE_RECORD and not waited.is_set():
            waited.set()
            barrier.wait(timeout=30)
        return item

    registry._get = get_then_wait  # type: ignore[method-assign]
    return registry


def race(url: str, *writes: Callable[[ModelRegistry], Any]) -> list[Any]:
    """Run each write on its own writer, concurrently; each outcome is its result or the domain error raised."""
    barrier = threading.Barrier(len(writes))
    writers = [writer(url, barrier) for _ in writes]

    def outcome(pair: tuple[ModelRegistry, Callable[[ModelRegistry], Any]]) -> Any:
        registry, write = pair
        try:
            return write(registry)
        except DomainError as error:
            return error

    with ThreadPoolExecutor(len(writes)) as pool:
        return list(pool.map(outcome, zip(writers, writes, strict=True)))


def observer(url: str) -> ModelRegistry:
    return ModelRegistry(client("dynamodb", url, REGION), TABLE)


def statuses_of(registry: ModelRegistry) -> dict[str, str]:
    return {v.version: v.status for v in registry.versions("Dallas_TX")}


def start(candidate: str, actor: str, replace: bool = False) -> Callable[[ModelRegistry], Any]:
    return lambda registry: registry.start_rollout(
        "Dallas_TX", candidate, "canary", 1000, {}, DAY, actor, reason=f"by {actor}", replace=replace
    )


def test_two_rollouts_starting_at_once_exactly_one_wins(served: str) -> None:
    # When model-sync (CAND) and an operator (NEWER) start rollouts on the same read of the live item
    outcomes = race(served, start(CAND, "model-sync"), start(NEWER, "operator"))
    # Then exactly one started; the other lost on the live item's condition
    winners = [o for o in outcomes if not isinstance(o, DomainError)]
    losers = [o for o in outcomes if isinstance(o, DomainError)]
    assert len(winners) == 1
    assert len(losers) == 1
    assert isinstance(losers[0], RolloutConflict)
    # And the registry agrees with the winner everywhere: live item, index, statuses, history
    registry = observer(served)
    (winner,) = winners
    assert registry.live_model("Dallas_TX").rollout == winner
    assert [m.rollout for m in registry.rollouts()] == [winner]
    assert [name for name, status in statuses_of(registry).items() if status == "candidate"] == [
        winner.candidate_version
    ]
    assert [(e.action, e.candidate_version) for e in registry.rollout_history("Dallas_TX")] == [
        ("started", winner.candidate_version)
    ]


def test_two_weight_changes_on_the_same_revision_exactly_one_wins(served: str) -> None:
    rollout = observer(served).start_rollout("Dallas_TX", CAND, "canary", 1000, {}, DAY, "operator")

    def weight(bp: int) -> Callable[[ModelRegistry], Any]:
        return lambda registry: registry.set_rollout_weight(
            "Dallas_TX", CAND, bp, "operator", expected_revision=rollout.revision
        )

    outcomes = race(served, weight(2500), weight(5000))
    winners = [o for o in outcomes if not isinstance(o, DomainError)]
    assert len(winners) == 1
    assert [type(o) for o in outcomes if isinstance(o, DomainError)] == [RolloutConflict]
    stored = observer(served).live_model("Dallas_TX").rollout
    assert stored == winners[0]
    assert stored is not None
    assert stored.revision == rollout.revision + 1
    assert [e.action for e in observer(served).rollout_history("Dallas_TX")] == ["weight", "started"]


def test_promotion_and_rollback_of_one_rollout_at_once_exactly_one_wins(served: str) -> None:
    observer(served).start_rollout("Dallas_TX", CAND, "shadow", 10_000, {}, DAY, "model-sync")
    outcomes = race(
        served,
        lambda registry: registry.promote_rollout("Dallas_TX", CAND, "decider", "better", {"n": 300}),
        lambda registry: registry.end_rollout("Dallas_TX", CAND, "rolled_back", "operator", "looks wrong", {}),
    )
    promoted, ended = outcomes
    # Exactly one decision took effect; the loser, on re-reading, found the rollout gone
    assert (isinstance(promoted, DomainError), isinstance(ended, DomainError)).count(True) == 1
    assert all(isinstance(o, NoRollout) for o in outcomes if isinstance(o, DomainError))
    registry = observer(served)
    live = registry.live_model("Dallas_TX")
    assert live.rollout is None
    assert registry.rollouts() == []
    expected = (
        ({CAND: "rejected", NEW: "live"}, NEW)
        if isinstance(promoted, DomainError)
        else ({CAND: "live", NEW: "standby"}, CAND)
    )
    assert {v: s for v, s in statuses_of(registry).items() if v in (CAND, NEW)} == expected[0]
    assert live.version == expected[1]
    assert len(registry.rollout_history("Dallas_TX")) == 2  # started + the one decision


def test_an_operator_promotion_racing_a_rollout_start_leaves_no_orphan_candidate(served: str) -> None:
    outcomes = race(
        served,
        start(CAND, "model-sync"),
        lambda registry: registry.promote("Dallas_TX", OLD, expected_live=NEW, force=True, reason="incident"),
    )
    started, promoted = outcomes
    assert (isinstance(started, DomainError), isinstance(promoted, DomainError)).count(True) == 1
    registry = observer(served)
    live = registry.live_model("Dallas_TX")
    candidates = [name for name, status in statuses_of(registry).items() if status == "candidate"]
    if isinstance(promoted, DomainError):
        assert isinstance(promoted, PromotionRefused)
        assert (live.version, live.rollout, candidates) == (NEW, started, [CAND])
    else:
        assert isinstance(started, RolloutConflict)
        assert (live.version, live.rollout, candidates) == (OLD, None, [])
