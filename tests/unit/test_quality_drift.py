"""quality.logic, drift part: capture objects binned per (city, version), counted once per object, drift transitions."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from house_prices import drift
from house_prices.captures import CapturedPrediction
from quality.logic import QualityService
from tests.quality_doubles import FakeEvidenceLedger

NOW = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)
KEY = "p/captures/city=Chicago_IL/date=2026-12-07/s-1-2026-12-07-03-00-00-u.jsonl.gz"
REFERENCES = {"SQUARE_FEET": drift.Reference((1000.0, 2000.0), (10, 10, 10))}


class Objects:
    def __init__(self) -> None:
        self.objects: dict[str, list[CapturedPrediction]] = {}

    def read_object(self, bucket: str, key: str) -> tuple[list[CapturedPrediction], str] | None:
        return (self.objects[key], "etag1") if key in self.objects else None


class References:
    def __init__(self, known: Mapping[tuple[str, str], Mapping[str, drift.Reference]]) -> None:
        self.known = known
        self.calls = 0

    def references(self, city: str, version: str) -> Mapping[str, drift.Reference]:
        self.calls += 1
        return self.known.get((city, version), {})


class DriftStore(FakeEvidenceLedger):
    """The adapter's contract: the object is claimed once and its counts ADDed in the same step (the ledger's)."""

    def live_item(self, city: str, version: str) -> Mapping[str, Any]:
        return dict(self.items.get((city, version), {}))

    def save_report(
        self, city: str, version: str, report: Mapping[str, Any], seen_count: int, was_drifting: bool
    ) -> bool:
        item = self.items[(city, version)]
        saved = item.get(drift.REPORT)
        if item.get(drift.LIVE_COUNT) != seen_count or (saved is not None and saved["drifting"] != was_drifting):
            return False
        item[drift.REPORT] = dict(report)
        return True


def prediction(n: int, square_feet: float, version: str = "v1", city: str = "Chicago_IL") -> CapturedPrediction:
    return CapturedPrediction(f"id{n}-{city}", city, version, NOW.isoformat(), "req", {"SQUARE_FEET": square_feet}, 1.0)


def service(objects: Objects, store: DriftStore, references: References, min_count: int = 4) -> QualityService:
    return QualityService(
        None,  # type: ignore[arg-type]  # labels are not joined here
        None,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        retention_days=365,
        capture_wait=timedelta(minutes=15),
        capture_objects=objects,
        captures_prefix="p/captures/",
        references=references,
        drift_store=store,
        drift_thresholds=drift.Thresholds(psi=0.2, js=0.1, min_count=min_count),
    )


def s3_records(*keys: str) -> list[dict[str, Any]]:
    return [{"eventSource": "aws:s3", "s3": {"bucket": {"name": "b"}, "object": {"key": key}}} for key in keys]


def test_a_capture_objects_predictions_are_binned_by_their_versions_reference_and_counted_once() -> None:
    # Given an object of three predictions of (Chicago_IL, v1), one of them repeated (a Firehose retry)
    objects, store = Objects(), DriftStore()
    objects.objects[KEY] = [prediction(1, 500.0), prediction(2, 1500.0), prediction(3, 2500.0), prediction(3, 2500.0)]
    quality = service(objects, store, References({("Chicago_IL", "v1"): REFERENCES}))
    # When its S3 event is handled, then redelivered
    first = quality.handle_capture_event(s3_records(KEY), NOW)
    again = quality.handle_capture_event(s3_records(KEY), NOW)
    # Then each prediction is counted once, in the bin of its value
    item = store.items[("Chicago_IL", "v1")]
    assert {name: item[name] for name in item if name != drift.REPORT} == {
        "drift_n": 3,
        "drift_SQUARE_FEET_0": 1,
        "drift_SQUARE_FEET_1": 1,
        "drift_SQUARE_FEET_2": 1,
    }
    assert (first.counted, first.redelivered, first.objects) == (3, 0, 1)
    assert (again.counted, again.redelivered) == (0, 3)
    assert store.ledger == {f"capture#{KEY}": f"s3://b/{KEY}@etag1"}
    # And the report is saved, below the minimum sample: not drifting
    assert item[drift.REPORT]["count"] == 3
    assert item[drift.REPORT]["drifting"] is False


def batch(*values: float) -> list[CapturedPrediction]:
    """Predictions with ids never used before in the test."""
    start = len(USED)
    USED.extend(values)
    return [prediction(start + n, value) for n, value in enumerate(values)]


USED: list[float] = []


def test_a_version_starts_then_stops_drifting_and_each_transition_counts_once() -> None:
    objects, store = Objects(), DriftStore()
    references = References({("Chicago_IL", "v1"): REFERENCES})
    quality = service(objects, store, references, min_count=6)
    # Given six predictions all above the reference's top edge (a third of the training rows are there)
    objects.objects["p/captures/a"] = batch(*[3000.0] * 6)
    # When counted / Then the version started drifting
    started = quality.handle_capture_event(s3_records("p/captures/a"), NOW)
    assert (started.drift_started, started.drift_stopped) == (1, 0)
    assert store.items[("Chicago_IL", "v1")][drift.REPORT]["features"]["SQUARE_FEET"]["drifting"] is True
    # And the references were read once in the invocation
    assert references.calls == 1
    # When three more of the same arrive, there is no new transition
    objects.objects["p/captures/b"] = batch(*[3000.0] * 3)
    assert quality.handle_capture_event(s3_records("p/captures/b"), NOW).drift_started == 0
    # When nine below and nine in the middle arrive, the live mix is exactly the reference's: it stops
    objects.objects["p/captures/c"] = batch(*[500.0] * 9, *[1500.0] * 9)
    back = quality.handle_capture_event(s3_records("p/captures/c"), NOW)
    assert store.items[("Chicago_IL", "v1")]["drift_n"] == 27
    assert (back.drift_started, back.drift_stopped) == (0, 1)
    assert store.items[("Chicago_IL", "v1")][drift.REPORT]["features"]["SQUARE_FEET"]["psi"] == 0


def test_a_version_without_reference_is_not_counted() -> None:
    # Given a version trained before references existed
    objects, store = Objects(), DriftStore()
    objects.objects[KEY] = [prediction(1, 500.0, version="old")]
    quality = service(objects, store, References({}))
    # When its capture object arrives
    report = quality.handle_capture_event(s3_records(KEY), NOW)
    # Then nothing is written and the predictions are reported unreferenced
    assert (report.counted, report.unreferenced) == (0, 1)
    assert store.items == {}
    assert store.ledger == {}


def test_a_stale_refresh_saves_nothing_and_counts_no_transition() -> None:
    # Given a store whose counts moved on between the read and the save (another invocation)
    objects, store = Objects(), DriftStore()
    objects.objects[KEY] = [prediction(n, 3000.0) for n in range(4)]
    original = store.live_item

    def stale(city: str, version: str) -> Mapping[str, Any]:
        item = dict(original(city, version))
        item[drift.LIVE_COUNT] = item[drift.LIVE_COUNT] - 1
        return item

    store.live_item = stale  # type: ignore[method-assign]
    report = service(objects, store, References({("Chicago_IL", "v1"): REFERENCES})).handle_capture_event(
        s3_records(KEY), NOW
    )
    # Then the report is left to the newer refresh, and no transition is counted here
    assert report.drift_started == 0
    assert drift.REPORT not in store.items[("Chicago_IL", "v1")]


def test_keys_outside_the_captures_prefix_are_not_capture_objects() -> None:
    quality = service(Objects(), DriftStore(), References({}))
    assert quality.is_capture_key("p/captures/city%3DX/a.gz")
    assert not quality.is_capture_key("p/labels/a.csv")


def test_drift_thresholds_are_settings_with_common_practice_defaults() -> None:
    from house_prices.settings import SettingsError
    from quality.settings import QualitySettings

    base = {
        "ARTIFACT_BUCKET": "b",
        "QUALITY_TABLE": "q",
        "LABEL_LEDGER_TABLE": "l",
        "REGISTRY_TABLE": "r",
        "FEEDBACK_QUEUE_URL": "https://sqs/q",
        "HOUSE_INDEX_TABLE": "h",
    }
    # Given no drift variables / Then PSI 0.2, JS 0.1 and the minimum sample
    assert QualitySettings.from_env(base).drift_thresholds == drift.Thresholds(0.2, 0.1, drift.DEFAULT_MIN_COUNT)
    # Given all three / Then they are read
    custom = {**base, "DRIFT_PSI_THRESHOLD": "0.25", "DRIFT_JS_THRESHOLD": "0.15", "DRIFT_MIN_COUNT": "1000"}
    assert QualitySettings.from_env(custom).drift_thresholds == drift.Thresholds(0.25, 0.15, 1000)
    # Given bad values / Then one error names each variable
    bad = {**base, "DRIFT_PSI_THRESHOLD": "nan", "DRIFT_JS_THRESHOLD": "-1", "DRIFT_MIN_COUNT": "0"}
    with pytest.raises(SettingsError) as caught:
        QualitySettings.from_env(bad)
    message = str(caught.value)
    for name in ("DRIFT_PSI_THRESHOLD", "DRIFT_JS_THRESHOLD", "DRIFT_MIN_COUNT"):
        assert name in message
