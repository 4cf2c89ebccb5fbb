"""API Gateway HTTP API stand-in: HTTP request → payload-2.0 event → a Lambda sandbox → HTTP response.

Routes come from the function's ``HttpApi`` events in ``template.yaml``, CORS from its HttpApi's
``CorsConfiguration``; each invocation runs in a sandbox process of a :class:`~local.sandboxes.SandboxPool`
(several, like Lambda's concurrent execution environments). The payload-2.0 event, the result mapping,
route matching and CORS are :mod:`local.http_api_events`' (pure); this module is the server around them.

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
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from local.http_api_events import (
    MAX_REQUEST_BYTES,
    ApiIdentity,
    CompiledRoute,
    HttpResponse,
    InvalidProxyResult,
    RawRequest,
    build_event,
    compile_routes,
    gateway_error,
    map_result,
    match_route,
    new_request_id,
    preflight_response,
    with_cors,
)
from local.sandboxes import InvocationFailed, InvocationTimedOut
from local.template import CorsConfiguration, FunctionSpec

log = logging.getLogger("local.http_api")

# API Gateway documents no bound on reading a request body, only a 30 s integration timeout; locally a
# body must be complete within 10 s (10 MB over loopback takes milliseconds), well inside those 30 s.
BODY_TIMEOUT_SECONDS = 10.0

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
        request_id = new_request_id()
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
        return HttpResponse(response.status, [*response.headers, ("apigw-requestid", new_request_id())], response.body)

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
