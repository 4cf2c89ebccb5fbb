"""API Gateway HTTP API stand-in: HTTP request → payload-2.0 event → a Lambda sandbox → HTTP response.

Routes come from the function's ``HttpApi`` events in ``template.yaml``, CORS from its HttpApi's
``CorsConfiguration``; each invocation runs in a sandbox process of a :class:`~local.sandboxes.SandboxPool`
(several, like Lambda's concurrent execution environments). Event construction and result mapping
follow API Gateway's payload format 2.0: lower-case headers with duplicates comma-joined, cookies
split out, query parameters comma-joined, bodies base64-encoded unless textual, and a result without
``statusCode`` treated as a 200 JSON body.

Whatever API Gateway itself answers is JSON ``{"message": ...}``, as on AWS: no route for the method
and path (any method, TRACE included, any path, ``%0A`` included) is 404 ``Not Found``; a failed or
timed-out invocation or an unusable result is 500 ``Internal Server Error``; a body over the 10 MB
quota is 413; a request the HTTP parser rejects (an unknown or lower-case method, a request line of
64 KB or more, control characters in a header) is 400 ``Bad Request`` (:meth:`HttpApi.unparsable_request`).
With CORS configured, preflights (``OPTIONS`` with ``Origin`` and
``Access-Control-Request-Method``) are answered 204 here and never reach the function, and the
configured CORS headers replace any the function returns.

A request body must arrive within ``body_timeout`` seconds (default :data:`BODY_TIMEOUT_SECONDS`),
or the request is answered 408 and the connection closed: a client that stops half-way through its
body does not hold a connection and a sandbox's worth of waiting indefinitely.

``python -m local.http_api --function RouterFunction --ready-file F`` serves one function.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import json
import logging
import os
import re
import secrets
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qsl, unquote

from local.sandboxes import InvocationFailed, InvocationTimedOut
from local.template import CorsConfiguration, FunctionSpec, HttpRoute

log = logging.getLogger("local.http_api")

# API Gateway's request payload quota for HTTP APIs.
MAX_REQUEST_BYTES = 10 * 1024 * 1024
# API Gateway documents no bound on reading a request body, only a 30 s integration timeout; locally a
# body must be complete within 10 s (10 MB over loopback takes milliseconds), well inside those 30 s.
BODY_TIMEOUT_SECONDS = 10.0
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


def _request_id() -> str:
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
    request_id = request_id or _request_id()
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


# --- the ASGI app ------------------------------------------------------------------------------


class Invoker(Protocol):
    """Runs one invocation of the function (a :class:`~local.sandboxes.SandboxPool`)."""

    async def start(self) -> None: ...
    async def invoke(self, event: Mapping[str, Any]) -> Any: ...
    async def close(self) -> None: ...


class BodyTimedOut(Exception):
    pass


class ClientGone(Exception):
    pass


Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass
class HttpApi:
    """One HTTP API in front of one function, as a raw ASGI app (no framework on the hot path)."""

    function: FunctionSpec
    invoker: Invoker
    identity: ApiIdentity
    cors: CorsConfiguration | None = None
    body_timeout: float = BODY_TIMEOUT_SECONDS
    routes: list[CompiledRoute] = field(init=False)

    def __post_init__(self) -> None:
        self.routes = compile_routes(self.function.http_routes)
        if not self.routes:
            raise ValueError(f"{self.function.logical_id} has no HttpApi events in the template")

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        request_id = _request_id()
        try:
            response = await self.respond(scope, receive, request_id)
        except ClientGone:
            return
        headers = [
            (name.encode("latin-1"), value.encode("latin-1"))
            for name, value in (*response.headers, ("apigw-requestid", request_id))
        ]
        headers.append((b"content-length", str(len(response.body)).encode()))
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": response.body})

    async def respond(self, scope: Mapping[str, Any], receive: Receive, request_id: str) -> HttpResponse:
        method: str = scope["method"]
        raw_path = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
        headers = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in scope["headers"]]
        origin = next((value for name, value in headers if name == "origin"), None)
        preflight = method == "OPTIONS" and any(name == "access-control-request-method" for name, _ in headers)
        if self.cors is not None and origin is not None and preflight:
            return preflight_response(self.cors, origin)
        matched = match_route(self.routes, method, raw_path)
        if matched is None:
            return gateway_error(404, "Not Found")
        try:
            body = await self._read_body(receive, headers)
        except BodyTimedOut:
            log.warning("request %s: body not received within %ss", request_id, self.body_timeout)
            response = gateway_error(408, "Request Timeout")
            return HttpResponse(response.status, [*response.headers, ("connection", "close")], response.body)
        if body is None:
            return gateway_error(413, "Request Entity Too Large")
        client = scope.get("client")
        server = scope.get("server")
        raw = RawRequest(
            method=method,
            path=scope["path"],
            raw_path=raw_path,
            raw_query=scope.get("query_string", b"").decode("latin-1"),
            headers=headers,
            body=body,
            source_ip=client[0] if client else "127.0.0.1",
            protocol=f"HTTP/{scope.get('http_version', '1.1')}",
            scheme=scope.get("scheme", "http"),
            server_port=server[1] if server else 80,
        )
        event = build_event(raw, matched[0], matched[1], self.identity, request_id=request_id)
        name = self.function.function_name
        try:
            result = await self.invoker.invoke(event)
            response = map_result(result)
        except InvocationTimedOut as error:
            log.error("%s timed out (request %s): %s", name, request_id, error)
            return gateway_error(500, "Internal Server Error")
        except InvocationFailed as error:
            log.error("%s failed (request %s): %s", name, request_id, error)
            return gateway_error(500, "Internal Server Error")
        except InvalidProxyResult as error:
            log.error("%s returned an invalid response (request %s): %s", name, request_id, error)
            return gateway_error(500, "Internal Server Error")
        return response if self.cors is None else with_cors(response, self.cors, origin)

    def unparsable_request(self, received: bytes, reason: str) -> HttpResponse:
        """The answer to a request the HTTP parser rejects (an unknown or lower-case method, a request line of
        64 KB or more, a control character in a header): API Gateway's JSON ``400 {"message":"Bad Request"}``,
        the function not invoked; the server closes the connection (``endpoint.http.AnsweringParseErrors``)."""
        log.warning("unparsable request answered 400 without invoking %s: %s", self.function.function_name, reason)
        response = gateway_error(400, "Bad Request")
        return HttpResponse(response.status, [*response.headers, ("apigw-requestid", _request_id())], response.body)

    async def _read_body(self, receive: Receive, headers: Sequence[tuple[str, str]]) -> bytes | None:
        """The request body, or None when it exceeds API Gateway's payload limit (never buffered past it)."""
        declared = next((value for name, value in headers if name == "content-length"), "")
        if declared.isdigit() and int(declared) > MAX_REQUEST_BYTES:
            return None
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.body_timeout):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        raise ClientGone
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > MAX_REQUEST_BYTES:
                        return None
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            raise BodyTimedOut from None
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.invoker.start()
                except Exception as error:
                    log.exception("the function's first sandbox failed to start")
                    await send({"type": "lifespan.startup.failed", "message": str(error)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.invoker.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


def main(argv: list[str] | None = None) -> int:
    from endpoint.http import SocketServer, server_config
    from endpoint.sockets import listening_socket
    from local import ready
    from local.lambda_runtime import add_function_arguments, with_environment
    from local.process import LOCAL_HOST
    from local.sandboxes import SandboxPool, SandboxSpec, default_pool_size
    from local.template import LocalResources, Template

    parser = argparse.ArgumentParser(description="local API Gateway HTTP API for one function")
    add_function_arguments(parser)
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--ready-file", type=Path, default=None)
    parser.add_argument(
        "--max-concurrency",
        type=int,
        default=None,
        help="sandboxes (execution environments); default: two per core, capped by ReservedConcurrentExecutions",
    )
    parser.add_argument("--body-timeout", type=float, default=BODY_TIMEOUT_SECONDS, help="seconds to receive a body")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    resources = LocalResources(**json.loads(args.resources))
    template = Template.load(args.template)
    function = with_environment(template.function(args.function, resources), json.loads(args.environment))
    api_ids = {route.api_id for route in function.http_routes}
    cors = template.http_api_cors(api_ids.pop(), resources) if len(api_ids) == 1 else None
    size = args.max_concurrency or default_pool_size(function)
    pool = SandboxPool(SandboxSpec(function, resources.region, resources.account_id), size)
    app = HttpApi(function, pool, ApiIdentity(resources.account_id), cors, args.body_timeout)
    sock = listening_socket(LOCAL_HOST, args.port)
    port = sock.getsockname()[1]

    def publish() -> None:
        facts = ready.HttpApiReady(port=port, url=f"http://127.0.0.1:{port}", pid=os.getpid(), sandboxes=size)
        ready.write(args.ready_file, facts)

    # The endpoint's server settings (httptools, uvloop, no proxy headers: API Gateway sets sourceIp from the
    # connection), and app.unparsable_request for what the parser rejects; no server header, as API Gateway.
    config = server_config(app, server_header=False)
    server = SocketServer(config, sock, on_started=publish if args.ready_file else None)
    if args.ready_file:
        server.stop_with_parent()
    else:
        print(f"HTTP API for {function.logical_id} on http://127.0.0.1:{port} ({size} sandboxes)", file=sys.stderr)
    return 0 if server.serve_forever() else 1


if __name__ == "__main__":
    sys.exit(main())
