"""RouterService with fakes: validation order, model resolution, one invoke per request, response shape, metrics."""

from __future__ import annotations

import base64
import json

import pytest

from house_prices import schema
from house_prices.errors import (
    InvalidCityName,
    InvalidInput,
    InvalidVersion,
    ModelInvocationError,
    NotFound,
    PayloadTooLarge,
    UnknownCity,
    UnknownVersion,
)
from house_prices.observability import metrics
from router.logic import RouterService
from tests import router_doubles
from tests.router_doubles import LIVE, OLDER, REJECTED, FakeEndpoint, FakeRegistry, SequentialIds

HOUSE = dict(schema.EXAMPLE_HOUSE)


# The router's shared fixtures (pytest finds them by these names): metrics cleared around every test, fakes.
clean_metrics, registry, endpoint = router_doubles.clean_metrics, router_doubles.registry, router_doubles.endpoint


@pytest.fixture
def service(registry: FakeRegistry, endpoint: FakeEndpoint) -> RouterService:
    return RouterService(registry, endpoint, max_houses=3, new_prediction_ids=SequentialIds())


def prices(result: dict) -> list[float]:
    return [prediction["price"] for prediction in result["predictions"]]


def test_batch_prediction_uses_the_live_model_and_one_invoke(service: RouterService, endpoint: FakeEndpoint) -> None:
    # Given two houses for a city with a live model
    second = {**HOUSE, "SQUARE_FEET": 2000, "LOT_ACRES": 0.5}
    # When predicted
    result = service.predict("Chicago_IL", json.dumps({"houses": [HOUSE, second]}))
    # Then one InvokeEndpoint carries both rows in feature order and prices come back in row order,
    # each with its own prediction id and the version that priced it
    assert endpoint.calls == [
        (f"Chicago_IL.{LIVE}.tar.gz", "2005,3100,4,2.5,1.1,2\n2005,2000,4,2.5,0.5,2\n"),
    ]
    first, last = SequentialIds.expected("Chicago_IL", 2)
    assert result == {
        "location": "Chicago_IL",
        "model": {"version": LIVE, "target_model": f"Chicago_IL.{LIVE}.tar.gz"},
        "predictions": [
            {"prediction_id": first, "price": 465000.0, "version": LIVE},
            {"prediction_id": last, "price": 300000.0, "version": LIVE},
        ],
    }
    # and the call is named after the request's first prediction id (its 26-character ULID)
    assert endpoint.inference_ids == [first[:26]]


def test_house_ids_are_echoed_and_never_reach_the_model(service: RouterService, endpoint: FakeEndpoint) -> None:
    # Given a batch where only the second house carries the caller's id
    body = json.dumps({"houses": [HOUSE, {**HOUSE, "house_id": "listing-42"}]})
    # When predicted
    result = service.predict("Chicago_IL", body)
    # Then the id comes back with its own price only, and the CSV body has features alone
    assert ["house_id" in p for p in result["predictions"]] == [False, True]
    assert result["predictions"][1]["house_id"] == "listing-42"
    assert endpoint.calls[0][1] == "2005,3100,4,2.5,1.1,2\n" * 2


def test_every_request_gets_new_ids_that_sort_by_time(registry: FakeRegistry, endpoint: FakeEndpoint) -> None:
    # Given the production id source
    service = RouterService(registry, endpoint)
    # When the same house is priced twice
    first = service.predict("Chicago_IL", json.dumps(HOUSE))["predictions"][0]["prediction_id"]
    second = service.predict("Chicago_IL", json.dumps(HOUSE))["predictions"][0]["prediction_id"]
    # Then the ids differ, the later one sorts later, and both name the city
    assert first < second
    assert first.endswith("-Chicago_IL")
    assert second.endswith("-Chicago_IL")


def test_single_house_object_is_accepted(service: RouterService) -> None:
    assert prices(service.predict("Chicago_IL", json.dumps(HOUSE))) == [465000.0]


def test_base64_body_is_decoded(service: RouterService) -> None:
    body = base64.b64encode(json.dumps(HOUSE).encode()).decode()
    assert prices(service.predict("Chicago_IL", body, base64_encoded=True)) == [465000.0]


