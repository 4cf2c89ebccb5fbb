"""The quality function's real handler on moto: captures in S3, labels from the queue and from label files,
aggregates and the ledger in DynamoDB, every call checked against QualityFunctionRole (conftest)."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote_plus

import pytest

from house_prices import captures, drift, ids, labels, schema
from house_prices.ids import UlidGenerator
from house_prices.live_quality import summary_from_item
from house_prices.observability import metrics
from house_prices.registry import ModelRegistry
from quality import handler
from quality.adapters.dynamodb import DynamoDriftStore
from quality.logic import Recorded
from tests.lambda_contexts import lambda_context
from tests.model_versions import model_version
from tests.quality_doubles import (
    BUCKET,
    LAYOUT,
    LEDGER_TABLE,
    QUALITY_TABLE,
    REGISTRY_TABLE,
    QualityAws,
)

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")
VERSION = "20261125T040000Z-1a2b3c4d"
ROW = (2005, 3100, 4, 2.5, 1.1, 2)


class World:
    def __init__(self, s3: Any, dynamodb: Any, sqs: Any, queue_url: str) -> None:
        self.s3, self.dynamodb, self.sqs, self.queue_url = s3, dynamodb, sqs, queue_url

    def capture(
        self,
        made_at: datetime,
        prices: list[float],
        city: str = "Chicago_IL",
        pids: list[str] | None = None,
        house_ids: list[str | None] | None = None,
    ) -> list[str]:
        """Predictions captured as Firehose delivers them: gzipped capture lines under the partition."""
        generator = UlidGenerator(clock_ms=lambda: int(made_at.timestamp() * 1000))
        pids = pids or ids.new_prediction_ids(city, len(prices), generator)
        lines = captures.capture_lines(
            city=city,
            version=VERSION,
            request_id="req",
            prediction_ids=pids,
            rows=[ROW] * len(prices),
            prices=prices,
            house_ids=house_ids or [None] * len(prices),
        )
        key = self.capture_key(made_at, city)
        self.s3.put_object(Bucket=BUCKET, Key=key, Body=gzip.compress(("\n".join(lines) + "\n").encode()))
        return pids

    @staticmethod
    def capture_key(made_at: datetime, city: str = "Chicago_IL") -> str:
        return LAYOUT.capture_prefix(city, made_at.date()) + f"stream-1-{made_at:%Y-%m-%d-%H-%M-%S}-x.jsonl.gz"

    def quality(self, city: str = "Chicago_IL") -> dict[str, Any]:
        items = self.dynamodb.query(
            TableName=QUALITY_TABLE,
            KeyConditionExpression="city = :c",
            ExpressionAttributeValues={":c": {"S": city}},
        )["Items"]
        return {s.version: s for s in map(summary_from_item, items)}


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch, quality_aws: QualityAws) -> World:
    monkeypatch.setenv("DEGRADED_MIN_LABELS", "2")
    ModelRegistry(quality_aws.dynamodb, REGISTRY_TABLE).record_version(
        model_version("Chicago_IL", VERSION, "live", metrics={"validation": {"ae_p50": 5000.0}})
    )
    return World(quality_aws.s3, quality_aws.dynamodb, quality_aws.sqs, quality_aws.queue_url)


def sqs_event(*bodies: tuple[str, str]) -> dict[str, Any]:
    return {
        "Records": [
            {"messageId": message_id, "body": body, "eventSource": "aws:sqs", "receiptHandle": "r"}
            for message_id, body in bodies
        ]
    }


def label_body(*pairs: tuple[str, float]) -> str:
    now = datetime.now(UTC)
    parsed = [
        labels.parse_label({"prediction_id": pid, "sale_price": sale, "sold_at": now.date().isoformat()}, now)
        for pid, sale in pairs
    ]
    return labels.label_message(parsed, now)


def invoke(event: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = handler.lambda_handler(event, lambda_context("QualityFunction"))
    return result


def test_queued_labels_join_their_captures_and_count_once(world: World) -> None:
    # Given three predictions captured yesterday and labels for two of them
    pids = world.capture(datetime.now(UTC) - timedelta(days=1), [110_000.0, 90_000.0, 300_000.0])
    body = label_body((pids[0], 100_000), (pids[1], 100_000))
    # When the message is handled, redelivered, and one label is sent again in another message
    assert invoke(sqs_event(("m1", body))) == {"batchItemFailures": []}
    assert invoke(sqs_event(("m1", body))) == {"batchItemFailures": []}
    assert invoke(sqs_event(("m2", label_body((pids[0], 100_000))))) == {"batchItemFailures": []}
    # Then the version's aggregate counts each label once, with the gate's offline figure beside it
    summary = world.quality()[VERSION]
    assert (summary.count, summary.mae, summary.bias) == (2, 10_000, 0)
    assert summary.offline_ae_p50 == 5000.0
    assert summary.live_vs_offline == pytest.approx(2.0, rel=0.13)
    # And the ledger holds one claim per label
    assert world.dynamodb.scan(TableName=LEDGER_TABLE)["Count"] == 2


def test_a_label_for_an_undelivered_prediction_is_retried_then_joined(world: World) -> None:
    # Given a label for a prediction made a minute ago, not yet delivered by Firehose
    made_at = datetime.now(UTC) - timedelta(minutes=1)
    generator = UlidGenerator(clock_ms=lambda: int(made_at.timestamp() * 1000))
    (pid,) = ids.new_prediction_ids("Chicago_IL", 1, generator)
    body = label_body((pid, 100_000))
    # When it is handled, then its message is reported failed (the queue redelivers it)
    assert invoke(sqs_event(("m1", body), ("m2", "not json"))) == {"batchItemFailures": [{"itemIdentifier": "m1"}]}
    assert world.quality() == {}
    # And once the capture lands, the redelivery joins it
    world.capture(made_at, [120_000.0], pids=[pid])
    assert invoke(sqs_event(("m1", body))) == {"batchItemFailures": []}
    assert world.quality()[VERSION].count == 1


def test_a_label_file_is_ingested_and_its_pending_labels_requeued(world: World) -> None:
    # Given a CSV label file with a joinable label, a bad row and a label for a not-yet-delivered prediction
    (old,) = world.capture(datetime.now(UTC) - timedelta(days=2), [80_000.0])
    made_at = datetime.now(UTC) - timedelta(minutes=1)
    (young,) = ids.new_prediction_ids("Chicago_IL", 1, UlidGenerator(clock_ms=lambda: int(made_at.timestamp() * 1000)))
    today = datetime.now(UTC).date().isoformat()
    key = LAYOUT.labels_prefix + "sales 2026.csv"
    text = f"prediction_id,sale_price,sold_at\n{old},100000,{today}\nnope,1,{today}\n{young},100000,{today}\n"
    world.s3.put_object(Bucket=BUCKET, Key=key, Body=text.encode())
    event = s3_event(key)
    # When S3's event is handled
    result = invoke(event)
    # Then one label is joined, the bad row counted, the young label sent to the feedback queue
    assert (result["joined"], result["invalid"], result["requeued"]) == (1, 1, 1)
    assert world.quality()[VERSION].bias == -20_000
    attributes = world.sqs.get_queue_attributes(QueueUrl=world.queue_url, AttributeNames=["All"])["Attributes"]
    assert int(attributes["ApproximateNumberOfMessagesDelayed"]) + int(attributes["ApproximateNumberOfMessages"]) == 1
    # And the same event again counts nothing twice
    assert invoke(event)["redelivered"] == 1
    assert world.quality()[VERSION].count == 1
    assert json.loads(json.dumps(result))  # the summary is JSON for Lambda's async result


def test_a_capture_object_adds_drift_counts_once_and_saves_the_versions_drift(world: World) -> None:
    # Given Austin_TX's version trained with references, and a delivered capture object of three predictions
    reference = {
        name: drift.build_reference([float(value)] * 10) for name, value in zip(schema.FEATURE_NAMES, ROW, strict=True)
    }
    ModelRegistry(world.dynamodb, REGISTRY_TABLE).record_version(
        model_version(
            "Austin_TX",
            VERSION,
            metrics={"validation": {"ae_p50": 5000.0}, "reference": {n: r.to_json() for n, r in reference.items()}},
        )
    )
    made_at = datetime.now(UTC) - timedelta(minutes=10)
    world.capture(made_at, [100_000.0, 200_000.0, 300_000.0], city="Austin_TX")
    event = s3_event(World.capture_key(made_at, city="Austin_TX"))
    # When S3's event is handled, then delivered again
    first = invoke(event)
    again = invoke(event)
    # Then the three predictions are counted once, each feature in the bin of its value (every value = the edge)
    assert first["captures_counted"] == 3
    assert (again["captures_counted"], again["captures_redelivered"]) == (0, 3)
    item = world.dynamodb.get_item(
        TableName=QUALITY_TABLE, Key={"city": {"S": "Austin_TX"}, "version": {"S": VERSION}}, ConsistentRead=True
    )["Item"]
    assert item["drift_n"] == {"N": "3"}
    assert item["drift_SQUARE_FEET_1"] == {"N": "3"}
    # And the drift report is saved (below the minimum sample: not drifting), with no quality figures invented
    report = item[drift.REPORT]["M"]
    assert report["count"] == {"N": "3"}
    assert report["drifting"] == {"BOOL": False}
    assert summary_from_item(item).count == 0


def test_two_refreshes_of_the_same_counts_save_one_transition(world: World) -> None:
    # Given counts recorded once for a version, and an object's claim that is then redelivered
    store = DynamoDriftStore(world.dynamodb, QUALITY_TABLE, LEDGER_TABLE)
    increments = {("Chicago_IL", VERSION): {"drift_n": 5, "drift_SQUARE_FEET_2": 5}}
    claim = {"ledger_key": "capture#k", "source": "s3://b/k@e", "increments": increments, "expires_at": 1}
    assert store.record_captures(**claim) == Recorded.COUNTED  # type: ignore[arg-type]
    assert store.record_captures(ledger_key="capture#k", source="s3://b/k@e", increments=increments, expires_at=1) == (
        Recorded.REDELIVERED
    )
    item = store.live_item("Chicago_IL", VERSION)
    assert item["drift_n"] == 5
    # When two concurrent refreshes that read the same item both save "now drifting"
    report = {"count": 5, "drifting": True, "features": {"SQUARE_FEET": {"psi": 1.5, "js": 0.6, "drifting": True}}}
    first = store.save_report("Chicago_IL", VERSION, report, seen_count=5, was_drifting=False)
    second = store.save_report("Chicago_IL", VERSION, report, seen_count=5, was_drifting=False)
    # Then only the first saves (and so counts the transition); a stale count saves nothing either
    assert (first, second) == (True, False)
    assert not store.save_report("Chicago_IL", VERSION, report, seen_count=4, was_drifting=True)
    assert store.live_item("Chicago_IL", VERSION)["drift"]["features"]["SQUARE_FEET"]["psi"] == 1.5


def s3_event(key: str) -> dict[str, Any]:
    """S3's ObjectCreated event of ``key``, which S3 sends URL-encoded (a space as ``+``, ``=`` as ``%3D``)."""
    return {
        "Records": [
            {
                "eventSource": "aws:s3",
                "eventName": "ObjectCreated:Put",
                "s3": {"bucket": {"name": BUCKET}, "object": {"key": quote_plus(key, safe="/")}},
            }
        ]
    }


