"""local.http_api over a real socket, in front of a fake function running in real sandbox processes."""

from __future__ import annotations

import base64
import json
import os
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from local.http_api import ApiIdentity, HttpApi
from local.sandboxes import SandboxPool, SandboxSpec
from local.template import CorsConfiguration, FunctionSpec, HttpRoute, LocalResources, Template
from testkit.servers import serve_in_thread

pytestmark = pytest.mark.slow

ROUTES = (
    HttpRoute("Echo", "POST", "/echo/{name}"),
    HttpRoute("Raw", "ANY", "/raw"),
    *(HttpRoute(name.title(), "GET", f"/{name}") for name in ("boom", "bad", "bad-header", "slow", "plain", "exit")),
)
CORS = CorsConfiguration(
    allow_origins=("*",),
    allow_methods=("GET", "POST", "OPTIONS"),
    allow_headers=("content-type", "authorization"),
    max_age=300,
)
BODY_TIMEOUT = 0.5
POOL_SIZE = 2


@pytest.fixture(scope="module")
def invocations_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fake") / "invocations.jsonl"


@pytest.fixture(scope="module")
def api_url(invocations_file: Path) -> Iterator[str]:
    function = FunctionSpec(
        logical_id="Fake",
        function_name="test-Fake",
        code_uri=Path(__file__).parent / "fake_function",
        handler="fake_api_handler.handler",
        runtime="python3.13",
        timeout=1,
        memory_size=128,
        environment={"FAKE_INVOCATIONS_FILE": str(invocations_file)},
        http_routes=ROUTES,
    )
    pool = SandboxPool(SandboxSpec(function, "us-east-1", "123456789012"), size=POOL_SIZE)
    app = HttpApi(function, pool, ApiIdentity("123456789012"), CORS, body_timeout=BODY_TIMEOUT)
    with serve_in_thread(app) as url:
        yield url


@pytest.fixture
def http(api_url: str, invocations_file: Path) -> Iterator[httpx.Client]:
    invocations_file.write_text("")
    with httpx.Client(base_url=api_url, timeout=10) as client:
        yield client


def invocations(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_request_becomes_a_payload_2_event_and_the_result_a_response(http: httpx.Client) -> None:
    # Given a POST with a JSON body, query parameters and a cookie
    response = http.post(
        "/echo/Chicago_IL?version=v1&tag=a&tag=b",
        json={"houses": [1]},
        headers={"X-Custom": "yes", "Cookie": "a=1; b=2"},
    )
    # Then the handler saw an API Gateway event with a fresh Lambda context
    assert response.status_code == 200
    facts = response.json()
    event = facts["event"]
    assert event["routeKey"] == "POST /echo/{name}"
    assert event["pathParameters"] == {"name": "Chicago_IL"}
    assert event["queryStringParameters"] == {"version": "v1", "tag": "a,b"}
    assert event["cookies"] == ["a=1", "b=2"]
    assert event["headers"]["x-custom"] == "yes"
    assert json.loads(event["body"]) == {"houses": [1]}
    assert event["requestContext"]["http"]["method"] == "POST"
    assert event["requestContext"]["http"]["sourceIp"] == "127.0.0.1"
    assert facts["function_name"] == "test-Fake"
    assert 0 < facts["remaining_ms"] <= 1000
    # And the proxy result came back as the HTTP response
    assert response.headers["x-route"] == "POST /echo/{name}"
    assert response.headers["apigw-requestid"] == event["requestContext"]["requestId"]


def test_binary_bodies_and_cookies_round_trip(http: httpx.Client, invocations_file: Path) -> None:
    response = http.put("/raw", content=b"\x89PNG\x00", headers={"content-type": "image/png"})
    (seen,) = invocations(invocations_file)
    assert seen["event"]["isBase64Encoded"] is True
    assert base64.b64decode(seen["event"]["body"]) == b"\x89PNG\x00"
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
        # API Gateway HTTP APIs answer a method without a route with 404 too, whatever the method
        ("GET", "/echo/x", 404, "Not Found"),
        ("TRACE", "/plain", 404, "Not Found"),
        ("DELETE", "/plain", 404, "Not Found"),
        ("PATCH", "/echo/x", 404, "Not Found"),
        # An OPTIONS that is not a preflight needs a route like any other method
        ("OPTIONS", "/plain", 404, "Not Found"),
        # Encoded control characters are just path characters: no route, a JSON 404
        ("GET", "/no%0Awhere", 404, "Not Found"),
        ("GET", "/plain%0A", 404, "Not Found"),
        ("GET", "/%0D%0A%00", 404, "Not Found"),
        ("GET", "/boom", 500, "Internal Server Error"),
        ("GET", "/bad", 500, "Internal Server Error"),
        ("GET", "/bad-header", 500, "Internal Server Error"),
        # The function's 1 s Timeout from the template: Lambda fails the invocation
        ("GET", "/slow", 500, "Internal Server Error"),
        # The sandbox process dies mid-invocation
        ("GET", "/exit", 500, "Internal Server Error"),
    ],
)
def test_gateway_errors_are_json_like_api_gateway(
    http: httpx.Client, method: str, path: str, status: int, message: str
) -> None:
    response = http.request(method, path)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"message": message}
    assert "secret" not in response.text


