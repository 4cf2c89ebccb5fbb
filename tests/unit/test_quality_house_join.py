"""quality.logic: labels by (city, house_id) through the house index, and the degradation flag per version."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from house_prices import ids, labels
from house_prices.captures import CapturedPrediction
from house_prices.ids import UlidGenerator
from house_prices.labels import Label
from house_prices.live_quality import DegradationRule, QualitySummary
from quality.adapters.dynamodb import house_id_bounds
from quality.logic import (
    HousePrediction,
    Outcome,
    QualityService,
    house_entries,
    house_window,
)
from tests.unit.test_quality_logic import NOW, WAIT, Captures, Offline, Store, captured, label, prediction_id

CITY = "Chicago_IL"


class Houses:
    """The index's contract: entries by (city, house_id); ``latest`` = the largest id made in the window."""

    def __init__(self) -> None:
        self.entries: dict[tuple[str, str], dict[str, HousePrediction]] = {}
        self.expiry: dict[str, int] = {}
        self.queries = 0

    def add(self, entries: Sequence[tuple[HousePrediction, int]]) -> None:
        for entry, expires_at in entries:
            self.entries.setdefault((entry.city, entry.house_id), {})[entry.prediction_id] = entry
            self.expiry[entry.prediction_id] = expires_at

    def latest(self, city: str, house_id: str, made_from: datetime, made_before: datetime) -> HousePrediction | None:
        self.queries += 1
        inside = [
            entry
            for pid, entry in self.entries.get((city, house_id), {}).items()
            if made_from <= ids.parse_prediction_id(pid).timestamp < made_before
        ]
        return max(inside, key=lambda entry: entry.prediction_id, default=None)


def priced(at: datetime, price: float, house_id: str = "listing-1", n: int = 1, version: str = "v1") -> HousePrediction:
    return HousePrediction(CITY, house_id, prediction_id(at, n=n), version, price)


def house_label(sold_at: str = "2026-12-01", sale: float = 100_000.0, house_id: str = "listing-1") -> Label:
    return labels.parse_label({"city": CITY, "house_id": house_id, "sale_price": sale, "sold_at": sold_at}, NOW)


def service(
    houses: Houses, store: Store, captures: Captures | None = None, offline: Offline | None = None, **kwargs: object
) -> QualityService:
    return QualityService(
        captures or Captures(),
        store,
        offline or Offline(),
        retention_days=365,
        capture_wait=WAIT,
        houses=houses,
        **kwargs,  # type: ignore[arg-type]
    )


def test_the_window_ends_with_the_sale_day_and_starts_with_the_retention() -> None:
    made_from, made_before = house_window("2026-12-01", NOW, 365)
    assert made_before == datetime(2026, 12, 2, tzinfo=UTC)
    assert made_from == NOW - timedelta(days=365)


def test_a_house_label_joins_the_latest_prediction_made_before_the_end_of_its_sale_day() -> None:
    # Given a house priced three times: twice before its sale (on the 1st) and once after (a relisting)
    houses, store = Houses(), Store()
    houses.add(
        [
            (priced(datetime(2026, 11, 20, tzinfo=UTC), 90_000, n=1), 0),
            (priced(datetime(2026, 12, 1, 23, 59, tzinfo=UTC), 120_000, n=2), 0),
            (priced(datetime(2026, 12, 2, 0, 0, tzinfo=UTC), 500_000, n=3), 0),
        ]
    )
    # When its sale on the 1st is reported by (city, house_id)
    report = service(houses, store).process([house_label("2026-12-01")], "sqs:m1", NOW)
    # Then it is joined to the price of the 1st, 23:59 (error +20k), one query, no capture read
    assert report.outcomes[Outcome.JOINED] == 1
    assert store.aggregates[(CITY, "v1")].bias == 20_000
    assert houses.queries == 1


def test_a_prediction_older_than_the_retention_window_is_not_joined() -> None:
    houses, store = Houses(), Store()
    houses.add([(priced(NOW - timedelta(days=366), 90_000), 0)])
    report = service(houses, store).process([house_label("2026-12-01")], "sqs:m1", NOW)
    assert report.outcomes[Outcome.UNKNOWN] == 1
    assert store.aggregates == {}


