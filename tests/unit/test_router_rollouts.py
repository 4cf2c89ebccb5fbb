"""RouterService during a rollout, with fakes: canary split, stickiness, fallback, pinning, shadow, tags."""

from __future__ import annotations

import io
import json
import random
from typing import Any

import pytest
from openapi_schema_validator import OAS30Validator

from house_prices import captures, openapi, rollout_bucket, schema
from house_prices.errors import EndpointBusy, EndpointTimeout, ModelInvocationError, UnknownVersion
from house_prices.naming import target_model
from house_prices.observability import logger, metrics
from router import routing
from router.capture import PredictionCapture
from router.logic import CANDIDATE_FALLBACK_METRIC, RouterService
from tests import router_doubles
from tests.router_doubles import CANDIDATE, LIVE, OLDER, FakeEndpoint, FakeRegistry, SequentialIds, rollout

CITY = "Chicago_IL"
LIVE_TARGET = target_model(CITY, LIVE)
CANDIDATE_TARGET = target_model(CITY, CANDIDATE)
SALT = "5a1f00d5a1f00d00"


# The router's shared fixtures (pytest finds them by these names): metrics cleared around every test, fakes.
clean_metrics, registry, endpoint = router_doubles.clean_metrics, router_doubles.registry, router_doubles.endpoint


@pytest.fixture
def stream() -> io.StringIO:
    return io.StringIO()


@pytest.fixture
def service(registry: FakeRegistry, endpoint: FakeEndpoint, stream: io.StringIO) -> RouterService:
    return RouterService(
        registry,
        endpoint,
        max_houses=1000,
        capture=PredictionCapture(1.0, stream=stream),
        new_prediction_ids=SequentialIds(),
    )


def houses(count: int, seed: int = 18, with_ids: bool = False) -> list[dict[str, Any]]:
    """``count`` distinct valid houses (distinct square feet), optionally each with its own house_id."""
    rng = random.Random(seed)
    sizes = rng.sample(range(500, 40_000), count)
    return [
        {
            **schema.EXAMPLE_HOUSE,
            "SQUARE_FEET": size,
            "LOT_ACRES": round(rng.uniform(0, 5), 2),
            **({"house_id": f"listing-{size}"} if with_ids else {}),
        }
        for size in sizes
    ]


def body(batch: list[dict[str, Any]]) -> str:
    return json.dumps({"houses": batch})


def expected_arm(house: dict[str, Any], weight_bp: int) -> bool:
    """Whether the house should go to the candidate, straight from the bucketing rule."""
    row = [house[name] for name in schema.FEATURE_NAMES]
    key = rollout_bucket.routing_key(house.get("house_id"), row)
    return rollout_bucket.takes_candidate(rollout_bucket.bucket(CITY, key, SALT), weight_bp)


def capture_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_canary_sends_the_weighted_share_of_houses_to_the_candidate_one_call_per_side(
    registry: FakeRegistry, endpoint: FakeEndpoint, service: RouterService
) -> None:
    # Given a canary of CANDIDATE at 10 %
    registry.start_rollout("canary", 1000, SALT)
    batch = houses(1000)
    # When a batch of 1,000 distinct houses is priced
    result = service.predict(CITY, body(batch))
    # Then exactly the houses whose bucket is under the weight were priced by the candidate
    answered = [p["version"] for p in result["predictions"]]
    assert answered == [CANDIDATE if expected_arm(h, 1000) else LIVE for h in batch]
    # and their share is the weight (binomial: 100 ± 4 sigma of 9.5)
    assert 62 <= answered.count(CANDIDATE) <= 138
    # And one InvokeEndpoint per side, the candidate's first, each carrying only its own rows in request order
    assert [target for target, _ in endpoint.calls] == [CANDIDATE_TARGET, LIVE_TARGET]
    candidate_rows = [h for h in batch if expected_arm(h, 1000)]
    live_rows = [h for h in batch if not expected_arm(h, 1000)]
    assert endpoint.calls[0][1] == schema.rows_to_csv([[h[n] for n in schema.FEATURE_NAMES] for h in candidate_rows])
    assert endpoint.calls[1][1] == schema.rows_to_csv([[h[n] for n in schema.FEATURE_NAMES] for h in live_rows])
    # and each price is the one its side's model returned for that very house (candidate: x160, live: x150)
    for house, prediction in zip(batch, result["predictions"], strict=True):
        factor = 160 if prediction["version"] == CANDIDATE else 150
        assert prediction["price"] == house["SQUARE_FEET"] * factor
    # And the top-level model stays the city's live model
    assert result["model"] == {"version": LIVE, "target_model": LIVE_TARGET}