def test_a_timed_out_sandbox_is_replaced_by_a_fresh_one(http: httpx.Client, invocations_file: Path) -> None:
    # Given an invocation that outlives the function's 1 s timeout
    assert http.get("/slow", params={"seconds": "30"}).status_code == 500
    timed_out_pid = invocations(invocations_file)[-1]["pid"]
    # When the next requests arrive
    pids = {http.post("/echo/next", content=b"{}").json()["pid"] for _ in range(4)}
    # Then none of them ran in the killed environment, which is gone
    assert timed_out_pid not in pids
    with pytest.raises(ProcessLookupError):
        os.kill(timed_out_pid, 0)


def test_concurrent_invocations_run_in_separate_sandboxes_with_their_own_state(http: httpx.Client) -> None:
    # Given POOL_SIZE + 2 requests at once, each taking 0.4 s
    def slow(_: int) -> httpx.Response:
        return http.get("/slow", params={"seconds": "0.4"})

    started = time.monotonic()
    with ThreadPoolExecutor(POOL_SIZE + 2) as pool:
        statuses = [response.status_code for response in pool.map(slow, range(POOL_SIZE + 2))]
    elapsed = time.monotonic() - started
    # Then POOL_SIZE ran at once and the rest waited for a free sandbox (two rounds, not one or four)
    assert statuses == [200] * (POOL_SIZE + 2)
    assert 0.8 <= elapsed < 1.6
    # And each sandbox counts only its own invocations (module state is per environment)
    facts = [http.post("/echo/state", content=b"{}").json() for _ in range(6)]
    assert len({fact["pid"] for fact in facts}) <= POOL_SIZE
    for pid in {fact["pid"] for fact in facts}:
        counts = [fact["invocations"] for fact in facts if fact["pid"] == pid]
        assert counts == sorted(set(counts))


def test_bodies_over_the_api_gateway_limit_are_refused_without_invoking(
    http: httpx.Client, invocations_file: Path
) -> None:
    oversized = b"x" * (10 * 1024 * 1024 + 1)

    def chunked() -> Iterator[bytes]:  # no Content-Length: the limit is enforced while streaming
        for start in range(0, len(oversized), 1 << 20):
            yield oversized[start : start + (1 << 20)]

    for content in (oversized, chunked()):
        response = http.post("/echo/big", content=content)
        assert response.status_code == 413
        assert response.json() == {"message": "Request Entity Too Large"}
    assert invocations(invocations_file) == []


