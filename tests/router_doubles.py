"""The one home of the router tests' fakes and API events.

``FakeRegistry`` and ``FakeEndpoint`` satisfy ``router.logic``'s ``Registry`` and ``Endpoint``
protocols (``FakeRegistry.start_rollout`` puts a rollout of ``CANDIDATE`` on the live item, as the
registry does; ``FakeEndpoint.failures`` makes one TargetModel fail); ``add_model_error`` queues
SageMaker's ModelError on a Stubber; ``api_event`` loads the payload-2.0 events in ``events/`` (the
same files `sam local invoke` and `make invoke` use), so a test and a manual invocation exercise the
same request. The fixtures at the end (metrics cleared around a test, a fresh fake registry and endpoint)
serve the router's unit tests, which bind them by name.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber

from house_prices import ids
from house_prices.errors import UnknownCity, UnknownVersion
from house_prices.naming import target_model
from house_prices.observability import metrics
from house_prices.registry import LiveModel, ModelVersion, Rollout, RolloutEvent, RolloutMode
from tests import model_versions
from tests.model_versions import model_version

EVENTS = Path(__file__).resolve().parents[1] / "events"
LIVE = "20261125T040000Z-1a2b3c4d"
OLDER = "20261120T040000Z-0badcafe"
REJECTED = "20261126T040000Z-deadbeef"
PROMOTED_AT = "2026-11-25T04:00:01+00:00"
# Newer than LIVE: the version a rollout offers (status "candidate" while it runs).
CANDIDATE = "20261201T040000Z-c0ffee00"
ROLLOUT_STARTED_AT = "2026-12-01T05:00:00+00:00"
# 2026-12-07T02:43:25.571Z: the millisecond of every SequentialIds id.
ID_MILLISECOND = 1796611405571
# The router integration tests' endpoint and registry table, and the CSV body of events/api-predictions-batch.json:
# rows in schema.FEATURE_NAMES order (YEAR_BUILT, SQUARE_FEET, NUM_BEDROOMS, NUM_BATHROOMS, LOT_ACRES, GARAGE).
ENDPOINT = "house-prices-mme"
TABLE = "house-prices-registry"
# tests/integration/conftest.py's ``stub_router``: Stubbers on the clients a function names in the real service.
StubRouter = Callable[[Callable[[Any], Mapping[str, Any]]], dict[str, Stubber]]
BATCH_CSV = b"1995,3000,4,2.5,1.0,2\n2010,2200,3,2.0,0.75,1\n1978,4100,6,3.5,1.42,3\n"


class SequentialIds:
    """``RouterService``'s ``new_prediction_ids`` with a stopped clock and zero random bits: the n-th id
    of a test is always the same text, so responses and capture lines can be compared exactly."""

    def __init__(self, millisecond: int = ID_MILLISECOND) -> None:
        self.generator = ids.UlidGenerator(clock_ms=lambda: millisecond, random_bits=lambda: 0)

    def __call__(self, city: str, count: int) -> list[str]:
        return ids.new_prediction_ids(city, count, self.generator)

    @staticmethod
    def expected(city: str, count: int, millisecond: int = ID_MILLISECOND) -> list[str]:
        """The ids a fresh SequentialIds hands out first."""
        return SequentialIds(millisecond)(city, count)


def add_model_error(
    stubber: Stubber, original_status: int, original_message: str, expected_params: dict[str, Any] | None = None
) -> None:
    """Queue what InvokeEndpoint answers when the container failed: ModelError (424) carrying its status and body."""
    kind = "client" if original_status < 500 else "server"
    stubber.add_client_error(
        "invoke_endpoint",
        service_error_code="ModelError",
        service_message=f'Received {kind} error ({original_status}) from primary with message "{original_message}".',
        http_status_code=424,
        modeled_fields={"OriginalStatusCode": original_status, "OriginalMessage": original_message},
        expected_params=expected_params,
    )


def expected_call(version: str, city: str = "Chicago_IL") -> dict[str, Any]:
    """The InvokeEndpoint parameters a Stubber expects for the batch event priced by ``version``."""
    return {
        "EndpointName": ENDPOINT,
        "TargetModel": f"{city}.{version}.tar.gz",
        "ContentType": "text/csv",
        "Accept": "application/json",
        "Body": BATCH_CSV,
        # the request's first prediction id's ULID (tests/unit/test_router_handler.py pins the exact value)
        "InferenceId": ANY,
    }


def json_body(values: list[float]) -> dict[str, Any]:
    """An InvokeEndpoint answer for a Stubber: the model's JSON list of prices."""
    raw = json.dumps(values).encode()
    return {"Body": StreamingBody(io.BytesIO(raw), len(raw)), "ContentType": "application/json"}


