"""API Gateway HTTP API's event mapping, free of sockets: routes, payload-2.0 events, proxy results, CORS.

What :mod:`local.http_api` (the server) applies to each request, kept pure so that every rule is tested
in process: a route key matched as API Gateway matches it (segment by segment, any method, any path);
the payload-2.0 event (lower-case headers with duplicates comma-joined, cookies split out, query
parameters comma-joined, bodies base64-encoded unless textual); a Lambda proxy result mapped back to
an HTTP response (a result without ``statusCode`` is a 200 JSON body; an unusable one is API
Gateway's 500); API Gateway's own error bodies (``{"message": ...}``); CORS as the HttpApi's
``CorsConfiguration`` applies it.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, unquote

from local.template import CorsConfiguration, HttpRoute

# API Gateway's request payload quota for HTTP APIs.
MAX_REQUEST_BYTES = 10 * 1024 * 1024
_TEXT_TYPES = re.compile(
    r"^(text/.*|application/(json|.*\+json|xml|.*\+xml|javascript|x-www-form-urlencoded|x-ndjson|csv|yaml|x-yaml))$"
)


class InvalidProxyResult(ValueError):
    """The function returned something API Gateway cannot turn into a response (it answers 500)."""


# --- routing -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CompiledRoute:
    route: HttpRoute
    pattern: re.Pattern[str]
    parameters: tuple[str, ...]
    # Lower sorts first: literal segments beat {params}, which beat {greedy+}; $default is last.
    specificity: tuple[int, ...]


def compile_route(route: HttpRoute) -> CompiledRoute:
    if route.path == "$default":
        return CompiledRoute(route, re.compile(r"/.*", re.DOTALL), (), (9,))
    parts: list[str] = []
    names: list[str] = []
    rank: list[int] = []
    for segment in route.path.strip("/").split("/") if route.path != "/" else []:
        variable = re.fullmatch(r"\{([A-Za-z0-9._-]+)(\+?)\}", segment)
        if variable and variable.group(2):
            names.append(variable.group(1))
            parts.append(f"(?P<p{len(names) - 1}>.+)")  # compiled with DOTALL
            rank.append(2)
        elif variable:
            names.append(variable.group(1))
            parts.append(f"(?P<p{len(names) - 1}>[^/]+)")
            rank.append(1)
        else:
            parts.append(re.escape(segment))
            rank.append(0)
    pattern = re.compile("/" + "/".join(parts) + "/?", re.DOTALL) if parts else re.compile("/")
    # An explicit method beats ANY on the same path.
    return CompiledRoute(route, pattern, tuple(names), (*rank, 1 if route.method == "ANY" else 0))


def compile_routes(routes: Sequence[HttpRoute]) -> list[CompiledRoute]:
    return sorted((compile_route(route) for route in routes), key=lambda compiled: compiled.specificity)


def match_route(routes: Sequence[CompiledRoute], method: str, raw_path: str) -> tuple[HttpRoute, dict[str, str]] | None:
    """The route for ``method`` and the path as sent (percent-encoded); parameter values decoded once.

    Matching the raw path keeps an encoded ``/`` (``%2F``) inside its segment, and a decoded path is
    never decoded a second time.
    """
    for compiled in routes:
        if compiled.route.method not in {"ANY", method.upper()}:
            continue
        found = compiled.pattern.fullmatch(raw_path)
        if found:
            values = {name: unquote(found.group(f"p{index}")) for index, name in enumerate(compiled.parameters)}
            return compiled.route, values
    return None


# --- request → payload 2.0 event ---------------------------------------------------------------


@dataclass(frozen=True)
class RawRequest:
    """What the HTTP server saw, before any API Gateway interpretation."""

    method: str
    path: str  # decoded
    raw_path: str  # as sent
    raw_query: str
    headers: Sequence[tuple[str, str]]
    body: bytes = b""
    source_ip: str = "127.0.0.1"
    protocol: str = "HTTP/1.1"
    scheme: str = "http"
    server_port: int = 80


@dataclass(frozen=True)
class ApiIdentity:
    """The facts API Gateway adds about itself to every event's requestContext."""

    account_id: str
    api_id: str = "local"
    stage: str = "$default"
    stage_variables: Mapping[str, str] = field(default_factory=dict)


def is_text(content_type: str | None) -> bool:
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    return bool(_TEXT_TYPES.match(media_type))


