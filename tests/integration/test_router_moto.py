"""Router Lambda end to end in process: payload-2.0 events -> real handler -> registry on moto DynamoDB
-> InvokeEndpoint checked by botocore's Stubber (exact parameters, SageMaker error shapes)."""

from __future__ import annotations

import json
import socket
from typing import Any

import boto3
import pytest
from botocore.exceptions import ReadTimeoutError
from botocore.stub import Stubber

from house_prices.registry import ModelRegistry
from router import handler
from tests.lambda_contexts import lambda_context
from tests.model_versions import model_version
from tests.router_doubles import (
    ENDPOINT,
    EVENTS,
    LIVE,
    OLDER,
    REJECTED,
    TABLE,
    StubRouter,
    add_model_error,
    api_event,
    expected_call,
    json_body,
)

# Requests that end in an error record only the separate error metric, so the batch is empty on purpose.
pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")
# Chicago_IL's versions are the fakes' (LIVE, OLDER, REJECTED), so both routers see one registry;
# every version here carries these metrics.
METRICS = {"validation_ae_p50": 12000.5, "r2": 0.93, "rows": 300}


@pytest.fixture
def registry(router_registry: ModelRegistry) -> ModelRegistry:
    """moto DynamoDB with Chicago_IL live at LIVE (OLDER on standby, REJECTED rejected)."""
    for version in (OLDER, LIVE):
        router_registry.record_version(model_version("Chicago_IL", version, metrics=METRICS))
        router_registry.promote("Chicago_IL", version)
    router_registry.record_version(model_version("Chicago_IL", REJECTED, "rejected", metrics=METRICS))
    return router_registry


@pytest.fixture
def stubber(registry: ModelRegistry, stub_router: StubRouter) -> Stubber:
    """The real wiring (settings from env, real clients) with a Stubber on the sagemaker-runtime client."""
    return stub_router(lambda service: {"live": service.endpoint.client})["live"]


def event(name: str, **changes: Any) -> dict[str, Any]:
    loaded = api_event(name)
    if "query" in changes:
        loaded["queryStringParameters"] = changes["query"]
        loaded["rawQueryString"] = "&".join(f"{k}={v}" for k, v in changes["query"].items())
    if "city" in changes:
        loaded["rawPath"] = loaded["rawPath"].replace("Chicago_IL", changes["city"])
        loaded["requestContext"]["http"]["path"] = loaded["rawPath"]
        loaded["pathParameters"] = {"city": changes["city"]}
    return loaded


