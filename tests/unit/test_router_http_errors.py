"""The error mapping table: every domain error -> status, body and headers."""

from __future__ import annotations

from typing import Any

import pytest

from house_prices.errors import (
    DependencyFailure,
    EndpointBusy,
    EndpointTimeout,
    EndpointUnavailable,
    FieldProblem,
    InvalidArtifact,
    InvalidCityName,
    InvalidInput,
    InvalidVersion,
    ModelInvocationError,
    PayloadTooLarge,
    UnknownCity,
    UnknownVersion,
)
from house_prices.naming import CITY_PATTERN
from house_prices.settings import SettingsError
from router.http_errors import MAX_REPORTED_PROBLEMS, MAX_TEXT_CHARS, http_error_for, route_not_found

ROUTES = {"/locations/<city>/predictions": ("POST",), "/locations/<city>": ("GET",), "/health": ("GET",)}

CASES: list[tuple[Exception, int, dict[str, str], list[dict[str, str]]]] = [
    (
        InvalidInput([FieldProblem("houses[0].SQUARE_FEET", "must be between 100 and 50000, got 5")]),
        400,
        {},
        [{"field": "houses[0].SQUARE_FEET", "problem": "must be between 100 and 50000, got 5"}],
    ),
    (
        InvalidCityName("New York", CITY_PATTERN),
        400,
        {},
        [{"field": "city", "problem": "must match ^[A-Za-z][A-Za-z0-9_-]{0,63}$ (letters, digits, '_' or '-')"}],
    ),
    (InvalidVersion("v1"), 400, {}, [{"field": "version", "problem": "must look like 20260101T000000Z-0123abcd"}]),
    (
        PayloadTooLarge("houses", "at most 1000 houses per request, got 1001"),
        413,
        {},
        [{"field": "houses", "problem": "at most 1000 houses per request, got 1001"}],
    ),
    (UnknownCity("Atlantis_XX"), 404, {}, [{"field": "city", "problem": "no live model for 'Atlantis_XX'"}]),
    (
        UnknownVersion("Chicago_IL", "20260101T000000Z-00000000"),
        404,
        {},
        [{"field": "version", "problem": "'Chicago_IL' has no version '20260101T000000Z-00000000'"}],
    ),
    (
        ModelInvocationError("could not convert string to float: 'x'", original_status=400),
        502,
        {},
        [
            {
                "field": "model",
                "problem": "the model failed on this request (model status 400); "
                "the operator has been told through the logs",
            }
        ],
    ),
    (
        EndpointBusy("Model not ready", retry_after_seconds=3),
        503,
        {"Retry-After": "3"},
        [{"field": "model", "problem": "the model is loading or the endpoint is throttled"}],
    ),
    (
        EndpointBusy("throttled", retry_after_seconds=0),
        503,
        {"Retry-After": "1"},
        [{"field": "model", "problem": "the model is loading or the endpoint is throttled"}],
    ),
    (EndpointTimeout("no answer within 8 s"), 504, {}, [{"field": "model", "problem": "no answer within 8 s"}]),
    (
        DependencyFailure("DynamoDB GetItem failed"),
        503,
        {"Retry-After": "1"},
        [{"field": "registry", "problem": "temporarily unavailable"}],
    ),
]


@pytest.mark.parametrize(("error", "status", "headers", "errors"), CASES, ids=lambda v: type(v).__name__)
def test_domain_errors_map_to_status_body_and_headers(
    error: Exception, status: int, headers: dict[str, str], errors: list[dict[str, str]]
) -> None:
    # Given a domain error  When it is mapped
    mapped = http_error_for(error)
    # Then status, headers and the error list are exact, and the message is the error's own
    response = mapped.response()
    assert response.status_code == status
    assert {k: v for k, v in response.headers.items() if k != "Content-Type"} == headers
    assert response.headers["Content-Type"] == "application/json"
    assert response.body == {"message": mapped.message, "errors": errors}
    assert mapped.kind == type(error).__name__


