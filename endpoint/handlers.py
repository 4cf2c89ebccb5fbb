"""The one map from exceptions to InvokeEndpoint's wire errors, as Starlette exception handlers.

Routes and the store raise; nothing else builds an error response. Every error is JSON with
``x-amzn-ErrorType`` (what botocore reads for the code) and ``x-amzn-RequestId``, and is counted in
``endpoint_invocations_total`` by its code. A request the HTTP parser rejects never reaches the app:
:func:`unparsable_request` is its answer, in the same shape (not counted: no request reached a route).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from endpoint import protocol
from endpoint.config import EndpointConfig
from endpoint.errors import (
    ArtifactInvalid,
    ArtifactMissing,
    ClientGone,
    ContainerError,
    ContainerUnavailable,
    InternalFailure,
    InvokeError,
    RequestTimeout,
    ServiceUnavailable,
    StorageUnavailable,
    UnknownOperation,
)
from endpoint.http import RawResponse
from endpoint.metrics import EndpointMetrics

log = logging.getLogger("endpoint")

Handler = Callable[[Request, Any], Awaitable[Response]]


def exception_handlers(config: EndpointConfig, metrics: EndpointMetrics) -> Mapping[Any, Handler]:
    """Handlers for ``Starlette(exception_handlers=...)``; the most specific class of an exception wins."""

    def answer(request: Request, error: InvokeError, extra_headers: Mapping[str, str] | None = None) -> Response:
        request_id = request.scope.get("state", {}).get("request_id") or "-"
        metrics.invocation(error.code, None)
        headers = {protocol.ERROR_TYPE_HEADER: error.code, protocol.REQUEST_ID_HEADER: request_id}
        headers.update(extra_headers or {})
        return JSONResponse(error.body(), status_code=error.status, headers=headers)

    async def invoke_error(request: Request, error: InvokeError) -> Response:
        return answer(request, error)

    async def request_timeout(request: Request, error: RequestTimeout) -> Response:
        # The rest of the body may still come: close the connection rather than parse it as a request.
        return answer(request, error, {"connection": "close"})

    async def artifact_missing(request: Request, error: ArtifactMissing) -> Response:
        return answer(request, protocol.missing_artifact(error))

    async def artifact_invalid(request: Request, error: ArtifactInvalid) -> Response:
        return answer(request, protocol.invalid_artifact(error))

    async def storage_unavailable(request: Request, error: StorageUnavailable) -> Response:
        log.warning("S3 unavailable: %s", error)
        return answer(request, ServiceUnavailable("Model data could not be downloaded right now; try again."))

    async def container_unavailable(request: Request, error: ContainerUnavailable) -> Response:
        log.warning("model container unavailable: %s", error)
        return answer(request, ServiceUnavailable("The model container is not available right now; try again."))

    async def container_error(request: Request, error: ContainerError) -> Response:
        target = request.scope.get("state", {}).get("target_model")
        first_line = error.message.splitlines()[0] if error.message else ""
        log.warning("model %s failed (%d): %s", target, error.status, first_line)
        return answer(request, protocol.model_error(error.status, error.message, config))

    async def client_gone(request: Request, error: ClientGone) -> Response:
        # Nobody reads this answer, and it is not our failure.
        log.info("client disconnected before sending the whole body")
        metrics.invocation("ClientDisconnect", None)
        return Response(status_code=400)

    async def http_error(request: Request, error: HTTPException) -> Response:
        return answer(request, UnknownOperation(f"No operation {request.method} {request.url.path} on this endpoint."))

    async def unexpected(request: Request, error: Exception) -> Response:
        log.error("InvokeEndpoint failed unexpectedly", exc_info=error)
        return answer(request, InternalFailure("An internal failure occurred."))

    return {
        InvokeError: invoke_error,
        RequestTimeout: request_timeout,
        ArtifactMissing: artifact_missing,
        ArtifactInvalid: artifact_invalid,
        StorageUnavailable: storage_unavailable,
        ContainerError: container_error,
        ContainerUnavailable: container_unavailable,
        ClientGone: client_gone,
        HTTPException: http_error,
        Exception: unexpected,
    }


def unparsable_request(received: bytes, reason: str) -> RawResponse:
    """InvokeEndpoint's ValidationError for a request that is not parsable HTTP (e.g. a TargetModel header
    with a control character); served by ``endpoint.http.AnsweringParseErrors``, which closes the connection."""
    error = protocol.unparsable_request(received, reason)
    headers = [
        ("content-type", "application/json"),
        (protocol.ERROR_TYPE_HEADER, error.code),
        (protocol.REQUEST_ID_HEADER, str(uuid.uuid4())),
    ]
    return RawResponse(error.status, headers, json.dumps(error.body()).encode())
