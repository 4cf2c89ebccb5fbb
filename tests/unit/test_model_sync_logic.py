"""Promotion decisions of model_sync.logic with in-memory adapters: duplicates, order, resumes, races."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from house_prices.errors import DependencyFailure, PromotionRefused, RolloutConflict, UnknownVersion
from house_prices.naming import KeyLayout, target_model
from house_prices.observability import metrics
from house_prices.registry import LiveModel, ModelVersion, Rollout, RolloutMode, Status
from house_prices.rollout_stats import GuardPolicy
from model_sync.gate import GatePolicy
from model_sync.logic import PENDING, ModelSync, ObjectInfo
from model_sync.rollout_policy import ROLLOUT_OFF, RolloutPolicy
from tests.unit.test_artifacts_inspection import build_artifact, realistic_metrics, validation_csv

BUCKET = "bucket"
LAYOUT = KeyLayout()
CITY = "Phoenix_AZ"
T0 = datetime(2026, 3, 1, 8, 0, 0, tzinfo=UTC)


@dataclass
class MemoryStore:
    objects: dict[str, tuple[bytes, datetime, dict[str, str]]] = field(default_factory=dict)
    copies: list[str] = field(default_factory=list)
    fail_copy: bool = False

    def put(self, key: str, data: bytes, at: datetime) -> None:
        self.objects[key] = (data, at, {})

    def head(self, bucket: str, key: str) -> ObjectInfo | None:
        if key not in self.objects:
            return None
        data, at, meta = self.objects[key]
        return ObjectInfo(bucket, key, len(data), f'"{hash(data)}"', at, dict(meta))

    def read_bytes(self, bucket: str, key: str, max_bytes: int) -> bytes | None:
        return self.objects[key][0][: max_bytes + 1] if key in self.objects else None

    def open(self, source: ObjectInfo) -> io.BytesIO:
        return io.BytesIO(self.objects[source.key][0])

    def copy(self, source: ObjectInfo, bucket: str, key: str, metadata: dict[str, str]) -> None:
        if self.fail_copy:
            raise DependencyFailure("S3 copy failed: SlowDown")
        self.copies.append(key)
        self.objects[key] = (self.objects[source.key][0], source.last_modified, dict(metadata))


@dataclass
class MemoryRegistry:
    """Same rules as ModelRegistry: create-once records, monotonic promotion, force with expected live, and
    rollouts (one per city, on the live model; only a newer, unrejected candidate; ``replace`` supersedes; a
    promotion ends a running rollout, and an older version than its candidate is refused without force).

    Its methods restate model_sync.logic.Registry's signatures on purpose: that protocol is what the logic
    takes, and this fake stands in for ModelRegistry behind it.
    """

    records: dict[str, ModelVersion] = field(default_factory=dict)
    live: dict[str, LiveModel] = field(default_factory=dict)
    before_promote: Any = None
    before_start_rollout: Any = None
    overrides: dict[str, str] = field(default_factory=dict)
    # Every rollout started, with the duration and replace flag it was started with.
    started: list[tuple[Rollout, float, bool]] = field(default_factory=list)

    def record_version(self, version: ModelVersion) -> tuple[ModelVersion, bool]:
        if version.version in self.records:
            return self.records[version.version], False
        self.records[version.version] = version
        return version, True

    def version(self, city: str, version: str) -> ModelVersion:
        if version not in self.records:
            raise UnknownVersion(city, version)
        return self.records[version]

    def find_live(self, city: str) -> LiveModel | None:
        return self.live.get(city)

    def set_status(self, city: str, version: str, status: Status, reason: str = "") -> None:
        self.records[version] = replace(self.version(city, version), status=status, reason=reason)

    def promote(
        self,
        city: str,
        version: str,
        expected_live: str | None = None,
        force: bool = False,
        reason: str | None = None,
    ) -> LiveModel:
        if self.before_promote:
            self.before_promote()
        current = self.live.get(city)
        if current and current.version == version:
            return current
        if force and (current.version if current else None) != expected_live:
            raise PromotionRefused("live version changed")
        if not force and current and current.version > version:
            raise PromotionRefused(f"{city}: {version} not promoted; newer version {current.version} is live")
        running = current.rollout if current else None
        if not force and running and running.candidate_version > version:
            raise PromotionRefused(f"{city}: {version} not promoted; newer version is in a rollout")
        if running and running.candidate_version != version:
            self.set_status(city, running.candidate_version, "standby", "rollout superseded")
        if current:
            self.set_status(city, current.version, "standby", self.records[current.version].reason)
        record = self.version(city, version)
        self.records[version] = replace(record, status="live", reason=record.reason if reason is None else reason)
        self.live[city] = LiveModel(city, version, target_model(city, version), "now")
        return self.live[city]

    def start_rollout(
        self,
        city: str,
        candidate_version: str,
        mode: RolloutMode,
        weight_bp: int,
        policy: Any,
        duration_seconds: float,
        actor: str,
        reason: str = "",
        now: datetime | None = None,
        replace: bool = False,
    ) -> Rollout:
        if self.before_start_rollout:
            self.before_start_rollout()
        record = self.version(city, candidate_version)
        if record.status == "rejected":
            raise PromotionRefused(f"{city} {candidate_version} was rejected")
        current = self.live.get(city)
        if current is None or candidate_version <= current.version:
            raise PromotionRefused(f"{city}: no live version, or {candidate_version} is not newer")
        running = current.rollout
        if running and (running.candidate_version == candidate_version or not replace):
            raise RolloutConflict(f"{city}: a rollout of {running.candidate_version} is running")
        if running:
            self.set_status(city, running.candidate_version, "standby", "rollout superseded")
        rollout = Rollout(
            candidate_version,
            target_model(city, candidate_version),
            mode,
            weight_bp,
            salt="salt",
            started_at="now",
            deadline="later",
            revision=(running.revision if running else 0) + 1,
            policy=dict(policy),
            started_by=actor,
        )
        self.set_status(city, candidate_version, "candidate", reason)
        self.live[city] = _with_rollout(current, rollout)
        self.started.append((rollout, duration_seconds, replace))
        return rollout

    def rollout_override(self, city: str) -> str | None:
        return self.overrides.get(city)


def _with_rollout(live: LiveModel, rollout: Rollout | None) -> LiveModel:
    return replace(live, rollout=rollout)


@pytest.fixture(autouse=True)
def _clear_metrics() -> Iterator[None]:
    yield
    metrics.clear_metrics()


@dataclass
class FakeWarmer:
    warmed: list[str] = field(default_factory=list)
    failure: str | None = None

    def warm(self, target_model: str) -> None:
        if self.failure:
            raise DependencyFailure(self.failure)
        self.warmed.append(target_model)


@dataclass
class World:
    store: MemoryStore = field(default_factory=MemoryStore)
    registry: MemoryRegistry = field(default_factory=MemoryRegistry)
    gate: GatePolicy = field(default_factory=lambda: GatePolicy.parse("not-worse-than-live-by:5"))
    warmer: FakeWarmer = field(default_factory=lambda: FakeWarmer())
    rollout: RolloutPolicy = ROLLOUT_OFF

    def __post_init__(self) -> None:
        # The city's held-out rows, which the gate measures every model on.
        self.store.put(LAYOUT.prep_key(CITY, "val"), validation_csv(), T0)

    @property
    def sync(self) -> ModelSync:
        return ModelSync(
            self.store,
            self.registry,
            BUCKET,
            LAYOUT,
            self.gate,
            max_unpacked_bytes=1024 * 1024,
            warmer=self.warmer,
            rollout=self.rollout,
            rollout_max_days=14,
        )

    def upload(self, job: str, ae_p50: float = 20_000, minutes: int = 0, data: bytes | None = None) -> str:
        key = LAYOUT.training_output_key(CITY, job)
        self.store.put(key, data or build_artifact(realistic_metrics(ae_p50)), T0 + timedelta(minutes=minutes))
        return key

    def run(self, key: str) -> Any:
        return self.sync.sync_training_output(BUCKET, key)


def test_duplicate_after_promotion_neither_copies_nor_writes() -> None:
    world = World()
    key = world.upload("a")
    first = world.run(key)
    records_before = dict(world.registry.records)
    second = world.run(key)
    assert (first.action, second.action) == ("promoted", "duplicate")
    assert world.store.copies == [LAYOUT.mme_key(CITY, first.version)]
    assert world.registry.records == records_before


def test_older_event_arriving_late_is_standby_with_the_reason() -> None:
    world = World()
    old, new = world.upload("old", minutes=0), world.upload("new", minutes=5)
    assert world.run(new).action == "promoted"
    late = world.run(old)
    assert late.action == "standby"
    assert late.reason.startswith("not promoted: newer version")
    assert world.registry.live[CITY].version > late.version


def test_interrupted_run_resumes_at_the_gate() -> None:
    # Given a first attempt that copied and recorded the version, then died before deciding
    world = World()
    key = world.upload("a")
    world.registry.before_promote = lambda: (_ for _ in ()).throw(DependencyFailure("DynamoDB timeout"))
    with pytest.raises(DependencyFailure):
        world.run(key)
    (pending,) = world.registry.records.values()
    assert (pending.status, pending.reason) == ("standby", PENDING)
    # When Lambda retries
    world.registry.before_promote = None
    retried = world.run(key)
    # Then it promotes without copying again
    assert retried.action == "promoted"
    assert len(world.store.copies) == 1


def test_late_duplicate_never_undoes_an_operator_rollback() -> None:
    world = World()
    v1 = world.run(world.upload("one", minutes=0)).version
    v2_key = world.upload("two", minutes=5)
    v2 = world.run(v2_key).version
    world.registry.promote(CITY, v1, force=True, expected_live=v2)  # operator rolls back
    duplicate = world.run(v2_key)
    assert duplicate.action == "duplicate"
    assert world.registry.live[CITY].version == v1


def test_losing_a_race_to_the_same_version_counts_as_promoted() -> None:
    world = World()
    key = world.upload("a")

    def concurrent_twin() -> None:
        world.registry.before_promote = None
        version = next(iter(world.registry.records))
        world.registry.promote(CITY, version)
        raise PromotionRefused("live version changed or is newer")

    world.registry.before_promote = concurrent_twin
    outcome = world.run(key)
    assert outcome.action == "promoted"
    assert world.registry.records[outcome.version].status == "live"


def test_losing_a_race_to_a_newer_version_is_standby() -> None:
    world = World()
    newer_key = world.upload("newer", minutes=9)
    key = world.upload("a", minutes=1)

    def newer_wins() -> None:
        world.registry.before_promote = None
        world.run(newer_key)
        raise PromotionRefused("live version changed or is newer")

    world.registry.before_promote = newer_wins
    outcome = world.run(key)
    assert outcome.action == "standby"
    assert "live version changed or is newer; gate no live version" in outcome.reason
    assert world.registry.records[outcome.version].status == "standby"


def test_rejection_without_a_derivable_version_writes_nothing() -> None:
    # Given an artifact too big to even hash within the budget (1 MiB here)
    world = World()
    key = world.upload("huge", data=build_artifact(model=os.urandom(3 * 1024 * 1024)))
    outcome = world.run(key)
    assert outcome.action == "rejected"
    assert outcome.version is None
    assert world.registry.records == {}
    assert world.store.copies == []


def test_transient_failure_in_one_record_is_raised_after_the_others_are_done() -> None:
    world = World()
    good = world.upload("good")
    other_city_key = LAYOUT.training_output_key("Dallas_TX", "x")
    world.store.put(other_city_key, build_artifact(), T0)
    world.store.put(LAYOUT.prep_key("Dallas_TX", "val"), validation_csv(), T0)

    def record(key: str) -> dict[str, Any]:
        return {"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": BUCKET}, "object": {"key": key}}}

    world.store.fail_copy = True
    with pytest.raises(DependencyFailure):
        world.sync.sync_event_records([record(good), record("unrelated/key")])
    world.store.fail_copy = False
    results = world.sync.sync_event_records([record(good), record(other_city_key)])
    assert [r.action for r in results] == ["promoted", "promoted"]


def test_a_promoted_version_is_prewarmed_once_and_a_held_back_one_is_not() -> None:
    world = World()
    promoted = world.run(world.upload("a", ae_p50=20_000))
    held = world.run(world.upload("b", ae_p50=40_000, minutes=1))
    duplicate = world.run(world.upload("a", ae_p50=20_000))
    assert (promoted.action, held.action) == ("promoted", "standby")
    assert duplicate.action in ("duplicate", "promoted")
    assert world.warmer.warmed == [target_model(CITY, promoted.version)]


def test_a_failed_prewarm_never_blocks_the_promotion_and_is_counted() -> None:
    # Given an endpoint that cannot be reached
    world = World(warmer=FakeWarmer(failure="InvokeEndpoint timed out"))
    # When a version is promoted
    outcome = world.run(world.upload("a"))
    # Then it is live all the same, and the failure is counted
    assert outcome.action == "promoted"
    assert world.registry.live[CITY].version == outcome.version
    published = metrics.serialize_metric_set()["_aws"]["CloudWatchMetrics"][0]["Metrics"]
    assert "PrewarmFailures" in {metric["Name"] for metric in published}


# --- rollouts (ROLLOUT_POLICY and the city's override) -------------------------------------------------


def published_metrics() -> set[str]:
    return {metric["Name"] for metric in metrics.serialize_metric_set()["_aws"]["CloudWatchMetrics"][0]["Metrics"]}


def test_with_a_canary_policy_the_first_version_goes_live_and_the_next_enters_a_rollout() -> None:
    world = World(rollout=RolloutPolicy.parse("canary:10"))
    # Given the city's first version: nothing to compare it with, so it goes live directly
    first = world.run(world.upload("a", ae_p50=20_000))
    assert first.action == "promoted"
    # When a better one passes the gate
    second = world.run(world.upload("b", ae_p50=19_000, minutes=1))
    # Then it enters a canary at 10 % (1000 basis points) for ROLLOUT_MAX_DAYS, and live is unchanged
    assert second.action == "rollout"
    assert second.reason.startswith("passed: ")
    assert second.reason.endswith("; rollout canary:10")
    live = world.registry.live[CITY]
    assert live.version == first.version
    assert live.rollout is not None
    assert (live.rollout.candidate_version, live.rollout.mode, live.rollout.weight_bp) == (
        second.version,
        "canary",
        1000,
    )
    assert live.rollout.started_by == "model-sync"
    assert live.rollout.policy == GuardPolicy().as_dict()  # the guards in force at the start, recorded
    ((_, duration, replaced),) = world.registry.started
    assert (duration, replaced) == (14 * 86_400, False)
    assert world.registry.records[second.version].status == "candidate"
    # And the candidate is pre-warmed (it answers a share of the traffic), and the start is counted
    assert world.warmer.warmed[-1] == target_model(CITY, second.version)
    assert "RolloutsStarted" in published_metrics()


def test_a_redelivered_event_never_starts_a_second_rollout_nor_restarts_one() -> None:
    world = World(rollout=RolloutPolicy.parse("shadow"))
    world.run(world.upload("a"))
    key = world.upload("b", minutes=1)
    assert world.run(key).action == "rollout"
    records_before = dict(world.registry.records)
    # When the same event arrives again (Lambda's retry, S3's duplicate delivery)
    again = world.run(key)
    # Then it is a duplicate: no new rollout, no write
    assert (again.action, again.reason) == ("duplicate", f"already candidate: {records_before[again.version].reason}")
    assert len(world.registry.started) == 1
    assert world.registry.records == records_before


def test_an_interrupted_rollout_start_resumes_once() -> None:
    # Given a first attempt that recorded the version and then failed to reach the registry
    world = World(rollout=RolloutPolicy.parse("canary:5"))
    world.run(world.upload("a"))
    key = world.upload("b", minutes=1)
    world.registry.before_start_rollout = lambda: (_ for _ in ()).throw(DependencyFailure("DynamoDB timeout"))
    with pytest.raises(DependencyFailure):
        world.run(key)
    # When Lambda retries / Then the rollout starts, once
    world.registry.before_start_rollout = None
    assert world.run(key).action == "rollout"
    assert len(world.registry.started) == 1


def test_a_newer_candidate_supersedes_the_running_rollout_and_an_older_one_waits() -> None:
    world = World(rollout=RolloutPolicy.parse("canary:10,days:3"))
    world.run(world.upload("live", minutes=0))
    older_key = world.upload("older", minutes=2)
    first = world.run(world.upload("first", minutes=3))
    # When a newer candidate passes the gate during the rollout
    newer = world.run(world.upload("newer", minutes=9))
    # Then it replaces the rollout (the first candidate back to standby), for the policy's 3 days
    assert newer.action == "rollout"
    assert world.registry.live[CITY].rollout is not None
    assert world.registry.live[CITY].rollout.candidate_version == newer.version
    assert world.registry.records[first.version].status == "standby"
    assert [(duration, replaced) for _, duration, replaced in world.registry.started] == [
        (3 * 86_400, False),
        (3 * 86_400, True),
    ]
    # And a late event of an older version than the candidate stays standby, saying why
    late = world.run(older_key)
    assert late.action == "standby"
    assert late.reason == f"not rolled out: newer version {newer.version} is in a canary rollout"
    assert len(world.registry.started) == 2


@pytest.mark.parametrize(
    ("deployment", "override", "expected"),
    [
        ("off", "shadow:50,days:2", ("rollout", "shadow", 5000, 2 * 86_400)),
        ("canary:10", "off", ("promoted", None, None, None)),
        ("canary:10", "no such policy", ("rollout", "canary", 1000, 14 * 86_400)),  # logged; the deployment's
        ("off", None, ("promoted", None, None, None)),
    ],
)
def test_a_city_override_wins_over_the_deployment_policy(
    deployment: str, override: str | None, expected: tuple[Any, ...]
) -> None:
    world = World(rollout=RolloutPolicy.parse(deployment))
    if override is not None:
        world.registry.overrides[CITY] = override
    world.run(world.upload("a"))
    outcome = world.run(world.upload("b", minutes=1))
    rollout = world.registry.live[CITY].rollout
    started = world.registry.started[0][1] if world.registry.started else None
    assert (
        outcome.action,
        rollout.mode if rollout else None,
        rollout.weight_bp if rollout else None,
        started,
    ) == expected


def test_the_gate_still_holds_back_a_worse_candidate_under_a_rollout_policy() -> None:
    world = World(rollout=RolloutPolicy.parse("shadow"))
    world.run(world.upload("a", ae_p50=20_000))
    held = world.run(world.upload("b", ae_p50=40_000, minutes=1))
    assert held.action == "standby"
    assert world.registry.started == []


def test_losing_a_rollout_start_to_a_concurrent_twin_counts_as_the_rollout() -> None:
    world = World(rollout=RolloutPolicy.parse("canary:10"))
    world.run(world.upload("a"))
    key = world.upload("b", minutes=1)

    def concurrent_twin() -> None:
        world.registry.before_start_rollout = None
        version = max(world.registry.records)
        world.registry.start_rollout(CITY, version, "canary", 1000, {}, 86_400.0, "model-sync")
        raise RolloutConflict("the registry changed meanwhile")

    world.registry.before_start_rollout = concurrent_twin
    outcome = world.run(key)
    assert (outcome.action, outcome.reason) == ("rollout", "already in a canary rollout")
    assert world.registry.records[outcome.version].status == "candidate"
    assert len(world.registry.started) == 1


def test_with_the_policy_off_a_newer_version_goes_live_and_ends_a_running_rollout() -> None:
    # Given a city with a canary running (started under a policy since switched off)
    world = World(rollout=RolloutPolicy.parse("canary:10"))
    world.run(world.upload("a"))
    candidate = world.run(world.upload("b", minutes=1))
    world.rollout = ROLLOUT_OFF
    # When a newer version passes the gate
    newer = world.run(world.upload("c", minutes=2))
    # Then it goes live at once, and the candidate is back to standby
    assert newer.action == "promoted"
    assert world.registry.live[CITY].version == newer.version
    assert world.registry.live[CITY].rollout is None
    assert world.registry.records[candidate.version].status == "standby"