def test_pinned_version_is_looked_up_and_served(
    service: RouterService, registry: FakeRegistry, endpoint: FakeEndpoint
) -> None:
    result = service.predict("Chicago_IL", json.dumps(HOUSE), version=OLDER)
    assert result["model"] == {"version": OLDER, "target_model": f"Chicago_IL.{OLDER}.tar.gz"}
    assert endpoint.calls[0][0] == f"Chicago_IL.{OLDER}.tar.gz"
    assert ("live_model", "Chicago_IL") not in registry.calls


def test_pinned_rejected_version_is_not_served(service: RouterService, endpoint: FakeEndpoint) -> None:
    with pytest.raises(NotFound) as caught:
        service.predict("Chicago_IL", json.dumps(HOUSE), version=REJECTED)
    assert caught.value.problems[0].field == "version"
    assert endpoint.calls == []


def test_pinned_unknown_version_is_unknown(service: RouterService) -> None:
    with pytest.raises(UnknownVersion):
        service.predict("Chicago_IL", json.dumps(HOUSE), version="20200101T000000Z-00000000")


@pytest.mark.parametrize("city", ["", "New York", "../etc", "a.b", "Chicago_IL.tar.gz", "x" * 65, "1abc", "Chi%2FIL"])
def test_invalid_city_is_rejected_before_any_lookup(
    city: str, service: RouterService, registry: FakeRegistry, endpoint: FakeEndpoint
) -> None:
    with pytest.raises(InvalidCityName):
        service.predict(city, json.dumps(HOUSE))
    assert registry.calls == []
    assert endpoint.calls == []


@pytest.mark.parametrize("pinned", ["", "latest", "20261125T040000Z-1A2B3C4D", "20261125T040000Z-1a2b3c4d.tar.gz"])
def test_invalid_version_is_rejected_before_any_lookup(
    pinned: str, service: RouterService, registry: FakeRegistry
) -> None:
    with pytest.raises(InvalidVersion):
        service.predict("Chicago_IL", json.dumps(HOUSE), version=pinned)
    assert registry.calls == []


def test_unknown_city_after_valid_body(service: RouterService, endpoint: FakeEndpoint) -> None:
    with pytest.raises(UnknownCity):
        service.predict("Atlantis_XX", json.dumps(HOUSE))
    assert endpoint.calls == []


@pytest.mark.parametrize(
    ("body", "field", "problem_part"),
    [
        (None, "body", "is required"),
        ("", "body", "is required"),
        ("   \n", "body", "is required"),
        ("{not json", "body", "must be valid JSON"),
        (b"\xff\xfe\xfa", "body", "must be valid JSON"),
        ("[" * 100_000, "body", "nested too deeply"),
        ("1" * 5000, "body", "must be valid JSON"),
        ("[]", "body", "must be a JSON object"),
        ('"house"', "body", "must be a JSON object"),
        ('{"houses": {}}', "houses", "must be a list"),
        ('{"houses": []}', "houses", "at least one"),
        ('{"houses": [1]}', "houses[0]", "must be a JSON object"),
        (json.dumps({**HOUSE, "POOL": True}), "POOL", "is not a known feature"),
        (json.dumps({**HOUSE, "NUM_BATHROOMS": 2.3}), "NUM_BATHROOMS", "multiple of 0.5"),
        (json.dumps({**HOUSE, "YEAR_BUILT": 2000.5}), "YEAR_BUILT", "whole number"),
        (json.dumps({**HOUSE, "SQUARE_FEET": "3000"}), "SQUARE_FEET", "must be a number"),
        (json.dumps({**HOUSE, "GARAGE_SPACES": True}), "GARAGE_SPACES", "must be a number"),
        (json.dumps({**HOUSE, "LOT_ACRES": float("nan")}), "LOT_ACRES", "finite"),
        (json.dumps({**HOUSE, "LOT_ACRES": float("inf")}), "LOT_ACRES", "finite"),
    ],
)
def test_bad_bodies_name_the_offending_field(
    body: str | bytes | None, field: str, problem_part: str, service: RouterService, endpoint: FakeEndpoint
) -> None:
    with pytest.raises(InvalidInput) as caught:
        service.predict("Chicago_IL", body)
    problems = caught.value.problems
    assert problems, "an invalid body must name at least one field"
    assert all(p.field and p.problem for p in problems)
    assert any(p.field.endswith(field) and problem_part in p.problem for p in problems)
    assert endpoint.calls == []