def test_a_half_sent_body_is_answered_408_and_the_connection_closed(api_url: str, invocations_file: Path) -> None:
    # Given a client that promises 100 bytes of body and sends 10, then stalls
    host, port = api_url.removeprefix("http://").split(":")
    invocations_file.write_text("")
    with socket.create_connection((host, int(port)), timeout=5) as client:
        client.sendall(b"POST /echo/x HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
        started = time.monotonic()
        received = b""
        while chunk := client.recv(65536):  # until the server closes the connection
            received += chunk
    # Then within the body timeout it gets a JSON 408 and the connection is closed; nothing was invoked
    assert time.monotonic() - started < BODY_TIMEOUT + 2
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408")
    assert b"content-type: application/json" in head.lower()
    assert json.loads(body) == {"message": "Request Timeout"}
    assert invocations(invocations_file) == []


def test_preflights_are_answered_by_the_gateway_from_the_cors_configuration(
    http: httpx.Client, invocations_file: Path
) -> None:
    # Given a browser's preflight for a POST from another origin
    headers = {
        "Origin": "https://app.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }
    # When it reaches the API (on any path: API Gateway needs no OPTIONS route)
    response = http.options("/echo/Chicago_IL", headers=headers)
    # Then API Gateway answers it from the CorsConfiguration, without invoking the function
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == "*"
    assert response.headers["access-control-allow-methods"] == "GET,POST,OPTIONS"
    assert response.headers["access-control-allow-headers"] == "content-type,authorization"
    assert response.headers["access-control-max-age"] == "300"
    assert response.content == b""
    assert invocations(invocations_file) == []


def test_cors_requests_get_the_configured_headers_not_the_functions(http: httpx.Client) -> None:
    # The fake function returns its own access-control-allow-origin; API Gateway ignores it
    with_origin = http.post("/echo/x", content=b"{}", headers={"Origin": "https://app.example"})
    without_origin = http.post("/echo/x", content=b"{}")
    assert with_origin.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-origin" not in without_origin.headers


# --- what API Gateway answers before any route -------------------------


def raw_exchange(api_url: str, request: bytes) -> tuple[bytes, dict[str, str], bytes]:
    """Send ``request`` as is on a fresh connection; read until the server closes it: (status line, headers, body)."""
    host, port = api_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as client:
        client.sendall(request)
        received = b""
        while chunk := client.recv(65536):  # the server must close the connection after its answer
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status, *lines = head.split(b"\r\n")
    headers = {name.decode().lower(): value.decode() for name, _, value in (line.partition(b": ") for line in lines)}
    return status, headers, body


UNPARSABLE = {
    "unknown method": b"FROB /echo/x HTTP/1.1\r\nHost: api\r\n\r\n",
    "lower-case method": b"get /plain HTTP/1.1\r\nHost: api\r\n\r\n",
    "64 KB path": b"GET /" + b"a" * 65_536 + b" HTTP/1.1\r\nHost: api\r\n\r\n",
    "10,000 query parameters": b"GET /plain?"
    + b"&".join(b"p%d=1" % i for i in range(10_000))
    + b" HTTP/1.1\r\nHost: api\r\n\r\n",
    "control character in a header value": b"GET /plain HTTP/1.1\r\nHost: api\r\nX-Note: a\x01b\r\n\r\n",
    "DEL in a header value": b"GET /plain HTTP/1.1\r\nHost: api\r\nX-Note: a\x7fb\r\n\r\n",
    "NUL in a header value": b"GET /plain HTTP/1.1\r\nHost: api\r\nX-Note: a\x00b\r\n\r\n",
    "bare CR in a header value": b"GET /plain HTTP/1.1\r\nHost: api\r\nX-Note: a\rb\r\n\r\n",
    "control character in a header name": b"GET /plain HTTP/1.1\r\nHost: api\r\nX\x01Note: ab\r\n\r\n",
}


@pytest.mark.parametrize("request_bytes", list(UNPARSABLE.values()), ids=list(UNPARSABLE))
def test_requests_the_parser_rejects_get_api_gateways_json_400(
    api_url: str, invocations_file: Path, request_bytes: bytes
) -> None:
    # Given a request uvicorn's HTTP parser cannot parse
    invocations_file.write_text("")
    # When it reaches the local HTTP API over a raw socket
    status, headers, body = raw_exchange(api_url, request_bytes)
    # Then the answer is API Gateway's JSON 400, not uvicorn's plain text, and the connection is closed
    assert status == b"HTTP/1.1 400 Bad Request"
    assert headers["content-type"] == "application/json"
    assert body == b'{"message":"Bad Request"}'
    assert int(headers["content-length"]) == len(body)
    assert headers["connection"] == "close"
    assert headers["apigw-requestid"]
    # And the function was never invoked
    assert invocations(invocations_file) == []


def test_a_parse_error_does_not_disturb_the_next_connection(http: httpx.Client, api_url: str) -> None:
    raw_exchange(api_url, UNPARSABLE["unknown method"])
    assert http.get("/plain").json() == {"hello": "world"}


@pytest.mark.parametrize(("method", "path"), [("GET", "/nowhere"), ("PUT", "/echo/x"), ("TRACE", "/plain")])
def test_the_gateways_not_found_is_api_gateways_bytes(http: httpx.Client, method: str, path: str) -> None:
    response = http.request(method, path)
    assert (response.status_code, response.content) == (404, b'{"message":"Not Found"}')


@pytest.fixture(scope="module")
def router_api_url() -> Iterator[str]:
    """The real router behind the local HTTP API, with one extra route the router does not serve (as a template
    route without a handler would be), so that both the gateway's and the router's not-found can be asked."""
    router = Template.load().function("RouterFunction", LocalResources())
    function = replace(router, http_routes=(*router.http_routes, HttpRoute("Unserved", "GET", "/unserved")))
    pool = SandboxPool(SandboxSpec(function, "us-east-1", "123456789012"), size=1)
    with serve_in_thread(HttpApi(function, pool, ApiIdentity("123456789012"))) as url:
        yield url


@pytest.mark.parametrize(
    ("method", "path", "answered_by"),
    [
        ("GET", "/nowhere", "gateway"),
        ("DELETE", "/locations", "gateway"),  # a known path, another method: 404, never 405
        ("GET", "/locations/Chicago_IL/predictions", "gateway"),
        ("GET", "/unserved", "router"),
    ],
)
def test_unknown_routes_answer_one_shape_whoever_answers(
    router_api_url: str, method: str, path: str, answered_by: str
) -> None:
    # When a request has no route, at the gateway or (behind a route) in the router
    response = httpx.request(method, router_api_url + path, timeout=30)
    # Then it is API Gateway's 404 {"message":"Not Found"}: same status, same message, no Allow header
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    assert response.json()["message"] == "Not Found"
    assert "allow" not in response.headers
    if answered_by == "gateway":
        assert response.content == b'{"message":"Not Found"}'
    else:  # the router adds what exists, in its usual errors list
        assert response.json()["errors"][0]["field"] == "path"