def test_a_label_by_id_and_one_by_house_for_the_same_prediction_count_once() -> None:
    # Given a captured prediction of listing-1, indexed
    at = NOW - timedelta(days=3)
    entry = priced(at, 110_000)
    houses, store = Houses(), Store()
    captures = Captures([captured(entry.prediction_id, 110_000)._replace(house_id="listing-1")])
    houses.add([(entry, 0)])
    quality = service(houses, store, captures)
    # When its sale is reported by house, then by prediction id (another caller, another message)
    by_house = quality.process([house_label(at.date().isoformat())], "sqs:m1", NOW)
    by_id = quality.process([label(entry.prediction_id)], "sqs:m2", NOW)
    # And the other way round for a second house
    other = priced(at, 80_000, house_id="listing-2", n=2)
    houses.add([(other, 0)])
    captures.predictions.append(captured(other.prediction_id, 80_000))
    quality.new_invocation()  # the partition is read again
    first_id = quality.process([label(other.prediction_id)], "sqs:m3", NOW)
    then_house = quality.process([house_label(at.date().isoformat(), house_id="listing-2")], "sqs:m4", NOW)
    # Then each prediction is counted once and the second label of each is reported as a duplicate
    assert by_house.outcomes[Outcome.JOINED] == first_id.outcomes[Outcome.JOINED] == 1
    assert by_id.outcomes[Outcome.DUPLICATE] == then_house.outcomes[Outcome.DUPLICATE] == 1
    assert store.aggregates[(CITY, "v1")].count == 2


def test_a_house_label_waits_for_a_recent_sale_only_while_it_is_young() -> None:
    houses, store = Houses(), Store()
    quality = service(houses, store)
    today = NOW.date().isoformat()
    # Given no prediction of the house indexed yet
    # Then a sale today, received just now, is pending (its prediction may be in Firehose's buffer) ...
    assert quality.process([house_label(today)], "sqs:m1", NOW, received_at=NOW).retry
    # ... but not once the label has waited capture_wait, nor for a sale whose day ended long ago
    late = quality.process([house_label(today)], "sqs:m1", NOW, received_at=NOW - WAIT)
    old_sale = quality.process([house_label("2026-11-01")], "sqs:m2", NOW, received_at=NOW)
    assert late.outcomes[Outcome.UNKNOWN] == old_sale.outcomes[Outcome.UNKNOWN] == 1
    # And once the prediction is indexed, the retry joins it
    houses.add([(priced(NOW - timedelta(minutes=3), 100_000), 0)])
    assert quality.process([house_label(today)], "sqs:m1", NOW, received_at=NOW).outcomes[Outcome.JOINED] == 1


def test_a_capture_object_indexes_its_houses_once_each_with_the_ledgers_expiry() -> None:
    # Given a capture object with two predictions of listing-1 (one repeated by a Firehose retry) and one without
    at = NOW - timedelta(minutes=10)
    first, second, anonymous = (prediction_id(at, n=n) for n in (1, 2, 3))
    predictions = [
        captured(first, 100.0)._replace(house_id="listing-1"),
        captured(second, 200.0)._replace(house_id="listing-1"),
        captured(second, 200.0)._replace(house_id="listing-1"),
        captured(anonymous, 300.0),
    ]

    class Objects:
        def read_object(self, bucket: str, key: str) -> tuple[list[CapturedPrediction], str] | None:
            return predictions, "etag"

    houses = Houses()
    quality = service(houses, Store(), capture_objects=Objects(), captures_prefix="p/captures/")
    # When its S3 event is handled (drift not wired: the index does not depend on it)
    report = quality.handle_capture_event([{"s3": {"bucket": {"name": "b"}, "object": {"key": "p/captures/k"}}}], NOW)
    # Then each prediction with a house_id is indexed once, until its time + retention + a day
    assert report.houses_indexed == 2
    assert set(houses.entries[(CITY, "listing-1")]) == {first, second}
    assert houses.expiry[first] == int((at + timedelta(days=366)).timestamp())
    assert house_entries([captured(anonymous, 1.0)], 365) == []


