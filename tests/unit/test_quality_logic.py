"""quality.logic: the join of labels to captured predictions, idempotency and retries, with in-memory doubles."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from house_prices import ids, labels
from house_prices.captures import CapturedPrediction
from house_prices.ids import UlidGenerator
from house_prices.labels import Label
from house_prices.live_quality import Aggregate
from quality.logic import Outcome, Priced, QualityService, Recorded, VersionFacts, recorded_ae_p50

NOW = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)
WAIT = timedelta(minutes=15)


def prediction_id(at: datetime, city: str = "Chicago_IL", n: int = 1) -> str:
    generator = UlidGenerator(clock_ms=lambda: int(at.timestamp() * 1000), random_bits=lambda: n)
    return ids.new_prediction_ids(city, 1, generator)[0]


def captured(pid: str, price: float, version: str = "v1") -> CapturedPrediction:
    made_at, city = ids.parse_prediction_id(pid)
    return CapturedPrediction(pid, city, version, made_at.isoformat(), "req", {}, price)


class Captures:
    def __init__(self, predictions: Iterable[CapturedPrediction] = ()) -> None:
        self.predictions = list(predictions)
        self.reads: list[tuple[str, str]] = []

    def partition(self, city: str, day: str) -> Iterable[CapturedPrediction]:
        self.reads.append((city, day))
        return [p for p in self.predictions if p.city == city and p.time[:10] == day]


class Store:
    """The ledger and the aggregates, with the adapter's contract: claim once, counted in the same step."""

    def __init__(self) -> None:
        self.ledger: dict[str, tuple[str, str]] = {}  # claim -> (source, the label key that claimed it)
        self.aggregates: dict[tuple[str, str], Aggregate] = {}
        self.offline: dict[tuple[str, str], float | None] = {}
        self.flags: dict[tuple[str, str], bool] = {}

    def record(
        self,
        *,
        label: Label,
        source: str,
        prediction: Priced,
        aggregate: Aggregate,
        offline_ae_p50: float | None,
        expires_at: int,
    ) -> Recorded:
        claims = {label.key, f"id#{prediction.prediction_id}"}
        if label.key in self.ledger:
            same = self.ledger[label.key] == (source, label.key)
            return Recorded.REDELIVERED if same else Recorded.DUPLICATE
        if claims & set(self.ledger):
            return Recorded.DUPLICATE
        for claim in claims:
            self.ledger[claim] = (source, label.key)
        key = (prediction.city, prediction.version)
        self.aggregates[key] = self.aggregates.get(key, Aggregate()).merge(aggregate)
        self.offline[key] = offline_ae_p50
        return Recorded.COUNTED

    def live_item(self, city: str, version: str) -> Mapping[str, Any]:
        aggregate = self.aggregates.get((city, version), Aggregate())
        flag = {"degraded": self.flags[(city, version)]} if (city, version) in self.flags else {}
        return {**aggregate.increments(), "offline_ae_p50": self.offline.get((city, version)), **flag}

    def save_degraded(self, city: str, version: str, degraded: bool, seen_count: int, was_degraded: bool) -> bool:
        if (
            self.aggregates[(city, version)].count != seen_count
            or self.flags.get((city, version), False) != was_degraded
        ):
            return False
        self.flags[(city, version)] = degraded
        return True


class Offline:
    def __init__(self, live: bool = True) -> None:
        self.calls = 0
        self.live = live

    def facts(self, city: str, version: str) -> VersionFacts:
        self.calls += 1
        return VersionFacts(25_000.0, self.live)


class Files:
    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files

    def read(self, bucket: str, key: str) -> tuple[bytes, str] | None:
        return (self.files[key], "etag1") if key in self.files else None


def service(captures: Captures, store: Store, files: Files | None = None) -> QualityService:
    return QualityService(
        captures, store, Offline(), retention_days=365, capture_wait=WAIT, files=files, labels_prefix="p/labels/"
    )


def label(pid: str, sale: float = 100_000.0) -> Label:
    return labels.parse_label({"prediction_id": pid, "sale_price": sale, "sold_at": "2026-12-01"}, NOW)


def test_a_label_joins_its_prediction_and_counts_its_error() -> None:
    # Given a prediction of 110k captured yesterday and its label of 100k
    pid = prediction_id(NOW - timedelta(days=1))
    store = Store()
    quality = service(Captures([captured(pid, 110_000)]), store)
    # When the label is processed
    report = quality.process([label(pid)], "sqs:m1", NOW)
    # Then it is joined, and the (city, version) aggregate holds its +10k error with the offline figure
    assert report.outcomes[Outcome.JOINED] == 1
    assert not report.retry
    aggregate = store.aggregates[("Chicago_IL", "v1")]
    assert (aggregate.count, aggregate.bias) == (1, 10_000)
    assert store.offline[("Chicago_IL", "v1")] == 25_000.0


def test_a_resent_label_is_a_duplicate_and_a_redelivery_is_neither() -> None:
    pid = prediction_id(NOW - timedelta(days=1))
    store = Store()
    quality = service(Captures([captured(pid, 110_000)]), store)
    quality.process([label(pid)], "sqs:m1", NOW)
    # When the same message is redelivered, then the label is sent again in another message
    again = quality.process([label(pid)], "sqs:m1", NOW)
    resent = quality.process([label(pid, 120_000)], "sqs:m2", NOW)
    # Then nothing is counted twice; the resend is reported as a duplicate
    assert again.outcomes[Outcome.REDELIVERED] == 1
    assert resent.outcomes[Outcome.DUPLICATE] == 1
    assert store.aggregates[("Chicago_IL", "v1")].count == 1


