"""The DynamoDB registry adapter against moto (in-process: an adapter test)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from house_prices.errors import PromotionRefused, UnknownCity, UnknownVersion
from house_prices.registry import LiveModel, ModelRegistry, ModelVersion, Status
from local.s3 import create_table
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
