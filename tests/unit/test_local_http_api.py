"""local.http_api_events, the pure parts of the HTTP API stand-in: routes, payload-2.0 events, proxy results."""

from __future__ import annotations

import base64
import json

import pytest

from local.http_api_events import (
    ApiIdentity,
    HttpResponse,
    InvalidProxyResult,
    RawRequest,
    build_event,
    compile_routes,
    cors_headers,
    encode_body,
    gateway_error,
    map_result,
    match_route,
    preflight_response,
    with_cors,
)
from local.template import CorsConfiguration, HttpRoute

ROUTES = compile_routes(
    [
        HttpRoute("Predict", "POST", "/locations/{city}/predictions"),
        HttpRoute("Location", "GET", "/locations/{city}"),
        HttpRoute("Locations", "GET", "/locations"),
        HttpRoute("Special", "GET", "/locations/special"),
        HttpRoute("Proxy", "ANY", "/files/{path+}"),
    ]
)


@pytest.mark.parametrize(
    ("method", "path", "route_key", "parameters"),
    [
        ("POST", "/locations/Chicago_IL/predictions", "POST /locations/{city}/predictions", {"city": "Chicago_IL"}),
        ("GET", "/locations/Chicago_IL", "GET /locations/{city}", {"city": "Chicago_IL"}),
        ("GET", "/locations/", "GET /locations", {}),
        # A literal segment beats a {parameter} on the same position
        ("GET", "/locations/special", "GET /locations/special", {}),
        # Path parameters are URL-decoded
        ("GET", "/locations/New%20York", "GET /locations/{city}", {"city": "New York"}),
        ("DELETE", "/files/a/b/c.txt", "ANY /files/{path+}", {"path": "a/b/c.txt"}),
    ],
)
def test_routes_match_like_api_gateway(method: str, path: str, route_key: str, parameters: dict) -> None:
    matched = match_route(ROUTES, method, path)
    assert matched is not None
    route, values = matched
    assert (route.route_key, values) == (route_key, parameters)


@pytest.mark.parametrize(("method", "path"), [("GET", "/locations/x/predictions"), ("PUT", "/locations"), ("GET", "/")])
def test_unmatched_method_or_path_is_no_route(method: str, path: str) -> None:
    assert match_route(ROUTES, method, path) is None


def _request(**changes: object) -> RawRequest:
    values: dict = {
        "method": "POST",
        "path": "/locations/Chicago_IL/predictions",
        "raw_path": "/locations/Chicago_IL/predictions",
        "raw_query": "version=v1&tag=a&tag=b&empty=",
        "headers": [
            ("Host", "127.0.0.1:9000"),
            ("Content-Type", "application/json"),
            ("X-Multi", "one"),
            ("x-multi", "two"),
            ("Cookie", "a=1; b=2"),
            ("User-Agent", "pytest"),
        ],
        "body": b'{"houses": []}',
        "source_ip": "127.0.0.5",
        "server_port": 9000,
    }
    values.update(changes)
    return RawRequest(**values)


def test_event_has_every_payload_2_0_field() -> None:
    # Given a POST with duplicate headers, cookies and a repeated query parameter
    route = HttpRoute("Predict", "POST", "/locations/{city}/predictions")
    event = build_event(
        _request(), route, {"city": "Chicago_IL"}, ApiIdentity("123456789012"), now=1_700_000_000.5, request_id="rid"
    )
    # Then the event is what API Gateway sends for payload format 2.0
    assert event["version"] == "2.0"
    assert event["routeKey"] == "POST /locations/{city}/predictions"
    assert event["rawPath"] == "/locations/Chicago_IL/predictions"
    assert event["rawQueryString"] == "version=v1&tag=a&tag=b&empty="
    assert event["queryStringParameters"] == {"version": "v1", "tag": "a,b", "empty": ""}
    assert event["pathParameters"] == {"city": "Chicago_IL"}
    assert event["cookies"] == ["a=1", "b=2"]
    headers = event["headers"]
    assert headers["x-multi"] == "one,two"
    assert headers["content-type"] == "application/json"
    assert "cookie" not in headers
    assert all(name == name.lower() for name in headers)
    assert headers["x-forwarded-for"] == "127.0.0.5"
    assert headers["x-forwarded-port"] == "9000"
    assert event["body"] == '{"houses": []}'
    assert event["isBase64Encoded"] is False
    context = event["requestContext"]
    assert context["accountId"] == "123456789012"
    assert context["apiId"] == "local"
    assert context["domainName"] == "127.0.0.1:9000"
    assert context["http"] == {
        "method": "POST",
        "path": "/locations/Chicago_IL/predictions",
        "protocol": "HTTP/1.1",
        "sourceIp": "127.0.0.5",
        "userAgent": "pytest",
    }
    assert context["requestId"] == "rid"
    assert context["routeKey"] == event["routeKey"]
    assert context["stage"] == "$default"
    assert context["time"] == "14/Nov/2023:22:13:20 +0000"
    assert context["timeEpoch"] == 1_700_000_000_500


def test_event_omits_optional_fields_when_absent() -> None:
    request = _request(method="GET", raw_query="", headers=[("host", "h")], body=b"")
    event = build_event(request, HttpRoute("L", "GET", "/locations"), {}, ApiIdentity("1"))
    for absent in ("cookies", "queryStringParameters", "pathParameters", "body", "stageVariables"):
        assert absent not in event
    assert event["isBase64Encoded"] is False


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        (b'{"a": 1}', "application/json; charset=utf-8", ('{"a": 1}', False)),
        (b"1,2,3", "text/csv", ("1,2,3", False)),
        (b"x=1", "application/x-www-form-urlencoded", ("x=1", False)),
        (b"\x89PNG", "image/png", (base64.b64encode(b"\x89PNG").decode(), True)),
        (b"plain", "application/octet-stream", (base64.b64encode(b"plain").decode(), True)),
        # Declared text but not UTF-8: only base64 keeps the bytes
        (b"\xff\xfe", "text/plain", (base64.b64encode(b"\xff\xfe").decode(), True)),
        (b"", "application/json", (None, False)),
    ],
)
def test_body_encoding(body: bytes, content_type: str, expected: tuple) -> None:
    assert encode_body(body, content_type) == expected


