"""``POST /endpoints/{EndpointName}/invocations``: InvokeEndpoint's hot path, as a plain ASGI app.

Written against ASGI rather than Starlette's Request/Response because this is the only code that
runs on every request: headers are read in one pass over the raw list, the body is read with a
deadline, a loaded model is leased without awaiting anything, and the response goes out as two ASGI
messages. Failures are raised, never answered here: ``endpoint.handlers`` maps every exception to
its wire error in one place.

Predictions run inline on the event loop when the model's recent predictions were cheap (below
``inline_predict_seconds`` for a body of this size): a microsecond predict costs less than the hop
to a thread and back. Slower ones run in the predict pool, so the loop keeps serving. The estimate
is per model, from measured times, so the endpoint need not know what a model is.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from concurrent.futures import Executor
from typing import Any

from endpoint import protocol
from endpoint.bodies import receive_body
from endpoint.config import PRODUCTION_VARIANT, EndpointConfig
from endpoint.errors import RequestTimeout, ServiceUnavailable
from endpoint.metrics import EndpointMetrics
from endpoint.program import InferenceProgram, Prediction, RequestContext
from endpoint.store import ModelStore

Scope = dict[str, Any]
Receive = Any
Send = Any

_TARGET_MODEL = protocol.TARGET_MODEL_HEADER.lower().encode()
_CUSTOM_ATTRIBUTES = protocol.CUSTOM_ATTRIBUTES_HEADER.lower().encode()
_INFERENCE_ID = protocol.INFERENCE_ID_HEADER.lower().encode()
_VARIANT = (protocol.INVOKED_VARIANT_HEADER.encode(), PRODUCTION_VARIANT.encode())
_REQUEST_ID = protocol.REQUEST_ID_HEADER.encode()
_CUSTOM_ATTRIBUTES_OUT = protocol.CUSTOM_ATTRIBUTES_HEADER.encode()
# The cost model: seconds ~ rate x (body bytes + this), so an empty body still has a cost.
_BASE_BYTES = 256
# Weight of the newest measurement in a model's running cost estimate.
_SMOOTHING = 0.2


class RequestIds:
    """Unique, UUID-shaped request ids without a random draw per request (uuid4 reads os.urandom)."""

    def __init__(self) -> None:
        base = uuid.uuid4().hex
        self._prefix = f"{base[:8]}-{base[8:12]}-{base[12:16]}-{base[16:20]}-"
        self._counter = itertools.count(int(base[20:], 16))

    def __call__(self) -> str:
        return f"{self._prefix}{next(self._counter) & 0xFFFFFFFFFFFF:012x}"


class InvocationsApp:
    """What InvokeEndpoint's two ASGI apps share (managed serving: :class:`InvokeEndpoint`; dense serving:
    ``endpoint.sagemaker_side.InvokeContainer``): the request ids, and the start of every request."""

    def __init__(self, config: EndpointConfig, metrics: EndpointMetrics) -> None:
        self.config = config
        self.metrics = metrics
        self.request_ids = RequestIds()
        self.shutting_down = False

    def begin(self, scope: Scope) -> tuple[str, dict[str, Any]]:
        """A new request's id and state, once its endpoint name is checked."""
        request_id = self.request_ids()
        # Starlette's Request.state is scope["state"]: the exception handlers read these back.
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        protocol.validate_endpoint_name(scope["path_params"]["endpoint_name"], self.config)
        return request_id, state


