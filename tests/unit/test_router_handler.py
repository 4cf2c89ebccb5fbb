"""The real Lambda handler (resolver + Powertools decorators) fed payload-2.0 events; fake AWS behind real logic."""

from __future__ import annotations

import base64
import copy
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from aws_lambda_powertools.metrics.provider import cold_start
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from house_prices import captures, openapi, schema
from house_prices.observability import logger, metrics
from router import handler, wiring
from router.capture import PredictionCapture
from router.logic import RouterService
from router.settings import RouterSettings
from tests.lambda_contexts import lambda_context
from tests.router_doubles import LIVE, FakeEndpoint, FakeRegistry, SequentialIds, api_event

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
# Requests that end in an error record only the separate error metric, so the batch is empty on purpose.
pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")
HOUSE = dict(schema.EXAMPLE_HOUSE)


@pytest.fixture
def endpoint() -> FakeEndpoint:
    return FakeEndpoint()


@pytest.fixture
def log_stream() -> io.StringIO:
    """What the router writes to stdout for capture (Lambda's log stream)."""
    return io.StringIO()


@pytest.fixture(autouse=True)
def router_environment(
    monkeypatch: pytest.MonkeyPatch, endpoint: FakeEndpoint, log_stream: io.StringIO
) -> Iterator[list[RouterSettings]]:
    """Function env, a fresh container (no cached service, cold start) and fakes behind the real logic."""
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "router")
    monkeypatch.setenv("ENDPOINT_NAME", "house-prices-mme")
    monkeypatch.setenv("REGISTRY_TABLE", "house-prices-registry")
    built: list[RouterSettings] = []

    def build(settings: RouterSettings) -> RouterService:
        built.append(settings)
        return RouterService(
            FakeRegistry(),
            endpoint,
            settings.max_houses_per_request,
            capture=PredictionCapture(settings.capture_sample_rate, stream=log_stream),
            new_prediction_ids=SequentialIds(),
        )

    monkeypatch.setattr(wiring, "build_service", build)
    handler.service.cache_clear()
    cold_start.is_cold_start = True
    metrics.clear_metrics()
    yield built
    handler.service.cache_clear()
    metrics.clear_metrics()


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