def encode_body(body: bytes, content_type: str | None) -> tuple[str | None, bool]:
    """(event body, isBase64Encoded): text stays text; anything else, or non-UTF-8, is base64."""
    if not body:
        return None, False
    if content_type is None or is_text(content_type):
        try:
            return body.decode("utf-8"), False
        except UnicodeDecodeError:
            pass
    return base64.b64encode(body).decode("ascii"), True


def new_request_id() -> str:
    # API Gateway request ids look like "JKJaXmPLvHcESHA=": 10 random bytes, base64.
    return base64.b64encode(secrets.token_bytes(10)).decode("ascii")


def _trace_id(now: float) -> str:
    return f"Root=1-{int(now):08x}-{secrets.token_hex(12)}"


def build_event(
    request: RawRequest,
    route: HttpRoute,
    path_parameters: Mapping[str, str],
    identity: ApiIdentity,
    now: float | None = None,
    request_id: str | None = None,
) -> dict[str, Any]:
    now = time.time() if now is None else now
    request_id = request_id or new_request_id()
    headers: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in request.headers:
        lower = name.lower()
        if lower == "cookie":
            cookies.extend(part.strip() for part in value.split(";") if part.strip())
            continue
        headers[lower] = f"{headers[lower]},{value}" if lower in headers else value
    host = headers.get("host", f"{identity.api_id}.local")
    headers.setdefault("x-forwarded-for", request.source_ip)
    headers.setdefault("x-forwarded-port", str(request.server_port))
    headers.setdefault("x-forwarded-proto", request.scheme)
    headers.setdefault("x-amzn-trace-id", _trace_id(now))
    query: dict[str, str] = {}
    for name, value in parse_qsl(request.raw_query, keep_blank_values=True):
        query[name] = f"{query[name]},{value}" if name in query else value
    body, is_base64 = encode_body(request.body, headers.get("content-type"))
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route.route_key,
        "rawPath": request.raw_path,
        "rawQueryString": request.raw_query,
        "headers": headers,
        "requestContext": {
            "accountId": identity.account_id,
            "apiId": identity.api_id,
            "domainName": host,
            "domainPrefix": host.split(".", 1)[0].split(":", 1)[0],
            "http": {
                "method": request.method.upper(),
                "path": request.path,
                "protocol": request.protocol,
                "sourceIp": request.source_ip,
                "userAgent": headers.get("user-agent", ""),
            },
            "requestId": request_id,
            "routeKey": route.route_key,
            "stage": identity.stage,
            "time": datetime.fromtimestamp(now, UTC).strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": is_base64,
    }
    if cookies:
        event["cookies"] = cookies
    if query:
        event["queryStringParameters"] = query
    if path_parameters:
        event["pathParameters"] = dict(path_parameters)
    if identity.stage_variables:
        event["stageVariables"] = dict(identity.stage_variables)
    if body is not None:
        event["body"] = body
    return event


# --- proxy result → HTTP response --------------------------------------------------------------


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((value for key, value in self.headers if key.lower() == name.lower()), None)


def gateway_error(status: int, message: str) -> HttpResponse:
    """An error API Gateway itself produces (not the function): always a JSON ``message``, byte for byte
    as API Gateway writes it (``{"message":"Not Found"}``)."""
    body = json.dumps({"message": message}, separators=(",", ":")).encode()
    return HttpResponse(status, [("content-type", "application/json")], body)


_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def _header_value(name: str, value: Any) -> str:
    if not _HEADER_NAME.fullmatch(name):
        raise InvalidProxyResult(f"header name {name!r} is not an HTTP token")
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, (str, int, float)):
        text = str(value)
    else:
        raise InvalidProxyResult(f"header {name!r} must be a string, got {type(value).__name__}")
    # A CR/LF would split the response; non-Latin-1 text has no HTTP/1.1 encoding.
    if "\r" in text or "\n" in text or not _is_latin1(text):
        raise InvalidProxyResult(f"header {name!r} has a value HTTP cannot carry")
    return text


def _is_latin1(text: str) -> bool:
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


def _mapping(result: Mapping[str, Any], key: str) -> Mapping[Any, Any]:
    value = result.get(key) or {}
    if not isinstance(value, Mapping):
        raise InvalidProxyResult(f"{key} must be an object")
    return value


