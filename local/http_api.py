"""API Gateway HTTP API stand-in: HTTP request → payload-2.0 event → handler → HTTP response.

Routes come from the function's ``HttpApi`` events in ``template.yaml``; the handler runs in this
process (in a worker thread, so the event loop never blocks) with the function's environment and a
fresh :class:`~local.lambda_runtime.LambdaContext` per request. Event construction and result
mapping follow API Gateway's payload format 2.0: lower-case headers with duplicates comma-joined,
cookies split out, query parameters comma-joined, bodies base64-encoded unless textual, and a
result without ``statusCode`` treated as a 200 JSON body. Gateway-level failures answer as API
Gateway does: ``{"message": "Not Found"}`` (404) and ``{"message": "Internal Server Error"}`` (500).

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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from local.lambda_runtime import Handler, LambdaContext
from local.template import FunctionSpec, HttpRoute

log = logging.getLogger("local.http_api")

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
        return CompiledRoute(route, re.compile(r"^/.*$"), (), (9,))
    parts: list[str] = []
    names: list[str] = []
    rank: list[int] = []
    for segment in route.path.strip("/").split("/") if route.path != "/" else []:
        variable = re.fullmatch(r"\{([A-Za-z0-9._-]+)(\+?)\}", segment)
        if variable and variable.group(2):
            names.append(variable.group(1))
            parts.append(f"(?P<p{len(names) - 1}>.+)")
            rank.append(2)
        elif variable:
            names.append(variable.group(1))
            parts.append(f"(?P<p{len(names) - 1}>[^/]+)")
            rank.append(1)
        else:
            parts.append(re.escape(segment))
            rank.append(0)
    pattern = re.compile("^/" + "/".join(parts) + "/?$") if parts else re.compile(r"^/$")
    # An explicit method beats ANY on the same path.
    return CompiledRoute(route, pattern, tuple(names), (*rank, 1 if route.method == "ANY" else 0))


def compile_routes(routes: Sequence[HttpRoute]) -> list[CompiledRoute]:
    return sorted((compile_route(route) for route in routes), key=lambda compiled: compiled.specificity)


def match_route(routes: Sequence[CompiledRoute], method: str, path: str) -> tuple[HttpRoute, dict[str, str]] | None:
    for compiled in routes:
        if compiled.route.method not in {"ANY", method.upper()}:
            continue
        found = compiled.pattern.match(path)
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
    """An error API Gateway itself produces (not the function): always a JSON ``message``."""
    return HttpResponse(status, [("content-type", "application/json")], json.dumps({"message": message}).encode())


def _header_value(name: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise InvalidProxyResult(f"header {name!r} must be a string, got {type(value).__name__}")


async def _read_limited(request: Request) -> bytes | None:
    """The request body, or None when it exceeds API Gateway's payload limit (never buffered past it)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_REQUEST_BYTES:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_REQUEST_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


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
    for name, value in (result.get("headers") or {}).items():
        headers.append((str(name).lower(), _header_value(name, value)))
    for name, values in (result.get("multiValueHeaders") or {}).items():
        if not isinstance(values, list):
            raise InvalidProxyResult(f"multiValueHeaders[{name!r}] must be a list")
        headers.extend((str(name).lower(), _header_value(name, value)) for value in values)
    for cookie in result.get("cookies") or []:
        headers.append(("set-cookie", str(cookie)))
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
        body = raw_body.encode()
    return HttpResponse(status, headers, body)


# --- the ASGI app ------------------------------------------------------------------------------