def invoke(event: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
    result = handler.lambda_handler(event, lambda_context("RouterFunction"))
    body = json.loads(result["body"]) if result.get("body") else None
    return result["statusCode"], result.get("headers", {}), body


def request(
    method: str, path: str, body: str | None = None, query: dict[str, str] | None = None, b64: bool = False
) -> dict[str, Any]:
    event = copy.deepcopy(api_event("api-get-health.json"))
    event["rawPath"] = path
    event["requestContext"]["http"]["method"] = method
    event["requestContext"]["http"]["path"] = path
    event["routeKey"] = event["requestContext"]["routeKey"] = "$default"
    event["rawQueryString"] = "&".join(f"{k}={quote(v)}" for k, v in (query or {}).items())
    if query:
        event["queryStringParameters"] = query
    if body is not None:
        event["body"] = body
    event["isBase64Encoded"] = b64
    return event


def assert_error_body(status: int, body: Any) -> None:
    assert isinstance(body, dict), body
    assert set(body) == {"message", "errors"}, body
    assert isinstance(body["message"], str)
    assert body["message"]
    assert body["errors"], f"{status} must name at least one field"
    for error in body["errors"]:
        assert set(error) == {"field", "problem"}
        assert isinstance(error["field"], str)
        assert isinstance(error["problem"], str)
        assert error["field"]
        assert error["problem"]


def test_generated_fixture_is_the_sam_http_api_event() -> None:
    raw = fixture("apigw_http_api_proxy.json")
    assert (raw["version"], raw["routeKey"]) == ("2.0", "$default")


def test_predict_fixture(
    endpoint: FakeEndpoint, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    log_stream = io.StringIO()
    monkeypatch.setattr(logger.registered_handler, "stream", log_stream)
    event = api_event("api-predictions-batch.json")
    event["headers"]["origin"] = "https://example.org"
    status, headers, body = invoke(event)
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert headers["Access-Control-Allow-Origin"] == "*"
    ids = SequentialIds.expected("Chicago_IL", 3)
    assert body == {
        "location": "Chicago_IL",
        "model": {"version": LIVE, "target_model": f"Chicago_IL.{LIVE}.tar.gz"},
        "predictions": [
            {"prediction_id": ids[0], "price": 450000.0, "version": LIVE},
            {"prediction_id": ids[1], "price": 330000.0, "version": LIVE},
            {"prediction_id": ids[2], "price": 615000.0, "version": LIVE},
        ],
    }
    assert endpoint.calls == [
        (f"Chicago_IL.{LIVE}.tar.gz", "1995,3000,4,2.5,1.0,2\n2010,2200,3,2.0,0.75,1\n1978,4100,6,3.5,1.42,3\n")
    ]
    # Powertools wrote EMF (cold start + request metrics) and a log line correlated with the API request id
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    names = {m["Name"] for blob in emf for m in blob["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert {"ColdStart", "HousesPerRequest", "PredictionLatency", "EndpointLatency"} <= names
    for blob in emf:
        dimensions = {d for group in blob["_aws"]["CloudWatchMetrics"][0]["Dimensions"] for d in group}
        assert not dimensions & {"city", "version", "location"}
    logs = [json.loads(line) for line in log_stream.getvalue().splitlines()]
    logs = [line for line in logs if line["message"] == "Predicted"]
    assert len(logs) == 1
    assert logs[0]["correlation_id"] == "predict-batch"
    assert logs[0]["city"] == "Chicago_IL"


def batch_with_house_id(index: int, house_id: str) -> dict[str, Any]:
    """The batch fixture's event with the caller's ``house_id`` on its house at ``index``."""
    event = api_event("api-predictions-batch.json")
    payload = json.loads(event["body"])
    payload["houses"][index]["house_id"] = house_id
    event["body"] = json.dumps(payload)
    return event


def test_single_house_fixture() -> None:
    status, _, body = invoke(api_event("api-predictions-single.json"))
    assert (status, body["predictions"]) == (
        200,
        [{"prediction_id": SequentialIds.expected("Chicago_IL", 1)[0], "price": 450000.0, "version": LIVE}],
    )


def test_house_ids_are_echoed_and_the_request_is_captured_with_its_api_request_id(log_stream: io.StringIO) -> None:
    # Given the batch fixture, its second house carrying the caller's id
    # When it is priced
    status, _, body = invoke(batch_with_house_id(1, "MLS 2026-0042"))
    # Then the id comes back next to its own price
    assert status == 200
    assert [p.get("house_id") for p in body["predictions"]] == [None, "MLS 2026-0042", None]
    # And one capture line on the log stream holds the three predictions as answered, with the request id
    lines = log_stream.getvalue().splitlines()
    assert len(lines) == 1
    recorded = captures.parse_capture_line(lines[0])
    assert [(r.prediction_id, r.price, r.house_id) for r in recorded] == [
        (p["prediction_id"], p["price"], p.get("house_id")) for p in body["predictions"]
    ]
    assert {(r.city, r.version, r.request_id) for r in recorded} == {("Chicago_IL", LIVE, "predict-batch")}
    assert recorded[2].features == dict(zip(schema.FEATURE_NAMES, (1978, 4100, 6, 3.5, 1.42, 3), strict=True))


def test_capture_sample_rate_zero_records_nothing_but_still_ids_every_price(
    monkeypatch: pytest.MonkeyPatch, log_stream: io.StringIO
) -> None:
    # Given capture switched off by its setting
    monkeypatch.setenv("CAPTURE_SAMPLE_RATE", "0")
    # When a batch is priced
    status, _, body = invoke(api_event("api-predictions-batch.json"))
    # Then nothing is recorded, and every price still has its id
    assert status == 200
    assert log_stream.getvalue() == ""
    assert all(p["prediction_id"] for p in body["predictions"])


def test_invalid_house_ids_are_client_errors_naming_the_field() -> None:
    status, _, body = invoke(batch_with_house_id(2, "tab\there"))
    assert status == 400
    assert [e["field"] for e in body["errors"]] == ["houses[2].house_id"]


def test_invoke_endpoint_gets_the_requests_first_ulid_as_inference_id(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the real endpoint adapter on a stubbed SageMaker Runtime client that expects exact parameters
    import botocore.session
    from botocore.response import StreamingBody
    from botocore.stub import Stubber

    from router.adapters.endpoint import SageMakerEndpoint

    client = botocore.session.get_session().create_client("sagemaker-runtime", region_name="us-east-1")
    first_id = SequentialIds.expected("Chicago_IL", 1)[0]
    with Stubber(client) as stubber:
        raw = b"[450000.0, 330000.0, 615000.0]"
        stubber.add_response(
            "invoke_endpoint",
            {"Body": StreamingBody(io.BytesIO(raw), len(raw)), "ContentType": "application/json"},
            {
                "EndpointName": "house-prices-mme",
                "TargetModel": f"Chicago_IL.{LIVE}.tar.gz",
                "ContentType": "text/csv",
                "Accept": "application/json",
                "Body": b"1995,3000,4,2.5,1.0,2\n2010,2200,3,2.0,0.75,1\n1978,4100,6,3.5,1.42,3\n",
                "InferenceId": first_id[:26],
            },
        )
        monkeypatch.setattr(
            wiring,
            "build_service",
            lambda settings: RouterService(
                FakeRegistry(), SageMakerEndpoint(client, settings.endpoint_name), new_prediction_ids=SequentialIds()
            ),
        )
        handler.service.cache_clear()
        # When a batch is priced through the Lambda handler
        status, _, body = invoke(api_event("api-predictions-batch.json"))
        # Then the one call carried the first house's ULID (26 characters, within InferenceId's 64)
        stubber.assert_no_pending_responses()
    assert status == 200
    assert body["predictions"][0]["prediction_id"] == first_id


def test_list_describe_and_health_fixtures() -> None:
    status, _, body = invoke(api_event("api-get-locations.json"))
    assert (status, [loc["location"] for loc in body["locations"]]) == (200, ["Chicago_IL"])
    status, _, body = invoke(api_event("api-get-location.json"))
    assert (status, body["live"]["version"], body["versions"][0]["metrics"]) == (200, LIVE, {"r2": 0.9})
    status, _, body = invoke(api_event("api-get-health.json"))
    assert (status, body) == (200, {"status": "ok", "checks": {"settings": "ok"}})
    status, _, body = invoke(request("GET", "/health", query={"deep": "true"}))
    assert (status, body["checks"]) == (200, {"settings": "ok", "registry": "ok"})


def test_service_is_built_once_per_container(router_environment: list[RouterSettings]) -> None:
    for _ in range(3):
        assert invoke(api_event("api-get-health.json"))[0] == 200
    assert len(router_environment) == 1
    assert router_environment[0].endpoint_name == "house-prices-mme"


def test_stage_prefix_is_stripped() -> None:
    event = api_event("api-get-health.json")
    event["rawPath"] = "/prod/health"
    event["requestContext"]["stage"] = "prod"
    assert invoke(event)[0] == 200


@pytest.mark.parametrize(
    ("event", "status", "field"),
    [
        (request("POST", "/locations/Chicago_IL/predictions", "{"), 400, "body"),
        (request("POST", "/locations/Chicago_IL/predictions"), 400, "body"),
        (request("POST", "/locations/New%20York/predictions", json.dumps(HOUSE)), 400, "city"),
        (request("POST", "/locations/Atlantis_XX/predictions", json.dumps(HOUSE)), 404, "city"),
        (request("POST", "/locations/Chicago_IL/predictions", json.dumps(HOUSE), {"version": "v1"}), 400, "version"),
        (
            request(
                "POST", "/locations/Chicago_IL/predictions", json.dumps(HOUSE), {"version": "20200101T000000Z-00000000"}
            ),
            404,
            "version",
        ),
        (request("POST", "/locations/Chicago_IL/predictions", json.dumps({"houses": [HOUSE] * 1001})), 413, "houses"),
        (request("POST", "/locations/Chicago_IL/predictions", "e30=", b64=True), 400, "YEAR_BUILT"),
        (request("POST", "/locations/Chicago_IL/predictions", "%%%", b64=True), 400, "body"),
        (request("GET", "/locations/Atlantis_XX"), 404, "city"),
        (request("GET", "/locations/bad.name"), 400, "city"),
        (request("GET", "/nowhere"), 404, "path"),
        # No 405: API Gateway answers a method without a route 404 {"message":"Not Found"}, and so does the router
        (request("GET", "/locations/Chicago_IL/predictions"), 404, "method"),
        (request("DELETE", "/locations"), 404, "method"),
    ],
)
def test_client_mistakes_are_json_4xx_naming_a_field(event: dict[str, Any], status: int, field: str) -> None:
    got, headers, body = invoke(event)
    assert got == status, body
    assert_error_body(got, body)
    assert any(error["field"].endswith(field) for error in body["errors"]), body
    assert "Allow" not in headers


def test_errors_are_counted_by_kind_only(capsys: pytest.CaptureFixture[str]) -> None:
    # When a request for an unknown city is rejected
    event = request("POST", "/locations/Atlantis_XX/predictions", json.dumps(HOUSE))
    assert invoke(event)[0] == 404
    # Then one RequestErrors metric is emitted with the error kind as its only own dimension
    # (Powertools adds the constant service name to every blob)
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    errors = [blob for blob in emf if "RequestErrors" in blob]
    assert len(errors) == 1
    assert errors[0]["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["kind", "service"]]
    assert errors[0]["service"] == "router"
    assert (errors[0]["kind"], errors[0]["RequestErrors"]) == ("UnknownCity", [1.0])
    assert "Atlantis_XX" not in json.dumps(errors[0])


def test_cors_preflight_is_answered() -> None:
    event = request("OPTIONS", "/locations/Chicago_IL/predictions")
    event["headers"]["origin"] = "https://example.org"
    status, headers, _ = invoke(event)
    assert status == 204
    assert headers["Access-Control-Allow-Origin"] == "*"
    assert "POST" in headers["Access-Control-Allow-Methods"]


def test_missing_settings_give_a_clear_500_and_recover(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a function deployed without ENDPOINT_NAME
    monkeypatch.delenv("ENDPOINT_NAME")
    # When it is called, Then the error names the variable
    status, _, body = invoke(api_event("api-get-health.json"))
    assert status == 500
    assert body["errors"] == [{"field": "ENDPOINT_NAME", "problem": "is required"}]
    # and once configured the same container serves (a failed build is not cached)
    monkeypatch.setenv("ENDPOINT_NAME", "house-prices-mme")
    assert invoke(api_event("api-get-health.json"))[0] == 200


def test_unexpected_failure_is_a_generic_500_with_the_request_id(
    monkeypatch: pytest.MonkeyPatch, endpoint: FakeEndpoint
) -> None:
    def broken(*_: Any) -> list[float]:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(endpoint, "invoke", broken)
    status, _, body = invoke(api_event("api-predictions-batch.json"))
    assert status == 500
    assert body == {
        "message": "Internal server error",
        "errors": [{"field": "request", "problem": "unexpected failure; request id predict-batch"}],
    }


# Hostile and malformed requests: any client mistake must be a JSON 4xx naming a field, never a 5xx.
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.sampled_from([1e308, -1e308, 10**400, -(10**400), 2**63, 5e-324, 0.1 + 0.2, -0.0]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)
_json_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)
_house_like = st.fixed_dictionaries(
    {name: st.one_of(st.just(value), _scalars) for name, value in HOUSE.items()},
    optional={"EXTRA": _scalars, "house_id": _scalars | st.text(max_size=70)},
)
_payloads = st.one_of(
    _json_values,
    _house_like,
    st.builds(lambda houses: {"houses": houses}, st.lists(_house_like | _json_values, max_size=5)),
    st.dictionaries(st.sampled_from(["houses", "HOUSES", "x"]), _json_values, max_size=2),
)
_bodies = st.one_of(
    st.none(),
    st.text(max_size=200),
    st.builds(lambda p: json.dumps(p, allow_nan=True), _payloads),
    st.sampled_from(["[" * 5000, '{"houses": [' + "1," * 3000 + "1]}", "1" * 5000, "\ud800", "nul\x00l"]),
)
_segments = st.one_of(
    st.sampled_from(["Chicago_IL", "Atlantis_XX", "", "..", "Chicago_IL.tar.gz", "a" * 70, "%2F", "%00"]),
    st.text(max_size=30),
)


def _encode(body: str | None, b64: bool) -> str | None:
    return base64.b64encode(body.encode("utf-8", "surrogatepass")).decode() if b64 and body is not None else body


@st.composite
def hostile_predictions(draw: st.DrawFn) -> dict[str, Any]:
    """Well-routed predictions for a real city: the body and the version are the hostile parts."""
    city = draw(st.sampled_from(["Chicago_IL", "Atlantis_XX"]))
    query = draw(st.sampled_from([{}, {"version": LIVE}]) | st.dictionaries(st.just("version"), st.text(max_size=30)))
    b64 = draw(st.booleans())
    body = _encode(draw(_bodies), b64 and draw(st.booleans()))
    return request("POST", f"/locations/{city}/predictions", body, query, b64)


@st.composite
def hostile_requests(draw: st.DrawFn) -> dict[str, Any]:
    """Anything a client can send: method, path, query, body and base64 flag all vary."""
    method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"]))
    segment = draw(_segments)
    if draw(st.booleans()):
        segment = quote(segment, safe="")
    path = draw(
        st.sampled_from(
            [f"/locations/{segment}/predictions", f"/locations/{segment}", "/locations", "/health", f"/{segment}"]
        )
    )
    query = draw(st.dictionaries(st.sampled_from(["version", "deep", "x"]), st.text(max_size=40), max_size=2))
    b64 = draw(st.booleans())
    body = _encode(draw(_bodies), b64 and draw(st.booleans()))
    return request(method, path, body, query, b64)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(event=st.one_of(hostile_predictions(), hostile_requests()))
def test_hostile_requests_never_yield_5xx(event: dict[str, Any]) -> None:
    status, _, body = invoke(event)
    assert status < 500, (status, body, event["rawPath"], event.get("body"))
    if status >= 400:
        assert_error_body(status, body)
    else:
        assert status == 200
        assert isinstance(body, dict)


def test_handler_module_pulls_in_no_numpy_or_sklearn() -> None:
    # The Lambda package carries boto3 + Powertools + the common layer only.
    import subprocess
    import sys

    heavy = ("numpy", "sklearn", "pandas", "cachetools")
    code = f"import sys, router.handler; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_openapi_document_is_served_with_the_routers_batch_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a router configured for at most 25 houses per request
    monkeypatch.setenv("MAX_HOUSES_PER_REQUEST", "25")
    handler.service.cache_clear()
    # When a client asks for the API's description
    status, _, body = invoke(request("GET", "/openapi.json"))
    # Then it gets the OpenAPI document generated from the schema module, with that limit
    assert status == 200
    assert body == openapi.openapi_document(max_houses=25)
    assert body["components"]["schemas"]["Houses"]["properties"]["houses"]["maxItems"] == 25
