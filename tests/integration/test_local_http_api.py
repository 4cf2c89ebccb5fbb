"""local.http_api over a real socket, in front of a tiny fake handler."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from endpoint.testing import serve_in_thread
from local.http_api import ApiIdentity, create_app
from local.lambda_runtime import LambdaContext
from local.template import FunctionSpec, HttpRoute

ROUTES = (
    HttpRoute("Echo", "POST", "/echo/{name}"),
    HttpRoute("Raw", "ANY", "/raw"),
    HttpRoute("Boom", "GET", "/boom"),
    HttpRoute("Bad", "GET", "/bad"),
    HttpRoute("Slow", "GET", "/slow"),
    HttpRoute("Plain", "GET", "/plain"),
)
SEEN: list[tuple[dict[str, Any], LambdaContext]] = []
# (path, started, finished) of every invocation, in monotonic seconds
INTERVALS: list[tuple[str, float, float]] = []


def fake_handler(event: dict[str, Any], context: LambdaContext) -> Any:
    started = time.monotonic()
    try:
        return _behave(event, context)
    finally:
        INTERVALS.append((event["rawPath"], started, time.monotonic()))


def _behave(event: dict[str, Any], context: LambdaContext) -> Any:
    """Stands in for the router: echoes what it got, or misbehaves on purpose."""
    SEEN.append((event, context))
    path = event["rawPath"]
    if path == "/boom":
        raise RuntimeError("handler bug")
    if path == "/bad":
        return {"statusCode": "not-a-number"}
    if path == "/slow":
        time.sleep(1.5)
        return {"statusCode": 200}
    if path == "/plain":
        return {"hello": "world"}
    if path == "/raw":
        return {
            "statusCode": 201,
            "isBase64Encoded": True,
            "body": base64.b64encode(b"\x00\xffbinary").decode(),
            "headers": {"content-type": "application/octet-stream"},
            "cookies": ["session=abc; HttpOnly", "theme=dark"],
        }
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/json", "x-route": event["routeKey"]},
        "body": event.get("body", ""),
    }


@pytest.fixture(scope="module")
def api_url() -> Iterator[str]:
    function = FunctionSpec(
        logical_id="Fake",
        function_name="test-Fake",
        code_uri=Path(__file__).parent,
        handler="unused.handler",
        runtime="python3.13",
        timeout=1,
        memory_size=128,
        environment={},
        http_routes=ROUTES,
    )
    app = create_app(function, fake_handler, ApiIdentity("123456789012"), "us-east-1")
    with serve_in_thread(app) as url:
        yield url


@pytest.fixture
def http(api_url: str) -> Iterator[httpx.Client]:
    SEEN.clear()
    with httpx.Client(base_url=api_url, timeout=10) as client:
        yield client


def test_request_becomes_a_payload_2_event_and_the_result_a_response(http: httpx.Client) -> None:
    # Given a POST with a JSON body, query parameters and a cookie
    response = http.post(
        "/echo/Chicago_IL?version=v1&tag=a&tag=b",
        json={"houses": [1]},
        headers={"X-Custom": "yes", "Cookie": "a=1; b=2"},
    )
    # Then the handler saw an API Gateway event with a fresh Lambda context
    event, context = SEEN[-1]
    assert event["routeKey"] == "POST /echo/{name}"
    assert event["pathParameters"] == {"name": "Chicago_IL"}
    assert event["queryStringParameters"] == {"version": "v1", "tag": "a,b"}
    assert event["cookies"] == ["a=1", "b=2"]
    assert event["headers"]["x-custom"] == "yes"
    assert event["requestContext"]["http"]["method"] == "POST"
    assert event["requestContext"]["http"]["sourceIp"] == "127.0.0.1"
    assert context.function_name == "test-Fake"
    assert 0 < context.get_remaining_time_in_millis() <= 1000
    # And the proxy result came back as the HTTP response
    assert response.status_code == 200
    assert response.json() == {"houses": [1]}
    assert response.headers["x-route"] == "POST /echo/{name}"
    assert response.headers["apigw-requestid"] == event["requestContext"]["requestId"]


def test_binary_bodies_and_cookies_round_trip(http: httpx.Client) -> None:
    response = http.put("/raw", content=b"\x89PNG\x00", headers={"content-type": "image/png"})
    event, _ = SEEN[-1]
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == b"\x89PNG\x00"
    assert response.status_code == 201
    assert response.content == b"\x00\xffbinary"
    assert response.headers.get_list("set-cookie") == ["session=abc; HttpOnly", "theme=dark"]


def test_result_without_status_code_is_200_json(http: httpx.Client) -> None:
    response = http.get("/plain")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"hello": "world"}


@pytest.mark.parametrize(
    ("method", "path", "status", "message"),
    [
        ("GET", "/nowhere", 404, "Not Found"),
        # API Gateway HTTP APIs answer a wrong method with 404 too (no route matches)
        ("GET", "/echo/x", 404, "Not Found"),
        ("GET", "/boom", 500, "Internal Server Error"),
        ("GET", "/bad", 500, "Internal Server Error"),
        # The function's 1 s Timeout from the template: Lambda fails the invocation
        ("GET", "/slow", 500, "Internal Server Error"),
    ],
)
def test_gateway_errors_are_json_like_api_gateway(
    http: httpx.Client, method: str, path: str, status: int, message: str
) -> None:
    response = http.request(method, path)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"message": message}


def test_a_timed_out_invocation_keeps_its_sandbox_until_it_really_returns(http: httpx.Client) -> None:
    # Given an invocation that outlives the function's 1 s timeout (its thread cannot be killed)
    INTERVALS.clear()
    assert http.get("/slow").status_code == 500
    # When the next request arrives at once
    assert http.post("/echo/next", content=b"{}").status_code == 200
    # Then it ran only after the slow one had finished: one sandbox never runs two invocations
    slow = next(interval for interval in INTERVALS if interval[0] == "/slow")
    following = next(interval for interval in INTERVALS if interval[0] == "/echo/next")
    assert following[1] >= slow[2]


def test_bodies_over_the_api_gateway_limit_are_refused_without_invoking(http: httpx.Client) -> None:
    oversized = b"x" * (10 * 1024 * 1024 + 1)

    def chunked() -> Iterator[bytes]:  # no Content-Length: the limit is enforced while streaming
        for start in range(0, len(oversized), 1 << 20):
            yield oversized[start : start + (1 << 20)]

    for content in (oversized, chunked()):
        response = http.post("/echo/big", content=content)
        assert response.status_code == 413
        assert response.json() == {"message": "Request Entity Too Large"}
    assert SEEN == []