def house_body(*labels_: tuple[str, float, str]) -> str:
    now = datetime.now(UTC)
    parsed = [
        labels.parse_label({"city": "Chicago_IL", "house_id": house, "sale_price": sale, "sold_at": sold_at}, now)
        for house, sale, sold_at in labels_
    ]
    return labels.label_message(parsed, now)


def test_a_label_by_house_id_joins_the_latest_indexed_prediction_before_the_sale(world: World) -> None:
    # Given listing-1 priced three and two days ago, and listing-2 once, captured and delivered
    three, two = datetime.now(UTC) - timedelta(days=3), datetime.now(UTC) - timedelta(days=2)
    world.capture(three, [50_000.0], house_ids=["listing-1"])
    (latest, other) = world.capture(two, [110_000.0, 70_000.0], house_ids=["listing-1", "listing-2"])
    # When the quality function reads the capture objects (their S3 events)
    indexed = [invoke(s3_event(World.capture_key(at)))["houses_indexed"] for at in (three, two)]
    assert indexed == [1, 2]
    # And listing-1's sale (yesterday) is reported by (city, house_id), and again by its prediction id
    sold_at = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    assert invoke(sqs_event(("m1", house_body(("listing-1", 100_000, sold_at)))))["batchItemFailures"] == []
    assert invoke(sqs_event(("m2", label_body((latest, 100_000)))))["batchItemFailures"] == []
    # Then the latest prediction before the sale is counted, once (+10k), and the id label is a duplicate
    summary = world.quality()[VERSION]
    assert (summary.count, summary.bias) == (1, 10_000)
    claims = {item["label"]["S"]: item for item in world.dynamodb.scan(TableName=LEDGER_TABLE)["Items"]}
    assert claims[f"id#{latest}"]["via"] == {"S": "house#Chicago_IL#listing-1"}
    assert claims["house#Chicago_IL#listing-1"]["prediction_id"] == {"S": latest}
    # And a redelivery of the house label's message counts nothing; listing-2's id label still joins
    assert invoke(sqs_event(("m1", house_body(("listing-1", 100_000, sold_at)))))["batchItemFailures"] == []
    assert invoke(sqs_event(("m3", label_body((other, 70_000)))))["batchItemFailures"] == []
    assert world.quality()[VERSION].count == 2
    # And a house never priced is unknown (the sale was yesterday: nothing is still on its way)
    assert invoke(sqs_event(("m4", house_body(("listing-9", 1.0, sold_at)))))["batchItemFailures"] == []