def test_a_young_prediction_not_yet_delivered_is_retried_then_unknown() -> None:
    # Given a label for a prediction made 5 minutes ago that Firehose has not delivered yet
    pid = prediction_id(NOW - timedelta(minutes=5))
    captures = Captures()
    quality = service(captures, Store())
    # Then the label is pending (the message is retried) ...
    assert quality.process([label(pid)], "sqs:m1", NOW).retry
    # ... and once it is delivered, the retry joins it (the partition is read again, not from the cache)
    captures.predictions.append(captured(pid, 90_000))
    assert quality.process([label(pid)], "sqs:m1", NOW).outcomes[Outcome.JOINED] == 1
    # And a label whose prediction is still missing after the wait is unknown, not retried
    late = prediction_id(NOW - timedelta(minutes=20), n=2)
    report = quality.process([label(late)], "sqs:m3", NOW)
    assert report.outcomes[Outcome.UNKNOWN] == 1
    assert not report.retry


def test_a_partition_is_read_once_per_invocation() -> None:
    day = NOW - timedelta(days=2)
    pids = [prediction_id(day, n=i) for i in range(1, 6)]
    captures = Captures([captured(p, 100_000 + i) for i, p in enumerate(pids)])
    quality = service(captures, Store())
    quality.process([label(p) for p in pids], "sqs:m1", NOW)
    assert captures.reads == [("Chicago_IL", day.date().isoformat())]
    quality.new_invocation()
    quality.process([label(pids[0])], "sqs:m2", NOW)
    assert len(captures.reads) == 2


def test_a_label_by_house_id_without_a_house_index_is_reported_unknown_not_counted() -> None:
    store = Store()
    by_house = labels.parse_label(
        {"city": "Chicago_IL", "house_id": "h", "sale_price": 1e5, "sold_at": "2026-12-01"}, NOW
    )
    assert service(Captures(), store).process([by_house], "sqs:m", NOW).outcomes[Outcome.UNKNOWN] == 1
    assert store.aggregates == {}


def test_the_same_label_twice_in_one_source_is_a_duplicate_counted_once() -> None:
    # Given a message that holds the same label twice
    pid = prediction_id(NOW - timedelta(days=1))
    store = Store()
    quality = service(Captures([captured(pid, 110_000)]), store)
    # When it is processed, then redelivered
    first = quality.process([label(pid), label(pid, 90_000)], "sqs:m1", NOW)
    again = quality.process([label(pid), label(pid, 90_000)], "sqs:m1", NOW)
    # Then the first is counted, the second reported as a duplicate, both times; the aggregate counts one
    assert (first.outcomes[Outcome.JOINED], first.outcomes[Outcome.DUPLICATE]) == (1, 1)
    assert (again.outcomes[Outcome.REDELIVERED], again.outcomes[Outcome.DUPLICATE]) == (1, 1)
    assert store.aggregates[("Chicago_IL", "v1")].count == 1


def test_a_router_message_is_processed_and_a_hostile_one_is_refused_without_retry() -> None:
    pid = prediction_id(NOW - timedelta(days=1))
    store = Store()
    quality = service(Captures([captured(pid, 110_000)]), store)
    body = labels.label_message([label(pid)], NOW)
    assert quality.handle_message(body, "m1", NOW).outcomes[Outcome.JOINED] == 1
    hostile = quality.handle_message('{"format": 1, "labels": [{"prediction_id": "x"}]}', "m2", NOW)
    assert (hostile.invalid, hostile.retry) == (1, False)
    assert quality.handle_message('{"Event": "s3:TestEvent"}', "m3", NOW).as_dict()["invalid"] == 0


def test_an_s3_notification_ingests_the_label_file_and_counts_bad_rows() -> None:
    # Given a CSV file under labels/ with one good row and one bad row, and S3's notification of it
    pid = prediction_id(NOW - timedelta(days=1))
    store = Store()
    files = Files(
        {"p/labels/2026 12.csv": f"prediction_id,sale_price,sold_at\n{pid},100000,2026-12-01\nx,1,2\n".encode()}
    )
    quality = service(Captures([captured(pid, 80_000)]), store, files)
    event = {
        "Records": [
            {"s3": {"bucket": {"name": "b"}, "object": {"key": "p/labels/2026+12.csv"}}},
            {"s3": {"bucket": {"name": "b"}, "object": {"key": "p/elsewhere.csv"}}},
        ]
    }
    # When the notification is handled
    report = quality.handle_message(json.dumps(event), "m1", NOW)
    # Then the good row is joined, the bad one counted invalid, the other prefix ignored
    assert (report.outcomes[Outcome.JOINED], report.invalid) == (1, 1)
    assert store.aggregates[("Chicago_IL", "v1")].bias == -20_000
    # And the same file notified again counts nothing twice
    again = quality.handle_message(json.dumps(event), "m9", NOW)
    assert again.outcomes[Outcome.REDELIVERED] == 1


@pytest.mark.parametrize(
    ("metrics", "expected"),
    [
        ({"validation": {"ae_p50": 10.0}, "measured": {"validation": {"ae_p50": 12.0}}}, 12.0),
        ({"validation": {"ae_p50": 10}}, 10.0),
        ({"validation": {"ae_p50": "x"}}, None),
        ({}, None),
        (None, None),
    ],
)
def test_the_offline_figure_is_the_gates(metrics: dict[str, object] | None, expected: float | None) -> None:
    assert recorded_ae_p50(metrics) == expected