def test_endpoint_unavailable_hides_sagemaker_text_from_the_caller() -> None:
    error = EndpointUnavailable("ValidationError: Failed to download model data(bucket: secret-bucket, key: k)")
    body = http_error_for(error).body()
    assert http_error_for(error).status == 502
    assert "secret-bucket" not in str(body)
    assert body["errors"][0]["field"] == "model"


TRACEBACK = (
    'Traceback (most recent call last):\n  File "/opt/ml/model/code/inference.py", line 42, in predict_fn\n'
    "ValueError: bad input"
)


@pytest.mark.parametrize(
    "error",
    [
        ModelInvocationError(TRACEBACK, original_status=500),
        EndpointBusy(f"The model endpoint is busy: {TRACEBACK}"),
        EndpointUnavailable(TRACEBACK),
    ],
    ids=lambda error: type(error).__name__,
)
def test_what_the_model_said_never_reaches_the_caller(error: Exception) -> None:
    # Given the endpoint's error text carrying a model's traceback with server paths
    # When it is mapped to the client's response
    body = str(http_error_for(error).body())
    # Then the body says what failed in our words, and the traceback stays in the logs
    assert "Traceback" not in body
    assert "/opt/ml" not in body
    assert "inference.py" not in body


@pytest.mark.parametrize("error", [RuntimeError("boom at /var/task/x.py"), InvalidArtifact("bad tar"), KeyError("k")])
def test_unexpected_errors_are_a_generic_500(error: Exception) -> None:
    mapped = http_error_for(error, request_id="req-123")
    assert mapped.status == 500
    assert mapped.body() == {
        "message": "Internal server error",
        "errors": [{"field": "request", "problem": "unexpected failure; request id req-123"}],
    }
    assert "boom" not in str(mapped.body())
    assert mapped.kind in {"Unexpected", "InvalidArtifact"}


def test_settings_error_names_each_variable() -> None:
    mapped = http_error_for(SettingsError("router", [FieldProblem("ENDPOINT_NAME", "is required")]))
    assert (mapped.status, mapped.body()["errors"]) == (500, [{"field": "ENDPOINT_NAME", "problem": "is required"}])


def test_long_problem_lists_and_texts_are_clipped() -> None:
    # Given a body with thousands of unknown keys, one of them huge
    problems = [FieldProblem("x" * 10_000, "is not a known feature")] + [
        FieldProblem(f"k{i}", "is not a known feature") for i in range(5_000)
    ]
    # When it is mapped
    body = http_error_for(InvalidInput(problems)).body()
    # Then the echo stays small and says how much was left out
    assert len(body["errors"]) == MAX_REPORTED_PROBLEMS + 1
    assert body["errors"][-1] == {
        "field": "body",
        "problem": f"{5_001 - MAX_REPORTED_PROBLEMS} more problems not shown",
    }
    assert len(body["errors"][0]["field"]) < MAX_TEXT_CHARS + 30
    assert body["errors"][0]["field"].endswith("(10000 chars)")


@pytest.mark.parametrize(
    ("method", "path", "field", "allowed"),
    [
        # A known path under another method: API Gateway answers 404 (no 405), and so does the router
        ("GET", "/locations/Chicago_IL/predictions", "method", "POST"),
        ("DELETE", "/locations/Chicago_IL", "method", "GET"),
        ("POST", "/health", "method", "GET"),
        ("GET", "/nope", "path", None),
        ("POST", "/locations/a/b/predictions", "path", None),
        ("GET", "/locations/Chicago_IL/predictions/extra", "path", None),
    ],
)
def test_every_missing_route_is_api_gateways_404_naming_what_exists(
    method: str, path: str, field: str, allowed: str | None
) -> None:
    mapped = route_not_found(method, path, ROUTES)
    body: dict[str, Any] = mapped.body()
    # The status and message API Gateway sends for a request without a route: {"message":"Not Found"}
    assert (mapped.status, body["message"], mapped.kind) == (404, "Not Found", "RouteNotFound")
    assert "Allow" not in mapped.headers
    # And the router's errors name the method or path, and what the path takes
    assert body["errors"][0]["field"] == field
    assert f"{method} {path}" in body["errors"][0]["problem"]
    if allowed:
        assert body["errors"][0]["problem"].endswith(f"that path takes {allowed}")