def create_app(
    function: FunctionSpec,
    handler: Handler,
    identity: ApiIdentity,
    region: str,
    max_concurrency: int = 1,
    context_factory: Callable[[], LambdaContext] | None = None,
) -> Starlette:
    """One HTTP API in front of one function.

    ``max_concurrency`` is the number of concurrent invocations; the default of 1 is one Lambda
    sandbox, which never runs two invocations at once (handlers may rely on that).
    """
    routes = compile_routes(function.http_routes)
    if not routes:
        raise ValueError(f"{function.logical_id} has no HttpApi events in the template")
    sandboxes = asyncio.Semaphore(max_concurrency)
    make_context = context_factory or (lambda: LambdaContext.for_function(function, region, identity.account_id))

    async def invoke(request: Request) -> Response:
        request_id = _request_id()
        response = await _invoke(request, request_id)
        headers = [*response.headers, ("apigw-requestid", request_id)]
        reply = Response(content=response.body, status_code=response.status)
        reply.raw_headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers] + [
            (b"content-length", str(len(response.body)).encode())
        ]
        return reply

    def _release_sandbox(finished: asyncio.Future[Any]) -> None:
        sandboxes.release()
        if not finished.cancelled():
            finished.exception()  # a late failure after a timeout was already answered with a 500

    async def _invoke(request: Request, request_id: str) -> HttpResponse:
        matched = match_route(routes, request.method, request.url.path)
        if matched is None:
            return gateway_error(404, "Not Found")
        body = await _read_limited(request)
        if body is None:
            return gateway_error(413, "Request Entity Too Large")
        client = request.client
        raw = RawRequest(
            method=request.method,
            path=request.url.path,
            raw_path=request.scope.get("raw_path", request.url.path.encode()).decode("latin-1"),
            raw_query=request.scope.get("query_string", b"").decode("latin-1"),
            headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.scope["headers"]],
            body=body,
            source_ip=client.host if client else "127.0.0.1",
            protocol=f"HTTP/{request.scope.get('http_version', '1.1')}",
            scheme=request.url.scheme,
            server_port=request.url.port or 80,
        )
        event = build_event(raw, matched[0], matched[1], identity, request_id=request_id)
        await sandboxes.acquire()
        invocation = asyncio.ensure_future(asyncio.to_thread(handler, event, make_context()))
        # A thread cannot be killed: after a timeout the sandbox stays busy until the handler really
        # returns, so no second invocation ever shares the process-wide Powertools state with it.
        invocation.add_done_callback(_release_sandbox)
        try:
            result = await asyncio.wait_for(asyncio.shield(invocation), timeout=function.timeout)
        except TimeoutError:
            log.error("%s timed out after %ss (request %s)", function.function_name, function.timeout, request_id)
            return gateway_error(500, "Internal Server Error")
        except Exception:
            log.exception("%s raised (request %s)", function.function_name, request_id)
            return gateway_error(500, "Internal Server Error")
        try:
            return map_result(result)
        except InvalidProxyResult as error:
            log.error("%s returned an invalid response (request %s): %s", function.function_name, request_id, error)
            return gateway_error(500, "Internal Server Error")

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"]
    return Starlette(routes=[Route("/{path:path}", invoke, methods=methods)])


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    from endpoint.sockets import listening_socket
    from local.lambda_runtime import add_function_arguments, load_function
    from local.process import LOCAL_HOST, exit_with_parent, write_ready_file

    parser = argparse.ArgumentParser(description="local API Gateway HTTP API for one function")
    add_function_arguments(parser)
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--ready-file", type=Path, default=None)
    parser.add_argument("--max-concurrency", type=int, default=1)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    resources, function, handler = load_function(args)
    app = create_app(function, handler, ApiIdentity(resources.account_id), resources.region, args.max_concurrency)
    sock = listening_socket(LOCAL_HOST, args.port)
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    if args.ready_file:
        import threading

        stopped = threading.Event()
        exit_with_parent(stopped)

        def publish_when_started() -> None:
            while not server.started and not stopped.is_set():
                time.sleep(0.01)
            if stopped.is_set():
                server.should_exit = True
                return
            write_ready_file(args.ready_file, {"port": port, "url": f"http://127.0.0.1:{port}", "pid": os.getpid()})
            stopped.wait()
            server.should_exit = True

        threading.Thread(target=publish_when_started, daemon=True).start()
    else:
        print(f"HTTP API for {function.logical_id} on http://127.0.0.1:{port}", file=sys.stderr)
    server.run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
