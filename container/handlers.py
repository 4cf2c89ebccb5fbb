"""The one map from exceptions to the container's answers, as Starlette exception handlers.

Routes, the registry and the models only raise; every error leaves here as JSON
(``container.errors``: ``{"code", "type", "message"}``) with the contract's status. A failure of the
container itself is logged with its traceback and answered 500 without internals.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.exceptions import HTTPException
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from container.errors import (
    ContainerError,
    InvocationFailed,
    MethodNotAllowed,
    RequestTimeout,
    ResourceNotFound,
)
from endpoint.errors import ClientGone

log = logging.getLogger("container")

Handler = Callable[[Request, Any], Awaitable[Response]]
Responder = Callable[[Scope, Receive, Send, Exception], Awaitable[None]]
# Where error_responder parks the exception for the stack to raise again.
_PENDING = "container.pending_exception"


def answer(error: ContainerError, headers: Mapping[str, str] | None = None) -> Response:
    return JSONResponse(error.body(), status_code=error.status, headers=dict(headers or {}))


async def container_error(request: Request, error: ContainerError) -> Response:
    # A hook's exception was logged with its traceback where it was raised (endpoint.program).
    if error.status >= 500 and not isinstance(error, InvocationFailed):
        first_line = error.message.splitlines()[0] if error.message else ""
        log.warning("%s %s: %d %s", request.method, request.url.path, error.status, first_line)
    return answer(error)


async def request_timeout(request: Request, error: RequestTimeout) -> Response:
    # The rest of the body may still come: close the connection rather than parse it as a request.
    return answer(error, {"connection": "close"})


async def client_gone(request: Request, error: ClientGone) -> Response:
    # Nobody reads this answer, and it is not the container's failure.
    log.info("client disconnected before sending the whole body")
    return Response(status_code=400)


async def http_error(request: Request, error: HTTPException) -> Response:
    if error.status_code == 405:
        allowed = (error.headers or {}).get("Allow", "")
        return answer(
            MethodNotAllowed(f"{request.method} is not allowed on {request.url.path}; use {allowed}"),
            {"allow": allowed},
        )
    return answer(ResourceNotFound(f"No resource {request.url.path!r} in this container."))


async def unexpected(request: Request, error: Exception) -> Response:
    log.error("%s %s failed unexpectedly", request.method, request.url.path, exc_info=error)
    return answer(ContainerError("An internal failure occurred; see the container's log."))


def exception_handlers() -> dict[Any, Handler]:
    """For ``Starlette(exception_handlers=...)``: the most specific class of an exception wins."""
    return {
        ContainerError: container_error,
        RequestTimeout: request_timeout,
        ClientGone: client_gone,
        HTTPException: http_error,
        Exception: unexpected,
    }


def error_responder() -> Responder:
    """Answer an exception from a route served outside Starlette's router exactly as Starlette would.

    ``container.app`` sends the invoke route straight to its ASGI app; when that raises, the exception
    goes through Starlette's own two error layers, built as ``Starlette.build_middleware_stack`` builds
    them from :func:`exception_handlers`: ``ExceptionMiddleware`` with the specific handlers, then
    ``ServerErrorMiddleware`` with the ``Exception`` one (which answers 500 and raises again, so uvicorn
    logs it and closes the connection). Same answers, same logs, one place that maps exceptions.
    """
    handlers = exception_handlers()
    generic = handlers.pop(Exception)
    stack = ServerErrorMiddleware(ExceptionMiddleware(_raise_pending, handlers=handlers), handler=generic)

    async def respond(scope: Scope, receive: Receive, send: Send, error: Exception) -> None:
        scope[_PENDING] = error
        await stack(scope, receive, send)

    return respond


async def _raise_pending(scope: Scope, receive: Receive, send: Send) -> None:
    raise scope.pop(_PENDING)
