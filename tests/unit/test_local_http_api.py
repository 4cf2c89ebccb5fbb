"""local.http_api pure parts: route matching, payload-2.0 events, proxy-result mapping."""

from __future__ import annotations

import base64
import json

import pytest

from local.http_api import (
    ApiIdentity,
    InvalidProxyResult,
    RawRequest,
    build_event,
    compile_routes,
    encode_body,
    gateway_error,
    map_result,
    match_route,
)
from local.template import HttpRoute

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