def map_result(result: Any) -> HttpResponse:
    """Interpret a handler's return value as API Gateway does for payload format 2.0."""
    if not (isinstance(result, Mapping) and "statusCode" in result):
        # No statusCode: 200 with the value as a JSON body; a string is passed through as the body.
        text = result if isinstance(result, str) else json.dumps(result)
        return HttpResponse(200, [("content-type", "application/json")], text.encode())
    try:
        status = int(result["statusCode"])
    except (TypeError, ValueError) as error:
        raise InvalidProxyResult(f"statusCode must be an integer, got {result['statusCode']!r}") from error
    if not 100 <= status <= 599:
        raise InvalidProxyResult(f"statusCode out of range: {status}")
    headers: list[tuple[str, str]] = []
    for name, value in _mapping(result, "headers").items():
        headers.append((str(name).lower(), _header_value(str(name), value)))
    for name, values in _mapping(result, "multiValueHeaders").items():
        if not isinstance(values, list):
            raise InvalidProxyResult(f"multiValueHeaders[{name!r}] must be a list")
        headers.extend((str(name).lower(), _header_value(str(name), value)) for value in values)
    cookies = result.get("cookies") or []
    if not isinstance(cookies, list):
        raise InvalidProxyResult("cookies must be a list")
    headers.extend(("set-cookie", _header_value("set-cookie", cookie)) for cookie in cookies)
    raw_body = result.get("body")
    body: bytes
    if raw_body is None:
        body = b""
    elif not isinstance(raw_body, str):
        raise InvalidProxyResult(f"body must be a string, got {type(raw_body).__name__}")
    elif result.get("isBase64Encoded"):
        try:
            body = base64.b64decode(raw_body, validate=True)
        except binascii.Error as error:
            raise InvalidProxyResult("isBase64Encoded is true but body is not base64") from error
    else:
        try:
            body = raw_body.encode()
        except UnicodeEncodeError as error:
            raise InvalidProxyResult("body is not valid Unicode text") from error
    return HttpResponse(status, headers, body)


# --- CORS, as API Gateway applies an HttpApi's CorsConfiguration ------------------------------


def _origin_allowed(cors: CorsConfiguration, origin: str) -> bool:
    # "*" allows any origin; "https://*" any origin of that scheme; otherwise an exact match.
    for allowed in cors.allow_origins:
        if allowed == "*" or allowed.lower() == origin.lower():
            return True
        if allowed.endswith("://*") and origin.lower().startswith(allowed[:-1].lower()):
            return True
    return False


def _allow_origin_value(cors: CorsConfiguration, origin: str) -> str:
    return "*" if "*" in cors.allow_origins and not cors.allow_credentials else origin


def cors_headers(cors: CorsConfiguration, origin: str | None) -> list[tuple[str, str]]:
    """Headers API Gateway adds to an integration's response for a CORS request (one with ``Origin``)."""
    if origin is None or not _origin_allowed(cors, origin):
        return []
    headers = [("access-control-allow-origin", _allow_origin_value(cors, origin))]
    if cors.allow_credentials:
        headers.append(("access-control-allow-credentials", "true"))
    if cors.expose_headers:
        headers.append(("access-control-expose-headers", ",".join(cors.expose_headers)))
    return headers


def preflight_response(cors: CorsConfiguration, origin: str) -> HttpResponse:
    """API Gateway's own answer to a preflight: 204, with the configured headers if the origin is allowed."""
    if not _origin_allowed(cors, origin):
        return HttpResponse(204, [], b"")
    headers = [("access-control-allow-origin", _allow_origin_value(cors, origin))]
    if cors.allow_credentials:
        headers.append(("access-control-allow-credentials", "true"))
    if cors.allow_methods:
        headers.append(("access-control-allow-methods", ",".join(cors.allow_methods)))
    if cors.allow_headers:
        headers.append(("access-control-allow-headers", ",".join(cors.allow_headers)))
    if cors.max_age is not None:
        headers.append(("access-control-max-age", str(cors.max_age)))
    return HttpResponse(204, headers, b"")


def with_cors(response: HttpResponse, cors: CorsConfiguration, origin: str | None) -> HttpResponse:
    """API Gateway ignores the integration's CORS headers and sends the configured ones instead."""
    kept = [(name, value) for name, value in response.headers if not name.startswith("access-control-")]
    return HttpResponse(response.status, [*kept, *cors_headers(cors, origin)], response.body)