def invoke(payload: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
    result = handler.lambda_handler(payload, lambda_context("RouterFunction"))
    return result["statusCode"], result.get("headers", {}), json.loads(result["body"]) if result.get("body") else None


def test_live_version_is_resolved_and_invoked_once(stubber: Stubber) -> None:
    # Given Chicago_IL promoted OLDER then LIVE in the registry
    stubber.add_response("invoke_endpoint", json_body([512345.25, 301000.0, 705000.5]), expected_call(LIVE))
    # When a batch of three houses is posted
    status, _, body = invoke(event("api-predictions-batch.json"))
    # Then the live version's TargetModel got one CSV call and the prices come back in order
    assert status == 200
    assert {key: body[key] for key in ("location", "model")} == {
        "location": "Chicago_IL",
        "model": {"version": LIVE, "target_model": f"Chicago_IL.{LIVE}.tar.gz"},
    }
    assert [p["price"] for p in body["predictions"]] == [512345.25, 301000.0, 705000.5]
    assert all(p["prediction_id"].endswith("-Chicago_IL") for p in body["predictions"])


def test_pinned_version_is_served(stubber: Stubber) -> None:
    stubber.add_response("invoke_endpoint", json_body([1.0, 2.0, 3.0]), expected_call(OLDER))
    status, _, body = invoke(event("api-predictions-batch.json", query={"version": OLDER}))
    assert (status, body["model"]["version"]) == (200, OLDER)


@pytest.mark.parametrize(
    ("version", "problem"), [("20200101T000000Z-00000000", "has no version"), (REJECTED, "rejected")]
)
def test_unknown_or_rejected_pinned_version_is_404(stubber: Stubber, version: str, problem: str) -> None:
    status, _, body = invoke(event("api-predictions-batch.json", query={"version": version}))
    assert status == 404
    assert body["errors"][0]["field"] == "version"
    assert problem in body["errors"][0]["problem"]


def test_unknown_city_is_404(stubber: Stubber) -> None:
    status, _, body = invoke(event("api-predictions-batch.json", city="Atlantis_XX"))
    assert (status, body["errors"]) == (404, [{"field": "city", "problem": "no live model for 'Atlantis_XX'"}])


def test_model_error_is_502_without_the_models_message(stubber: Stubber) -> None:
    # Given a model that fails on the request
    add_model_error(stubber, 400, "bad input: expected 6 columns", expected_call(LIVE))
    # When a batch is posted
    status, _, body = invoke(event("api-predictions-batch.json"))
    # Then the caller gets a 502 naming the model's status, never the model's words
    assert status == 502
    (problem,) = body["errors"]
    assert problem["field"] == "model"
    assert "(model status 400)" in problem["problem"]
    assert "expected 6 columns" not in problem["problem"]  # the model's words go to the logs only


def post_batch_while_invoke_fails(stubber: Stubber, code: str, message: str, http_status: int) -> Any:
    """The router's (status, headers, body) for the batch event while InvokeEndpoint answers SageMaker's ``code``."""
    stubber.add_client_error(
        "invoke_endpoint", service_error_code=code, service_message=message, http_status_code=http_status
    )
    return invoke(event("api-predictions-batch.json"))


def test_model_not_ready_is_503_with_retry_after(stubber: Stubber) -> None:
    # Given a model still loading, when a batch is posted
    loading = "Model Chicago_IL is loading"
    status, headers, body = post_batch_while_invoke_fails(stubber, "ModelNotReadyException", loading, 429)
    # Then the caller is told to retry
    assert (status, headers["Retry-After"]) == (503, "1")
    assert body["errors"][0]["field"] == "model"


def test_missing_artifact_is_our_fault_502(stubber: Stubber) -> None:
    # Given a live version whose artifact is missing, when a batch is posted
    missing = "Failed to download model data(bucket: secret-bucket, key: k). Please ensure ..."
    status, _, body = post_batch_while_invoke_fails(stubber, "ValidationError", missing, 400)
    # Then it is a 502 (our fault, not the caller's) that names no bucket
    assert status == 502
    assert "secret-bucket" not in json.dumps(body)


def test_timeout_is_504(stubber: Stubber, monkeypatch: pytest.MonkeyPatch) -> None:
    # Stubber cannot raise transport errors; botocore raises this one when read_timeout elapses.
    client = handler.service().endpoint.client  # type: ignore[attr-defined]

    def timed_out(**_: Any) -> Any:
        raise ReadTimeoutError(endpoint_url=f"https://runtime.sagemaker.us-east-1.amazonaws.com/endpoints/{ENDPOINT}")

    monkeypatch.setattr(client, "invoke_endpoint", timed_out)
    status, _, body = invoke(event("api-predictions-batch.json"))
    assert status == 504
    assert body["errors"] == [{"field": "model", "problem": "The model endpoint did not answer within 8 s"}]


def test_locations_and_location_detail_come_from_the_registry(stubber: Stubber) -> None:
    status, _, body = invoke(event("api-get-locations.json"))
    assert status == 200
    assert [(loc["location"], loc["version"]) for loc in body["locations"]] == [("Chicago_IL", LIVE)]
    status, _, body = invoke(event("api-get-location.json"))
    assert status == 200
    assert body["live"]["version"] == LIVE
    assert [(v["version"], v["status"]) for v in body["versions"]] == [
        (REJECTED, "rejected"),
        (LIVE, "live"),
        (OLDER, "standby"),
    ]
    assert body["versions"][1]["metrics"] == {"validation_ae_p50": 12000.5, "r2": 0.93, "rows": 300}


def test_deep_health_reads_the_table(stubber: Stubber) -> None:
    status, _, body = invoke(event("api-get-health.json", query={"deep": "true"}))
    assert (status, body["checks"]["registry"]) == (200, "ok")


def test_promotion_is_seen_after_the_cache_ttl(stubber: Stubber, registry: ModelRegistry) -> None:
    # Given a warm container that resolved LIVE
    stubber.add_response("invoke_endpoint", json_body([1.0, 2.0, 3.0]), expected_call(LIVE))
    assert invoke(event("api-predictions-batch.json"))[2]["model"]["version"] == LIVE
    # When a newer version is promoted, the cached live model serves until the TTL elapses
    newer = "20261127T040000Z-cafef00d"
    registry.record_version(model_version("Chicago_IL", newer))
    registry.promote("Chicago_IL", newer)
    stubber.add_response("invoke_endpoint", json_body([1.0, 2.0, 3.0]), expected_call(LIVE))
    assert invoke(event("api-predictions-batch.json"))[2]["model"]["version"] == LIVE
    handler.service().registry.clear()  # type: ignore[attr-defined]  (stands in for 10 s passing)
    stubber.add_response("invoke_endpoint", json_body([1.0, 2.0, 3.0]), expected_call(newer))
    assert invoke(event("api-predictions-batch.json"))[2]["model"]["version"] == newer


def test_registry_outage_is_503(stubber: Stubber, registry: ModelRegistry) -> None:
    boto3.client("dynamodb").delete_table(TableName=TABLE)
    status, headers, body = invoke(event("api-predictions-batch.json"))
    assert (status, headers["Retry-After"], body["errors"][0]["field"]) == (503, "1", "registry")


# What each `sam local invoke` input in events/ must produce against a registry with Chicago_IL live.
EVENT_STATUSES = {
    "api-get-health.json": 200,
    "api-get-location.json": 200,
    "api-get-location-invalid-city.json": 400,
    "api-get-locations.json": 200,
    "api-predictions-batch.json": 200,
    "api-predictions-single.json": 200,
    "api-predictions-version-pinned.json": 200,
    "api-predictions-hostile-city.json": 400,
    "api-predictions-invalid-field.json": 400,
    "api-predictions-not-json.json": 400,
    "api-predictions-unknown-city.json": 404,
    "api-predictions-unknown-field.json": 400,
}


def test_every_api_event_file_is_classified() -> None:
    assert set(EVENT_STATUSES) == {path.name for path in EVENTS.glob("api-*.json")}


@pytest.mark.parametrize(("name", "expected"), sorted(EVENT_STATUSES.items()))
def test_event_files_get_their_status_through_the_real_handler(stubber: Stubber, name: str, expected: int) -> None:
    # Given an event from events/ (the files users pass to `sam local invoke` / `make invoke`)
    payload = api_event(name)
    if expected == 200 and payload["requestContext"]["http"]["method"] == "POST":
        body = json.loads(payload["body"])
        stubber.add_response("invoke_endpoint", json_body([250_000.0] * len(body.get("houses", [body]))))
    # When it runs through the handler
    status, _, answer = invoke(payload)
    # Then the status is the documented one, and an error names a field
    assert status == expected, answer
    if status >= 400:
        assert answer["errors"], answer
        assert all(problem["field"] for problem in answer["errors"])


def test_a_sampled_request_traces_the_handler_the_registry_and_the_endpoint(
    stubber: Stubber, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a UDP socket standing in for Lambda's X-Ray daemon, and a sampled invocation
    daemon = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    daemon.bind(("127.0.0.1", 0))
    daemon.settimeout(5)
    trace_root, function_segment = "1-67a1b2c3-0123456789abcdef01234567", "53995c3f42cd8ad8"
    monkeypatch.delenv("POWERTOOLS_TRACE_DISABLED")
    monkeypatch.setenv("AWS_XRAY_DAEMON_ADDRESS", f"127.0.0.1:{daemon.getsockname()[1]}")
    monkeypatch.setenv("_X_AMZN_TRACE_ID", f"Root={trace_root};Parent={function_segment};Sampled=1")
    stubber.add_response("invoke_endpoint", json_body([1.0, 2.0, 3.0]), expected_call(LIVE))
    # When a prediction is served
    try:
        assert invoke(event("api-predictions-batch.json"))[0] == 200
        documents = []
        while not any(d["name"] == "## lambda_handler" for d in documents):
            header, _, body = daemon.recvfrom(65536)[0].partition(b"\n")
            assert json.loads(header) == {"format": "json", "version": 1}
            documents.append(json.loads(body))
    finally:
        daemon.close()
    # Then the daemon got the handler's subsegment, and under it the registry read and the endpoint call
    by_name = {d["name"]: d for d in documents}
    handler_segment = by_name["## lambda_handler"]
    assert (handler_segment["trace_id"], handler_segment["parent_id"]) == (trace_root, function_segment)
    assert isinstance(handler_segment["annotations"]["ColdStart"], bool)
    registry_call, endpoint_call = by_name["DynamoDB"], by_name["SageMaker Runtime"]
    assert (registry_call["aws"]["operation"], registry_call["aws"]["table_name"]) == ("GetItem", TABLE)
    assert (endpoint_call["aws"]["operation"], endpoint_call["http"]) == (
        "InvokeEndpoint",
        {"response": {"status": 200}},
    )
    assert {d["trace_id"] for d in documents} == {trace_root}
    ids = {d["id"] for d in documents} | {function_segment}
    assert all(d["parent_id"] in ids for d in documents)
