"""POST /feedback through the real handler: 202 with one queue message, 400 naming fields, never 5xx for a client."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from house_prices import ids
from house_prices.errors import DependencyFailure
from house_prices.ids import UlidGenerator
from house_prices.live_quality import Aggregate, QualitySummary
from house_prices.observability import metrics
from router import handler, wiring
from router.feedback import MAX_FEEDBACK_BODY_BYTES, FeedbackService
from router.logic import RouterService
from router.settings import RouterSettings
from tests.router_doubles import FakeEndpoint, FakeRegistry
from tests.unit.test_router_handler import assert_error_body, invoke, request

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")
NOW = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)


def prediction_id(at: datetime) -> str:
    generator = UlidGenerator(clock_ms=lambda: int(at.timestamp() * 1000), random_bits=lambda: 1)
    return ids.new_prediction_ids("Chicago_IL", 1, generator)[0]


class Queue:
    def __init__(self, failure: Exception | None = None) -> None:
        self.sent: list[str] = []
        self.failure = failure

    def send(self, message: str) -> None:
        if self.failure:
            raise self.failure
        self.sent.append(message)


class Quality:
    def summaries(self, city: str) -> list[QualitySummary]:
        return [QualitySummary.of(city, "v1", Aggregate.of(110_000, 100_000), 5_000.0)]


@pytest.fixture
def queue() -> Queue:
    return Queue()


@pytest.fixture(autouse=True)
def feedback_environment(monkeypatch: pytest.MonkeyPatch, queue: Queue) -> Iterator[None]:
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "router")
    monkeypatch.setenv("ENDPOINT_NAME", "house-prices-mme")
    monkeypatch.setenv("REGISTRY_TABLE", "house-prices-registry")
    monkeypatch.setattr(
        wiring,
        "build_feedback",
        lambda settings: FeedbackService(queue, settings.label_retention_days, 3, now=lambda: NOW),
    )
    monkeypatch.setattr(
        wiring, "build_service", lambda settings: RouterService(FakeRegistry(), FakeEndpoint(), quality=Quality())
    )
    handler.feedback_service.cache_clear()
    handler.service.cache_clear()
    metrics.clear_metrics()
    yield
    handler.feedback_service.cache_clear()
    handler.service.cache_clear()
    metrics.clear_metrics()


def post(body: Any, b64: bool = False) -> tuple[int, Any]:
    text = body if isinstance(body, str) else json.dumps(body)
    if b64:
        text = base64.b64encode(text.encode()).decode()
    status, _, answer = invoke(request("POST", "/feedback", text, b64=b64))
    return status, answer


def test_a_label_is_accepted_with_202_and_one_queue_message(queue: Queue) -> None:
    # Given a label for a prediction made yesterday
    pid = prediction_id(NOW - timedelta(days=1))
    # When it is posted
    status, body = post({"prediction_id": pid, "sale_price": 505000, "sold_at": "2026-12-06"})
    # Then it is accepted and exactly one message carries it
    assert (status, body) == (202, {"accepted": 1})
    (message,) = queue.sent
    assert json.loads(message)["labels"] == [{"prediction_id": pid, "sale_price": 505000.0, "sold_at": "2026-12-06"}]


def test_a_labels_body_is_one_message(queue: Queue) -> None:
    pid = prediction_id(NOW - timedelta(days=1))
    labels = [
        {"prediction_id": pid, "sale_price": 5e5, "sold_at": "2026-12-06"},
        {"city": "Austin_TX", "house_id": "h-9", "sale_price": 3e5, "sold_at": "2026-12-05"},
    ]
    status, body = post({"labels": labels}, b64=True)
    assert (status, body, len(queue.sent)) == (202, {"accepted": 2}, 1)


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ("", 400, "body"),
        ("{oops", 400, "body"),
        ("[" * 100_000, 400, "body"),
        ({"prediction_id": "nope", "sale_price": 1, "sold_at": "2026-12-01"}, 400, "prediction_id"),
        ({"labels": [{"sale_price": 1}]}, 400, "labels[0].sold_at"),
        ({"labels": [{}] * 4}, 413, "labels"),
        ("x" * (MAX_FEEDBACK_BODY_BYTES + 1), 413, "body"),
    ],
)
def test_client_mistakes_are_4xx_naming_the_field_and_nothing_is_queued(
    queue: Queue, body: Any, status: int, field: str
) -> None:
    got, answer = post(body)
    assert got == status
    assert_error_body(got, answer)
    assert field in {e["field"] for e in answer["errors"]}
    assert queue.sent == []


def test_a_prediction_outside_the_retention_window_is_400(queue: Queue) -> None:
    old = prediction_id(NOW - timedelta(days=366))
    status, answer = post({"prediction_id": old, "sale_price": 5e5, "sold_at": "2026-12-01"})
    assert status == 400
    assert "retention" in answer["errors"][0]["problem"]


def test_a_queue_failure_is_503_to_retry(monkeypatch: pytest.MonkeyPatch) -> None:
    failing = Queue(DependencyFailure("SQS down"))
    monkeypatch.setattr(wiring, "build_feedback", lambda settings: FeedbackService(failing, now=lambda: NOW))
    handler.feedback_service.cache_clear()
    status, answer = post({"prediction_id": prediction_id(NOW), "sale_price": 5e5, "sold_at": "2026-12-01"})
    assert status == 503
    assert_error_body(status, answer)


def test_the_location_shows_live_quality_per_version() -> None:
    status, _, body = invoke(request("GET", "/locations/Chicago_IL"))
    assert status == 200
    (quality,) = body["quality"]
    assert (quality["version"], quality["count"], quality["bias"]) == ("v1", 1, 10_000)
    assert quality["live_vs_offline"] == pytest.approx(2.0, rel=0.13)


def test_settings_read_the_feedback_variables() -> None:
    settings = RouterSettings.from_env(
        {
            "ENDPOINT_NAME": "e",
            "REGISTRY_TABLE": "r",
            "FEEDBACK_QUEUE_URL": "https://sqs/q",
            "LABEL_RETENTION_DAYS": "30",
            "QUALITY_TABLE": "q",
        }
    )
    assert (settings.feedback_queue_url, settings.label_retention_days, settings.quality_table) == (
        "https://sqs/q",
        30,
        "q",
    )