@pytest.mark.parametrize(
    ("name", "value"), [("NUM_BATHROOMS", 1e308), ("YEAR_BUILT", 10**400), ("LOT_ACRES", -(10**400))]
)
def test_absurd_magnitudes_are_client_errors(name: str, value: float, service: RouterService) -> None:
    # Given a number so large that converting it to float/int would overflow
    with pytest.raises(InvalidInput) as caught:
        service.predict("Chicago_IL", json.dumps({**HOUSE, name: value}))
    # Then it is a 400-class error naming the feature: the range is checked before any conversion
    [problem] = caught.value.problems
    assert problem.field == name
    assert problem.problem.startswith("must be between")


@pytest.mark.parametrize("body", ["not base64!!", "QUJD="])
def test_broken_base64_names_body(body: str, service: RouterService) -> None:
    with pytest.raises(InvalidInput) as caught:
        service.predict("Chicago_IL", body, base64_encoded=True)
    assert [p.field for p in caught.value.problems] == ["body"]


def test_too_many_houses_is_payload_too_large(service: RouterService) -> None:
    with pytest.raises(PayloadTooLarge) as caught:
        service.predict("Chicago_IL", json.dumps({"houses": [HOUSE] * 4}))
    assert caught.value.problems[0].field == "houses"


def test_body_over_the_endpoint_limit_is_payload_too_large(service: RouterService) -> None:
    body = " " * schema.MAX_ENDPOINT_BODY_BYTES + json.dumps(HOUSE)
    with pytest.raises(PayloadTooLarge) as caught:
        service.predict("Chicago_IL", body)
    assert caught.value.problems[0].field == "body"


@pytest.mark.parametrize("answer", [[], [1.0, 2.0]])
def test_wrong_number_of_predictions_is_a_model_error(registry: FakeRegistry, answer: list[float]) -> None:
    service = RouterService(registry, FakeEndpoint(answer))
    with pytest.raises(ModelInvocationError, match="predictions for 1 houses"):
        service.predict("Chicago_IL", json.dumps(HOUSE))


def test_metrics_never_use_city_or_version_as_a_dimension(service: RouterService) -> None:
    # When a prediction succeeds
    service.predict("Chicago_IL", json.dumps({"houses": [HOUSE, HOUSE]}))
    # Then latency and batch size are recorded; city and version are metadata, not dimensions
    emf = metrics.serialize_metric_set()
    definitions = emf["_aws"]["CloudWatchMetrics"][0]
    names = {m["Name"] for m in definitions["Metrics"]}
    assert {"HousesPerRequest", "EndpointLatency", "PredictionLatency"} <= names
    dimensions = {d for group in definitions["Dimensions"] for d in group}
    assert not dimensions & {"city", "version", "location"}
    assert emf["HousesPerRequest"] == [2.0] or emf["HousesPerRequest"] == 2.0
    assert (emf["city"], emf["version"]) == ("Chicago_IL", LIVE)


def test_list_locations(service: RouterService) -> None:
    assert service.list_locations() == {
        "locations": [
            {
                "location": "Chicago_IL",
                "version": LIVE,
                "target_model": f"Chicago_IL.{LIVE}.tar.gz",
                "promoted_at": "2026-11-25T04:00:01+00:00",
            }
        ]
    }


def test_describe_location_shows_live_and_versions_newest_first(service: RouterService) -> None:
    described = service.describe_location("Chicago_IL")
    assert described["live"]["version"] == LIVE
    assert [v["version"] for v in described["versions"]] == [REJECTED, LIVE, OLDER]
    assert described["versions"][1]["metrics"] == {"r2": 0.9}
    assert [f["name"] for f in described["features"]] == list(schema.FEATURE_NAMES)


def test_describe_location_without_live_model_but_with_versions(service: RouterService) -> None:
    described = service.describe_location("Houston_TX")
    assert described["live"] is None
    assert [v["status"] for v in described["versions"]] == ["rejected"]


def test_describe_unknown_and_invalid_city(service: RouterService) -> None:
    with pytest.raises(UnknownCity):
        service.describe_location("Atlantis_XX")
    with pytest.raises(InvalidCityName):
        service.describe_location("not a city")


def test_health_shallow_and_deep(service: RouterService, registry: FakeRegistry) -> None:
    assert service.health() == {"status": "ok", "checks": {"settings": "ok"}}
    assert registry.calls == []
    assert service.health(deep=True) == {"status": "ok", "checks": {"settings": "ok", "registry": "ok"}}
    assert registry.calls == [("ping",)]
