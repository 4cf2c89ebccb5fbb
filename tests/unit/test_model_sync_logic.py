"""Promotion decisions of model_sync.logic with in-memory adapters: duplicates, order, resumes, races."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from house_prices.errors import DependencyFailure, PromotionRefused, UnknownVersion
from house_prices.naming import KeyLayout, target_model
from house_prices.observability import metrics
from house_prices.registry import LiveModel, ModelVersion, Status
from model_sync.gate import GatePolicy
from model_sync.logic import PENDING, ModelSync, ObjectInfo
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
    """Same rules as ModelRegistry: create-once records, monotonic promotion, force with expected live.

    Its methods restate model_sync.logic.Registry's signatures on purpose: that protocol is what the logic
    takes, and this fake stands in for ModelRegistry behind it.
    """

    records: dict[str, ModelVersion] = field(default_factory=dict)
    live: dict[str, LiveModel] = field(default_factory=dict)
    before_promote: Any = None

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
        if current:
            self.set_status(city, current.version, "standby", self.records[current.version].reason)
        record = self.version(city, version)
        self.records[version] = replace(record, status="live", reason=record.reason if reason is None else reason)
        self.live[city] = LiveModel(city, version, target_model(city, version), "now")
        return self.live[city]


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

    def __post_init__(self) -> None:
        # The city's held-out rows, which the gate measures every model on.
        self.store.put(LAYOUT.prep_key(CITY, "val"), validation_csv(), T0)

    @property
    def sync(self) -> ModelSync:
        return ModelSync(
            self.store, self.registry, BUCKET, LAYOUT, self.gate, max_unpacked_bytes=1024 * 1024, warmer=self.warmer
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