def test_the_sort_key_bounds_hold_exactly_the_ids_of_the_window() -> None:
    # Given a window of one day and ids made at its edges and just outside
    start, end = datetime(2026, 12, 1, tzinfo=UTC), datetime(2026, 12, 2, tzinfo=UTC)
    low, high = house_id_bounds(start, end)

    def made(at: datetime, bits: int) -> str:
        generator = UlidGenerator(clock_ms=lambda: int(at.timestamp() * 1000), random_bits=lambda: bits)
        return ids.new_prediction_ids(CITY, 1, generator)[0]

    inside = [made(start, 0), made(end - timedelta(milliseconds=1), 2**80 - 1)]
    outside = [made(start - timedelta(milliseconds=1), 2**80 - 1), made(end, 0)]
    # Then DynamoDB's BETWEEN (string order) keeps exactly those made inside
    assert all(low <= pid <= high for pid in inside)
    assert not any(low <= pid <= high for pid in outside)


def summary(count: int, median_ae: float, offline: float | None = 10_000.0) -> QualitySummary:
    return QualitySummary(CITY, "v1", count, None, None, None, median_ae, offline)


@pytest.mark.parametrize(
    ("count", "median_ae", "offline", "degraded"),
    [
        (50, 15_001.0, 10_000.0, True),
        (50, 15_000.0, 10_000.0, False),
        (49, 90_000.0, 10_000.0, False),
        (50, 9e9, None, False),
    ],
)
def test_the_degradation_rule(count: int, median_ae: float, offline: float | None, degraded: bool) -> None:
    assert DegradationRule(ratio=1.5, min_count=50).applies(summary(count, median_ae, offline)) is degraded


def test_a_live_version_degrades_then_recovers_and_each_transition_counts_once() -> None:
    # Given a live version with an offline median error of 25k and a rule of 1.5 × with 3 labels
    store, houses = Store(), Houses()
    at = NOW - timedelta(days=2)
    pids = [prediction_id(at, n=n) for n in range(1, 10)]
    captures = Captures([captured(pid, 100_000) for pid in pids])
    quality = service(houses, store, captures, degradation=DegradationRule(ratio=1.5, min_count=3))
    # When three labels err by 50k each (2 × offline)
    quality.process([label(pid, 150_000) for pid in pids[:3]], "sqs:m1", NOW)
    degraded = quality.refresh_quality()
    # Then the version is degraded, counted once; a refresh with nothing new counts nothing
    assert (degraded.degraded, degraded.recovered) == (1, 0)
    assert store.flags[(CITY, "v1")] is True
    assert quality.refresh_quality().degraded == 0
    # When six exact labels follow (the median falls to 0), then it recovers
    quality.process([label(pid, 100_000) for pid in pids[3:]], "sqs:m2", NOW)
    recovered = quality.refresh_quality()
    assert (recovered.degraded, recovered.recovered) == (0, 1)


def test_a_version_that_is_not_live_is_never_flagged() -> None:
    store = Store()
    pids = [prediction_id(NOW - timedelta(days=2), n=n) for n in range(1, 4)]
    quality = service(
        Houses(),
        store,
        Captures([captured(pid, 100_000) for pid in pids]),
        Offline(live=False),
        degradation=DegradationRule(ratio=1.5, min_count=3),
    )
    quality.process([label(pid, 150_000) for pid in pids], "sqs:m1", NOW)
    assert quality.refresh_quality().degraded == 0
    assert store.flags == {}


def test_a_queue_message_tells_when_its_labels_were_received() -> None:
    pid = prediction_id(NOW - timedelta(days=1))
    body = labels.label_message([label(pid)], NOW - timedelta(minutes=5))
    received_at, parsed = labels.read_label_message(body, NOW)
    assert received_at == NOW - timedelta(minutes=5)
    assert [p.prediction_id for p in parsed] == [pid]
    # A received_at in the future or unreadable reads as now
    assert labels.read_label_message(body.replace('"received_at":"2026', '"received_at":"2027'), NOW)[0] == NOW
    assert labels.read_label_message(body.replace('"received_at":"2026', '"received_at":"x'), NOW)[0] == NOW