class InvokeEndpoint(InvocationsApp):
    """The ASGI app of the invocations route (Starlette treats a non-function endpoint as ASGI)."""

    def __init__(
        self,
        config: EndpointConfig,
        program: InferenceProgram,
        store: ModelStore[Any],
        predict_pool: Executor,
        metrics: EndpointMetrics,
    ) -> None:
        super().__init__(config, metrics)
        self.program = program
        self.store = store
        self.predict_pool = predict_pool

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        config = self.config
        request_id, state = self.begin(scope)
        target = content_type = accept = custom_attributes = inference_id = declared = None
        for name, value in scope["headers"]:
            if name == _TARGET_MODEL:
                target = value.decode("latin-1")
            elif name == b"content-type":
                content_type = value.decode("latin-1")
            elif name == b"accept":
                accept = value.decode("latin-1")
            elif name == b"content-length":
                declared = value
            elif name == _CUSTOM_ATTRIBUTES:
                custom_attributes = value.decode("latin-1")
            elif name == _INFERENCE_ID:
                inference_id = value.decode("latin-1")
        target = validate_headers(state, target, custom_attributes, inference_id)
        body = await read_body(receive, declared, config.max_body_bytes, config.body_read_timeout_seconds)
        if self.shutting_down:
            raise ServiceUnavailable("The endpoint is shutting down.")
        if not accept or accept == "*/*":
            accept = config.default_accept
        context = RequestContext(
            target_model=target,
            content_type=content_type,
            accept=accept,
            custom_attributes=custom_attributes,
            inference_id=inference_id,
        )
        lease = self.store.try_acquire(target) or await self.store.acquire(target)
        try:
            weight = len(body) + _BASE_BYTES
            cost = lease.cost
            if cost is not None and cost * weight < config.inline_predict_seconds:
                before = time.perf_counter()
                prediction = self.program.invoke(lease.value, body, context)
                seconds = time.perf_counter() - before
            else:
                prediction, seconds = await asyncio.get_running_loop().run_in_executor(
                    self.predict_pool, _timed_invoke, self.program, lease.value, body, context
                )
            rate = seconds / weight
            lease.cost = rate if cost is None else cost + _SMOOTHING * (rate - cost)
        finally:
            lease.release()
        attributes = context.response_custom_attributes
        await send_answer(
            send,
            prediction.content_type.encode("latin-1"),
            prediction.body,
            request_id,
            attributes.encode("latin-1") if attributes else None,
        )
        self.metrics.invocation("OK", time.perf_counter() - started)


def validate_headers(
    state: dict[str, Any], target: str | None, custom_attributes: str | None, inference_id: str | None
) -> str:
    """The request's TargetModel, validated and noted in its state (the exception handlers read it back),
    after checking the optional CustomAttributes and InferenceId."""
    target = protocol.validate_target_model(target)
    state["target_model"] = target
    if custom_attributes is not None:
        protocol.validate_custom_attributes(custom_attributes)
    if inference_id is not None:
        protocol.validate_inference_id(inference_id)
    return target


async def send_answer(
    send: Send, content_type: bytes, body: bytes, request_id: str, custom_attributes: bytes | None
) -> None:
    """InvokeEndpoint's 200: the container's body, content type and custom attributes (only what the
    container set: SageMaker forwards the container's header and echoes nothing), the variant and request id."""
    headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode()),
        _VARIANT,
        (_REQUEST_ID, request_id.encode()),
    ]
    if custom_attributes:
        headers.append((_CUSTOM_ATTRIBUTES_OUT, custom_attributes))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _timed_invoke(
    program: InferenceProgram, model: Any, body: bytes, context: RequestContext
) -> tuple[Prediction, float]:
    """Runs in the predict pool; the time is measured there, so the hop is not counted as the model's."""
    before = time.perf_counter()
    prediction = program.invoke(model, body, context)
    return prediction, time.perf_counter() - before


async def read_body(receive: Receive, declared: bytes | None, limit: int, timeout: float) -> bytes:
    """At most ``limit`` bytes, all within ``timeout`` seconds; a larger declared body is refused unread."""
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise protocol.invalid_content_length() from None
        if size > limit:
            raise protocol.body_too_large(size, limit)
    try:
        async with asyncio.timeout(timeout):
            return await receive_body(receive, limit, protocol.body_too_large)
    except TimeoutError:
        raise RequestTimeout(
            f"The request body was not received within {timeout:g} s; the connection is closed."
        ) from None