def test_each_call_is_named_after_the_first_house_it_prices(
    registry: FakeRegistry, endpoint: FakeEndpoint, service: RouterService
) -> None:
    registry.start_rollout("canary", 5000, SALT)
    result = service.predict(CITY, body(houses(20)))
    by_version = {
        v: [p["prediction_id"] for p in result["predictions"] if p["version"] == v] for v in (CANDIDATE, LIVE)
    }
    assert endpoint.inference_ids == [by_version[CANDIDATE][0][:26], by_version[LIVE][0][:26]]


@pytest.mark.parametrize(("weight_bp", "targets"), [(0, [LIVE_TARGET]), (10_000, [CANDIDATE_TARGET])])
def test_the_extreme_weights_make_a_single_call(
    weight_bp: int, targets: list[str], registry: FakeRegistry, endpoint: FakeEndpoint, service: RouterService
) -> None:
    registry.start_rollout("canary", weight_bp, SALT)
    result = service.predict(CITY, body(houses(50)))
    assert [target for target, _ in endpoint.calls] == targets
    assert {p["version"] for p in result["predictions"]} == {CANDIDATE if weight_bp else LIVE}


def test_a_house_keeps_its_side_across_requests_batches_and_routers(
    registry: FakeRegistry, endpoint: FakeEndpoint, service: RouterService
) -> None:
    # Given a 50 % canary and houses with ids, and houses without
    registry.start_rollout("canary", 5000, SALT)
    with_ids, without_ids = houses(40, seed=1, with_ids=True), houses(40, seed=2)
    first = service.predict(CITY, body(with_ids + without_ids))["predictions"]
    # When the same houses come back one by one, in another order, to a freshly built router (a restart);
    # the ones with ids with other features (the caller's id names the house, not its current description)
    restarted = RouterService(registry, FakeEndpoint(), max_houses=1000)
    again = {}
    for index in reversed(range(80)):
        house = (with_ids + without_ids)[index]
        if "house_id" in house:
            house = {**house, "NUM_BEDROOMS": 7, "LOT_ACRES": 9.5}
        [prediction] = restarted.predict(CITY, json.dumps(house))["predictions"]
        again[index] = prediction["version"]
    # Then every house is answered by the same side as the first time
    assert [again[index] for index in range(80)] == [p["version"] for p in first]
    assert {p["version"] for p in first} == {LIVE, CANDIDATE}


def test_a_new_salt_reshuffles_the_houses(registry: FakeRegistry, service: RouterService) -> None:
    batch = houses(200)
    registry.start_rollout("canary", 5000, SALT)
    first = [p["version"] for p in service.predict(CITY, body(batch))["predictions"]]
    registry.rollout = rollout("canary", 5000, salt="another rollout's salt")
    second = [p["version"] for p in service.predict(CITY, body(batch))["predictions"]]
    assert first != second