def test_proxy_result_maps_status_headers_cookies_and_body() -> None:
    response = map_result(
        {
            "statusCode": 503,
            "headers": {"Content-Type": "application/json", "Retry-After": 2},
            "multiValueHeaders": {"X-Many": ["a", "b"]},
            "cookies": ["s=1; Path=/", "t=2"],
            "body": '{"message": "busy"}',
        }
    )
    assert response.status == 503
    assert response.header("retry-after") == "2"
    assert [v for k, v in response.headers if k == "x-many"] == ["a", "b"]
    assert [v for k, v in response.headers if k == "set-cookie"] == ["s=1; Path=/", "t=2"]
    assert json.loads(response.body) == {"message": "busy"}


def test_base64_result_body_is_decoded() -> None:
    response = map_result({"statusCode": 200, "isBase64Encoded": True, "body": base64.b64encode(b"\x00\x01").decode()})
    assert response.body == b"\x00\x01"


@pytest.mark.parametrize(
    ("result", "body"),
    [
        ({"message": "hi"}, b'{"message": "hi"}'),
        ([1, 2], b"[1, 2]"),
        ("Hello from Lambda!", b"Hello from Lambda!"),
        (None, b"null"),
    ],
)
def test_result_without_status_code_is_200_json(result: object, body: bytes) -> None:
    response = map_result(result)
    assert (response.status, response.header("content-type"), response.body) == (200, "application/json", body)


@pytest.mark.parametrize(
    "result",
    [
        {"statusCode": "abc"},
        {"statusCode": 42},
        {"statusCode": 200, "body": {"not": "a string"}},
        {"statusCode": 200, "isBase64Encoded": True, "body": "***"},
        {"statusCode": 200, "headers": {"x": ["list"]}},
    ],
)
def test_invalid_proxy_results_are_rejected(result: dict) -> None:
    with pytest.raises(InvalidProxyResult):
        map_result(result)


def test_gateway_errors_are_json() -> None:
    response = gateway_error(404, "Not Found")
    assert response.header("content-type") == "application/json"
    assert json.loads(response.body) == {"message": "Not Found"}


@pytest.mark.parametrize(
    ("raw_path", "route_key", "parameters"),
    [
        # An encoded "/" stays inside its segment and is decoded once, into the value
        ("/locations/a%2Fb", "GET /locations/{city}", {"city": "a/b"}),
        # Decoded exactly once: "%2541" is the text "%41", not "A"
        ("/locations/%2541", "GET /locations/{city}", {"city": "%41"}),
        # An encoded newline is part of the value, not the end of the path
        ("/locations/a%0Ab", "GET /locations/{city}", {"city": "a\nb"}),
    ],
)
def test_routes_match_the_raw_path(raw_path: str, route_key: str, parameters: dict) -> None:
    matched = match_route(ROUTES, "GET", raw_path)
    assert matched is not None
    assert (matched[0].route_key, matched[1]) == (route_key, parameters)


@pytest.mark.parametrize("raw_path", ["/locations/x%0A/predictions/extra", "/locations\n", "/nowhere%0A"])
def test_paths_with_control_characters_match_no_route(raw_path: str) -> None:
    assert match_route(ROUTES, "GET", raw_path) is None


@pytest.mark.parametrize(
    "headers",
    [{"x-evil": "a\r\nset-cookie: x=1"}, {"bad name": "v"}, {"x-text": "snowman ☃"}],
)
def test_headers_http_cannot_carry_are_an_invalid_result(headers: dict) -> None:
    with pytest.raises(InvalidProxyResult):
        map_result({"statusCode": 200, "headers": headers})


CORS = CorsConfiguration(
    allow_origins=("https://app.example", "http://*"),
    allow_methods=("GET", "POST"),
    allow_headers=("content-type",),
    expose_headers=("apigw-requestid",),
    max_age=60,
    allow_credentials=True,
)


def test_preflight_from_an_allowed_origin_gets_every_configured_header() -> None:
    response = preflight_response(CORS, "https://app.example")
    assert response.status == 204
    assert dict(response.headers) == {
        "access-control-allow-origin": "https://app.example",  # credentials forbid "*"
        "access-control-allow-credentials": "true",
        "access-control-allow-methods": "GET,POST",
        "access-control-allow-headers": "content-type",
        "access-control-max-age": "60",
    }


@pytest.mark.parametrize(("origin", "allowed"), [("http://any.example", True), ("https://evil.example", False)])
def test_origins_match_exactly_or_by_scheme_wildcard(origin: str, allowed: bool) -> None:
    assert bool(preflight_response(CORS, origin).headers) is allowed
    assert bool(cors_headers(CORS, origin)) is allowed


def test_the_functions_cors_headers_are_replaced_by_the_configured_ones() -> None:
    response = HttpResponse(200, [("access-control-allow-origin", "*"), ("content-type", "text/plain")], b"x")
    replaced = with_cors(response, CORS, "https://app.example")
    assert dict(replaced.headers) == {
        "content-type": "text/plain",
        "access-control-allow-origin": "https://app.example",
        "access-control-allow-credentials": "true",
        "access-control-expose-headers": "apigw-requestid",
    }