def api_event(name: str) -> dict[str, Any]:
    """A fresh copy of ``events/{name}`` (callers may change it)."""
    return json.loads((EVENTS / name).read_text())


def rollout(
    mode: RolloutMode = "canary", weight_bp: int = 1000, salt: str = "5a1f00d5a1f00d00", city: str = "Chicago_IL"
) -> Rollout:
    """A running rollout of CANDIDATE in ``city``, as ``ModelRegistry.start_rollout`` stores it."""
    return model_versions.rollout(
        city,
        CANDIDATE,
        mode,
        weight_bp,
        salt=salt,
        started_at=ROLLOUT_STARTED_AT,
        deadline="2026-12-15T05:00:00+00:00",
        revision=1,
        policy={"min_labels": 200, "alpha": 0.05},
        started_by="operator",
    )


class FakeRegistry:
    """Chicago_IL serves LIVE (OLDER on standby, REJECTED rejected); Houston_TX has only a rejected version."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.rollout: Rollout | None = None
        self.history: list[RolloutEvent] = []
        self.items = {
            "Chicago_IL": [
                model_version("Chicago_IL", REJECTED, "rejected"),
                model_version("Chicago_IL", LIVE, "live"),
                model_version("Chicago_IL", OLDER, "standby"),
            ],
            "Houston_TX": [model_version("Houston_TX", REJECTED, "rejected")],
        }

    def live_model(self, city: str) -> LiveModel:
        self.calls.append(("live_model", city))
        if city != "Chicago_IL":
            raise UnknownCity(city)
        return LiveModel(city, LIVE, target_model(city, LIVE), PROMOTED_AT, self.rollout)

    def start_rollout(
        self, mode: RolloutMode = "canary", weight_bp: int = 1000, salt: str = "5a1f00d5a1f00d00"
    ) -> None:
        """Chicago_IL rolls CANDIDATE out against LIVE: the version record, the live item's rollout, a history event."""
        self.items["Chicago_IL"].insert(0, model_version("Chicago_IL", CANDIDATE, "candidate"))
        self.rollout = rollout(mode, weight_bp, salt)
        self.history.insert(
            0,
            RolloutEvent(
                "Chicago_IL", CANDIDATE, LIVE, "started", ROLLOUT_STARTED_AT, "operator", "", {"mode": mode}, 1
            ),
        )

    def rollout_history(self, city: str, limit: int = 50) -> list[RolloutEvent]:
        self.calls.append(("rollout_history", city))
        return [event for event in self.history if event.city == city][:limit]

    def version(self, city: str, version: str) -> ModelVersion:
        self.calls.append(("version", city, version))
        for item in self.items.get(city, []):
            if item.version == version:
                return item
        raise UnknownVersion(city, version)

    def versions(self, city: str) -> list[ModelVersion]:
        self.calls.append(("versions", city))
        return self.items.get(city, [])

    def live_models(self) -> list[LiveModel]:
        return [self.live_model("Chicago_IL")]

    def ping(self) -> None:
        self.calls.append(("ping",))


class FakeEndpoint:
    """Records each call (and its InferenceId); answers ``answer`` if given, else a price derived from each row.

    ``failures[target]`` is raised for that TargetModel (after recording the call), ``answers[target]`` is
    that TargetModel's answer. The stand-in model prices a candidate's rows differently from the others'
    (x 160 instead of x 150), so a test can tell which version priced a house from its price too.
    """

    def __init__(self, answer: list[float] | None = None) -> None:
        self.calls: list[tuple[str, str]] = []
        self.inference_ids: list[str | None] = []
        self.answer = answer
        self.answers: dict[str, list[float]] = {}
        self.failures: dict[str, Exception] = {}

    def invoke(self, target: str, csv_body: str, inference_id: str | None = None) -> list[float]:
        self.calls.append((target, csv_body))
        self.inference_ids.append(inference_id)
        if target in self.failures:
            raise self.failures[target]
        if target in self.answers:
            return self.answers[target]
        if self.answer is not None:
            return self.answer
        # A deterministic stand-in model (SQUARE_FEET x 150): rows cannot be mixed up unnoticed.
        per_square_foot = 160 if CANDIDATE in target else 150
        return [float(line.split(",")[1]) * per_square_foot for line in csv_body.splitlines()]


@pytest.fixture(autouse=True)
def clean_metrics() -> Iterator[None]:
    metrics.clear_metrics()
    yield
    metrics.clear_metrics()


@pytest.fixture
def registry() -> FakeRegistry:
    return FakeRegistry()


@pytest.fixture
def endpoint() -> FakeEndpoint:
    return FakeEndpoint()
