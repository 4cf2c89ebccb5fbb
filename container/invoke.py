"""``POST /models/{model_name}/invoke``: the container's hot path, as a plain ASGI app.

What AWS runs for every InvokeEndpoint, so it avoids Starlette's Request/Response objects: one pass
over the raw headers, the body read with a limit and a deadline, the model found without awaiting
anything when this worker has it mapped, and the answer sent as two ASGI messages. Failures are
raised, never answered here: ``container.handlers`` maps every exception to its answer.

A prediction runs on the event loop when the model's recent predictions were cheap for a body of this
size (below ``inline_predict_seconds``): a microsecond predict costs less than a hop to a thread and
back. Slower ones run in the predict pool, so the loop keeps serving. The estimate is per model and
measured where it runs, so the container need not know what a model is.

A one-row CSV body asking for JSON, to a model the built-in program serves, takes
``container.fastpath`` (same answer, a third of the CPU); anything it does not cover takes the hooks.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import Executor
from typing import Any

from container.bodies import read_body
from container.errors import BadRequest, InvocationFailed, ShuttingDown
from container.fastpath import CSV, JSON, CsvJsonFastPath
from container.models import Models, Resident
from container.names import validate_model_name
from container.programs import invocation_error
from endpoint.errors import ContainerError as HookError
from endpoint.program import Prediction, RequestContext

Scope = dict[str, Any]
Receive = Any
Send = Any

TARGET_MODEL_HEADER = "X-Amzn-SageMaker-Target-Model"
CUSTOM_ATTRIBUTES_HEADER = "X-Amzn-SageMaker-Custom-Attributes"
INFERENCE_ID_HEADER = "X-Amzn-SageMaker-Inference-Id"
_TARGET_MODEL = TARGET_MODEL_HEADER.lower().encode()
_CUSTOM_ATTRIBUTES = CUSTOM_ATTRIBUTES_HEADER.lower().encode()
_INFERENCE_ID = INFERENCE_ID_HEADER.lower().encode()
_CUSTOM_ATTRIBUTES_OUT = CUSTOM_ATTRIBUTES_HEADER.encode()
_JSON_TYPE = (b"content-type", JSON.encode())
# Set in the scope once the answer starts going out: an exception after that cannot be answered.
RESPONSE_STARTED = "container.response_started"
# The cost model: seconds ~ rate x (body bytes + this), so an empty body still has a cost.
_BASE_BYTES = 256
# Weight of the newest measurement in a model's running cost estimate.
_SMOOTHING = 0.2


class Invoke:
    """The ASGI app of the invoke route (Starlette treats a non-function endpoint as ASGI)."""

    def __init__(
        self,
        models: Models,
        predict_pool: Executor,
        *,
        default_accept: str,
        max_body_bytes: int,
        body_read_timeout_seconds: float,
        inline_predict_seconds: float,
        fast_path: CsvJsonFastPath | None = None,
    ) -> None:
        self.models = models
        self.predict_pool = predict_pool
        self.default_accept = default_accept
        self.max_body_bytes = max_body_bytes
        self.body_read_timeout_seconds = body_read_timeout_seconds
        self.inline_predict_seconds = inline_predict_seconds
        self.fast_path = fast_path
        self.shutting_down = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        name = validate_model_name(scope["path_params"]["model_name"])
        target = content_type = accept = custom_attributes = inference_id = declared = None
        for header, value in scope["headers"]:
            if header == b"content-type":
                content_type = value.decode("latin-1")
            elif header == b"accept":
                accept = value.decode("latin-1")
            elif header == b"content-length":
                declared = value
            elif header == _TARGET_MODEL:
                target = value.decode("latin-1")
            elif header == _CUSTOM_ATTRIBUTES:
                custom_attributes = _checked(value, CUSTOM_ATTRIBUTES_HEADER, 1024)
            elif header == _INFERENCE_ID:
                inference_id = _checked(value, INFERENCE_ID_HEADER, 64)
        body = await read_body(receive, declared, self.max_body_bytes, self.body_read_timeout_seconds)
        if self.shutting_down:
            raise ShuttingDown("The container is shutting down.")
        resident = self.models.find(name) or await self.models.map(name)
        if not accept or accept == "*/*":
            accept = self.default_accept
        fast = self.fast_path
        if fast is not None and (resident.program is not fast.program or content_type != CSV or accept != JSON):
            fast = None
        context = RequestContext(
            target_model=target or name,
            content_type=content_type,
            accept=accept,
            custom_attributes=custom_attributes,
            inference_id=inference_id,
        )
        weight = len(body) + _BASE_BYTES
        cost = resident.cost
        try:
            if cost is not None and cost * weight < self.inline_predict_seconds:
                before = time.perf_counter()
                prediction = _predict(resident, body, context, fast)
                seconds = time.perf_counter() - before
            else:
                prediction, seconds = await asyncio.get_running_loop().run_in_executor(
                    self.predict_pool, _timed_predict, resident, body, context, fast
                )
        except HookError as error:
            raise invocation_error(error) from error
        rate = seconds / weight
        resident.cost = rate if cost is None else cost + _SMOOTHING * (rate - cost)
        content_type_header = (
            _JSON_TYPE
            if prediction.content_type == JSON
            else (b"content-type", _header_value(prediction.content_type, "the content type output_fn returned"))
        )
        headers = [content_type_header, (b"content-length", str(len(prediction.body)).encode())]
        if context.response_custom_attributes:
            value = _header_value(context.response_custom_attributes, "the custom attributes a hook set")
            headers.append((_CUSTOM_ATTRIBUTES_OUT, value))
        scope[RESPONSE_STARTED] = True
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": prediction.body})


def _predict(resident: Resident, body: bytes, context: RequestContext, fast: CsvJsonFastPath | None) -> Prediction:
    """The fast path's answer when it has one, else the program's hooks'."""
    if fast is not None:
        prediction = fast.invoke(resident.model, body)
        if prediction is not None:
            return prediction
    return resident.program.invoke(resident.model, body, context)


def _timed_predict(
    resident: Resident, body: bytes, context: RequestContext, fast: CsvJsonFastPath | None
) -> tuple[Prediction, float]:
    """In the predict pool; timed there, so the hop is not counted as the model's cost."""
    before = time.perf_counter()
    prediction = _predict(resident, body, context, fast)
    return prediction, time.perf_counter() - before


def _checked(value: bytes, header: str, limit: int) -> str:
    text = value.decode("latin-1")
    if len(text) > limit or not text.isascii() or not text.isprintable():
        raise BadRequest(f"{header} must be at most {limit} printable US-ASCII characters")
    return text


def _header_value(text: str, what: str) -> bytes:
    """A hook's value as a response header: printable US-ASCII only (anything else would break the response)."""
    if len(text) > 1024 or not text.isascii() or not text.isprintable():
        raise InvocationFailed(f"{what} is not a valid header value: {text[:100]!r}")
    return text.encode("ascii")