@pytest.mark.parametrize(
    "failure",
    [
        EndpointTimeout("The model endpoint did not answer within 5 s"),
        EndpointBusy("The model endpoint is busy", 1),
        ModelInvocationError("Traceback ... /opt/ml/model", 500),
        RuntimeError("anything at all"),
    ],
)
def test_a_failing_candidate_never_fails_the_request_live_prices_its_houses(
    failure: Exception,
    registry: FakeRegistry,
    endpoint: FakeEndpoint,
    service: RouterService,
    stream: io.StringIO,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a canary whose candidate fails
    registry.start_rollout("canary", 5000, SALT)
    endpoint.failures[CANDIDATE_TARGET] = failure
    warnings: list[tuple[Any, ...]] = []
    monkeypatch.setattr(logger, "warning", lambda *args, **kwargs: warnings.append((args, kwargs)))
    batch = houses(30)
    # When a batch is priced
    result = service.predict(CITY, body(batch))
    # Then every house is priced by the live version, in order, after the candidate's one attempt
    assert [p["version"] for p in result["predictions"]] == [LIVE] * 30
    assert [p["price"] for p in result["predictions"]] == [h["SQUARE_FEET"] * 150 for h in batch]
    assert [target for target, _ in endpoint.calls] == [CANDIDATE_TARGET, LIVE_TARGET]
    assert endpoint.calls[1][1] == schema.rows_to_csv([[h[n] for n in schema.FEATURE_NAMES] for h in batch])
    # And the failure is counted (an aggregate, no city dimension) and logged with its kind and the city
    emf = metrics.serialize_metric_set()
    definitions = emf["_aws"]["CloudWatchMetrics"][0]
    assert CANDIDATE_FALLBACK_METRIC in {m["Name"] for m in definitions["Metrics"]}
    assert not {d for group in definitions["Dimensions"] for d in group} & {"city", "version", "candidate"}
    [(_, kwargs)] = warnings
    assert kwargs["extra"]["kind"] == type(failure).__name__
    assert (kwargs["extra"]["city"], kwargs["extra"]["candidate"]) == (CITY, CANDIDATE)
    # And the capture lines say which houses were meant for the candidate and why live priced them
    lines = capture_lines(stream)
    meant = {line["rollout"]["sampled"]: line for line in lines}
    assert meant[True]["candidate_error"] == type(failure).__name__
    assert meant[True]["rollout"] == {"candidate": CANDIDATE, "mode": "canary", "arm": "live", "sampled": True}
    assert meant[True]["version"] == LIVE
    assert "candidate_error" not in meant[False]
    assert sum(len(line["predictions"]) for line in lines) == 30


def test_a_candidate_answering_the_wrong_number_of_prices_falls_back_too(
    registry: FakeRegistry, endpoint: FakeEndpoint, service: RouterService
) -> None:
    registry.start_rollout("canary", 10_000, SALT)
    endpoint.answers[CANDIDATE_TARGET] = [1.0]
    result = service.predict(CITY, body(houses(3)))
    assert [p["version"] for p in result["predictions"]] == [LIVE] * 3
    assert [target for target, _ in endpoint.calls] == [CANDIDATE_TARGET, LIVE_TARGET]


def test_a_failing_live_version_still_fails_the_request(
    registry: FakeRegistry, endpoint: FakeEndpoint, service: RouterService
) -> None:
    # The fallback protects requests from the candidate only: live's own failure is the request's error
    registry.start_rollout("canary", 5000, SALT)
    endpoint.failures[LIVE_TARGET] = EndpointTimeout("slow")
    with pytest.raises(EndpointTimeout):
        service.predict(CITY, body(houses(20)))


@pytest.mark.parametrize("pinned", [LIVE, OLDER, CANDIDATE])
def test_a_pinned_version_bypasses_the_rollout(
    pinned: str, registry: FakeRegistry, endpoint: FakeEndpoint, service: RouterService, stream: io.StringIO
) -> None:
    # Given a canary sending every house to the candidate
    registry.start_rollout("canary", 10_000, SALT)
    # When a version is pinned (the candidate itself, status "candidate", may be)
    result = service.predict(CITY, body(houses(10)), version=pinned)
    # Then that version alone prices every house, and the capture lines carry no rollout tag
    assert [target for target, _ in endpoint.calls] == [target_model(CITY, pinned)]
    assert {p["version"] for p in result["predictions"]} == {pinned}
    assert result["model"]["version"] == pinned
    [line] = capture_lines(stream)
    assert "rollout" not in line
    assert line["version"] == pinned


def test_the_candidate_can_be_pinned_only_while_it_exists(service: RouterService) -> None:
    with pytest.raises(UnknownVersion):
        service.predict(CITY, body(houses(1)), version=CANDIDATE)


@pytest.mark.parametrize("weight_bp", [0, 2500, 10_000])
def test_shadow_adds_no_call_and_changes_no_answer(
    weight_bp: int, registry: FakeRegistry, endpoint: FakeEndpoint, service: RouterService
) -> None:
    # Given the answer without any rollout
    batch = houses(40)
    before = service.predict(CITY, body(batch))
    calls_before = list(endpoint.calls)
    # When the city runs a shadow rollout at any weight
    registry.start_rollout("shadow", weight_bp, SALT)
    during = service.predict(CITY, body(batch))
    # Then the live version alone answers, with one call, exactly as before
    assert endpoint.calls == calls_before * 2
    assert [(p["price"], p["version"]) for p in during["predictions"]] == [
        (p["price"], p["version"]) for p in before["predictions"]
    ]


def test_shadow_marks_the_sampled_houses_on_their_capture_lines(
    registry: FakeRegistry, service: RouterService, stream: io.StringIO
) -> None:
    registry.start_rollout("shadow", 2500, SALT)
    batch = houses(100)
    result = service.predict(CITY, body(batch))
    lines = capture_lines(stream)
    # Two lines (sampled and not), both the live version's, tagged shadow, with the live call's latency
    assert sorted(line["rollout"]["sampled"] for line in lines) == [False, True]
    for line in lines:
        assert line["version"] == LIVE
        assert line["rollout"] | {"sampled": None} == {
            "candidate": CANDIDATE,
            "mode": "shadow",
            "arm": "live",
            "sampled": None,
        }
        assert line["latency_ms"] >= 0
    sampled = {p["prediction_id"] for line in lines if line["rollout"]["sampled"] for p in line["predictions"]}
    assert sampled == {
        p["prediction_id"] for h, p in zip(batch, result["predictions"], strict=True) if expected_arm(h, 2500)
    }


def test_shadow_without_capture_computes_no_bucket(
    registry: FakeRegistry, endpoint: FakeEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a router that records nothing: the shadow tag has no reader, so nothing is hashed
    registry.start_rollout("shadow", 5000, SALT)

    def forbidden(*args: object) -> int:
        raise AssertionError("bucket computed on the response path")

    monkeypatch.setattr(routing, "buckets", forbidden)
    service = RouterService(registry, endpoint, capture=None)
    assert service.predict(CITY, body(houses(5)))["model"]["version"] == LIVE


def test_canary_capture_lines_carry_each_side_its_version_tag_and_latency(
    registry: FakeRegistry, endpoint: FakeEndpoint, service: RouterService, stream: io.StringIO
) -> None:
    # Given a canary splitting a batch
    registry.start_rollout("canary", 5000, SALT)
    batch = houses(30, with_ids=True)
    result = service.predict(CITY, body(batch), request_id="req-18")
    # Then one line per side: the version that priced it, its arm, and its call's latency
    parsed = [captures.parse_capture_line(line) for line in stream.getvalue().splitlines()]
    by_arm = {group[0].rollout["arm"]: group for group in parsed if group[0].rollout}
    assert set(by_arm) == {"candidate", "live"}
    assert {r.version for r in by_arm["candidate"]} == {CANDIDATE}
    assert {r.version for r in by_arm["live"]} == {LIVE}
    assert {r.rollout["sampled"] for r in by_arm["candidate"]} == {True}
    assert {r.rollout["sampled"] for r in by_arm["live"]} == {False}
    assert all(r.latency_ms is not None and r.candidate_error is None for group in parsed for r in group)
    # and the captured predictions are exactly the response's, each with its own price and house id
    recorded = {r.prediction_id: (r.price, r.version, r.house_id) for group in parsed for r in group}
    assert recorded == {p["prediction_id"]: (p["price"], p["version"], p["house_id"]) for p in result["predictions"]}


def test_without_a_rollout_capture_lines_are_untagged(service: RouterService, stream: io.StringIO) -> None:
    service.predict(CITY, body(houses(3)))
    [line] = capture_lines(stream)
    assert not {"rollout", "latency_ms", "candidate_error"} & set(line)


def test_describe_location_shows_the_running_rollout_with_its_latest_events(
    registry: FakeRegistry, service: RouterService
) -> None:
    # Without a rollout: null, and no history read
    assert service.describe_location(CITY)["rollout"] is None
    assert ("rollout_history", CITY) not in registry.calls
    # With one
    registry.start_rollout("canary", 1000, SALT)
    shown = service.describe_location(CITY)["rollout"]
    assert shown == {
        "mode": "canary",
        "candidate": CANDIDATE,
        "candidate_target_model": CANDIDATE_TARGET,
        "weight_bp": 1000,
        "started_at": "2026-12-01T05:00:00+00:00",
        "deadline": "2026-12-15T05:00:00+00:00",
        "started_by": "operator",
        "revision": 1,
        "policy": {"min_labels": 200, "alpha": 0.05},
        "history": [
            {
                "at": "2026-12-01T05:00:00+00:00",
                "action": "started",
                "candidate": CANDIDATE,
                "live": LIVE,
                "actor": "operator",
                "reason": "",
                "evidence": {"mode": "canary"},
            }
        ],
    }
    # and the salt, which would let a caller choose its arm, is never shown
    assert SALT not in json.dumps(service.describe_location(CITY))


def response_validator(name: str) -> OAS30Validator:
    """The OpenAPI document's schema of a response body, its references resolved within the document."""
    document = openapi.openapi_document()
    return OAS30Validator({"$ref": f"#/components/schemas/{name}", "components": document["components"]})


def test_rollout_responses_keep_the_openapi_contract(registry: FakeRegistry, service: RouterService) -> None:
    # Without a rollout, then with a canary splitting a batch
    response_validator("Location").validate(service.describe_location(CITY))
    response_validator("Predictions").validate(service.predict(CITY, body(houses(3))))
    registry.start_rollout("canary", 5000, SALT)
    response_validator("Location").validate(service.describe_location(CITY))
    response_validator("Predictions").validate(service.predict(CITY, body(houses(30, with_ids=True))))
    # and the document describes what it must: a prediction without its version, a bad mode, are refused
    assert not response_validator("Predictions").is_valid(
        {
            "location": CITY,
            "model": {"version": LIVE, "target_model": LIVE_TARGET},
            "predictions": [{"prediction_id": SequentialIds.expected(CITY, 1)[0], "price": 1.0}],
        }
    )
    described = service.describe_location(CITY)
    assert not response_validator("Location").is_valid({**described, "rollout": {**described["rollout"], "mode": "x"}})