def test_a_live_version_erring_past_k_times_offline_is_flagged_degraded_once(world: World) -> None:
    # Given Chicago_IL's live version (offline median error 5k; DEGRADED_MIN_LABELS 2, k 1.5)
    pids = world.capture(datetime.now(UTC) - timedelta(days=1), [150_000.0, 150_000.0, 150_000.0])
    # When two labels err by 50k (10 × offline), then a third
    invoke(sqs_event(("m1", label_body((pids[0], 100_000), (pids[1], 100_000)))))
    item = world.dynamodb.get_item(
        TableName=QUALITY_TABLE, Key={"city": {"S": "Chicago_IL"}, "version": {"S": VERSION}}, ConsistentRead=True
    )["Item"]
    # Then the version is flagged degraded in the quality table
    assert item["degraded"] == {"BOOL": True}
    # And the transition is published once, as an aggregate metric without a city
    published: list[dict[str, Any]] = []
    original = metrics.add_metric

    def spy(name: str, unit: Any, value: float) -> None:
        published.append({"name": name, "value": value})
        original(name=name, unit=unit, value=value)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(metrics, "add_metric", spy)
        invoke(sqs_event(("m2", label_body((pids[2], 100_000)))))
    assert {"name": "QualityDegraded", "value": 0} in published
    assert not any("city" in str(m) for m in published)
