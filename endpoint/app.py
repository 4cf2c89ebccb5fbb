"""The ASGI app: SageMaker Runtime's InvokeEndpoint for a multi-model endpoint, plus /ping and /metrics."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from endpoint import protocol, toolkit
from endpoint.config import PRODUCTION_VARIANT, EndpointConfig
from endpoint.download import ArtifactCache, make_s3_client
from endpoint.errors import (
    ArtifactInvalid,
    ArtifactMissing,
    ContainerError,
    InternalFailure,
    InvokeError,
    ServiceUnavailable,
    StorageUnavailable,
    ValidationError,
)
from endpoint.loader import InferenceProgram, RequestContext
from endpoint.memory import measure_bytes, rss_bytes
from endpoint.metrics import CONTENT_TYPE_LATEST, EndpointMetrics
from endpoint.store import Loaded, ModelStore

log = logging.getLogger("endpoint")


@dataclass
class Runtime:
    """Everything one app instance owns; ``app.state.runtime`` (tests and benchmarks read it)."""

    config: EndpointConfig
    metrics: EndpointMetrics
    program: InferenceProgram
    artifacts: ArtifactCache
    store: ModelStore[Any]
    predict_pool: ThreadPoolExecutor
    cache_dir: Path
    shutting_down: bool = False

    def load_model(self, target_model: str) -> Loaded[Any]:
        """Download (if not on disk), run model_fn and measure: runs in the load pool."""
        fetched = self.artifacts.fetch(target_model)
        if fetched.downloaded:
            self.metrics.model_downloads.labels(target_model).inc()
            self.metrics.model_downloading_time.observe(fetched.seconds)
        try:
            started = time.perf_counter()
            rss_before = rss_bytes()
            model = self.program.load_model(fetched.model_dir)
            rss_delta = rss_bytes() - rss_before
            try:
                size = measure_bytes(model)
                method = "pickle"
            except Exception:  # an unpicklable model: fall back to the (noisier) RSS growth
                size, method = max(rss_delta, 0), "rss"
            elapsed = time.perf_counter() - started
        finally:
            self.artifacts.unpin(fetched.model_dir)
        self.metrics.model_loads.labels(target_model).inc()
        self.metrics.model_loading_time.observe(elapsed)
        log.info("loaded %s in %.3fs: %d bytes (%s), rss %+d", target_model, elapsed, size, method, rss_delta)
        return Loaded(value=model, size_bytes=size)


def create_app(config: EndpointConfig, *, s3_client: Any = None) -> Starlette:
    """Build the endpoint app. The inference program is imported now, so a broken one fails fast."""
    program = InferenceProgram.from_file(config.program_path, toolkit.for_image(config.image_version))
    cache_dir = Path(tempfile.mkdtemp(prefix="endpoint-cache-")) if config.cache_dir is None else config.cache_dir
    metrics = EndpointMetrics()
    load_pool = ThreadPoolExecutor(max_workers=config.load_workers, thread_name_prefix="endpoint-load")
    predict_pool = ThreadPoolExecutor(max_workers=config.predict_workers, thread_name_prefix="endpoint-predict")
    artifacts = ArtifactCache(
        s3=s3_client if s3_client is not None else make_s3_client(max_pool_connections=config.load_workers * 2),
        model_data_url=config.model_data_url,
        root=cache_dir,
        max_bytes=config.max_disk_bytes,
        max_artifact_bytes=config.max_artifact_bytes,
        max_unpacked_bytes=config.max_unpacked_bytes,
    )
    runtime: Runtime
    store: ModelStore[Any] = ModelStore(
        lambda name: runtime.load_model(name),
        load_pool,
        metrics,
        max_models=config.max_models,
        max_bytes=config.max_memory_bytes,
        caching=config.model_cache_setting == "Enabled",
        wait_seconds=config.model_load_wait_seconds,
        failure_label=_model_label_for_failure,
    )
    runtime = Runtime(
        config=config,
        metrics=metrics,
        program=program,
        artifacts=artifacts,
        store=store,
        predict_pool=predict_pool,
        cache_dir=cache_dir,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            runtime.shutting_down = True
            await runtime.store.close()
            load_pool.shutdown(wait=True, cancel_futures=True)
            predict_pool.shutdown(wait=True, cancel_futures=True)
            if runtime.config.cache_dir is None:
                shutil.rmtree(runtime.cache_dir, ignore_errors=True)

    app = Starlette(
        routes=[
            Route("/endpoints/{endpoint_name}/invocations", invocations, methods=["POST"]),
            Route("/ping", ping, methods=["GET"]),
            Route("/metrics", metrics_view, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    return app


async def ping(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    return Response(status_code=503 if runtime.shutting_down else 200)


UNKNOWN_MODEL_LABEL = "-"
_MODEL_REACHED_CODES = frozenset({"OK", "ModelError"})


def _model_label_for_failure(target_model: str, error: BaseException) -> str:
    return UNKNOWN_MODEL_LABEL if isinstance(error, ArtifactMissing) else target_model


async def metrics_view(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    return Response(runtime.metrics.render(), headers={"content-type": CONTENT_TYPE_LATEST})


async def invocations(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    request_id = str(uuid.uuid4())
    started = time.perf_counter()
    target = request.headers.get(protocol.TARGET_MODEL_HEADER)
    try:
        response = await _invoke(runtime, request, request_id)
    except InvokeError as error:
        response = _error_response(error, request_id)
    except ClientDisconnect:
        # The caller hung up mid-body: nobody reads an answer, and it is not our failure.
        log.info("client disconnected before sending the whole body (request %s)", request_id)
        runtime.metrics.invocations.labels(UNKNOWN_MODEL_LABEL, "ClientDisconnect").inc()
        return Response(status_code=400)
    except Exception:
        log.exception("InvokeEndpoint %s failed unexpectedly (request %s)", target, request_id)
        response = _error_response(InternalFailure("An internal failure occurred."), request_id)
    code = response.headers.get(protocol.ERROR_TYPE_HEADER, "OK")
    # Only names that reached a model become label values: any caller can invent TargetModels, and
    # every new label value is a time series kept for the life of the process.
    label = target if target and code in _MODEL_REACHED_CODES else UNKNOWN_MODEL_LABEL
    runtime.metrics.invocations.labels(label, code).inc()
    if code == "OK":
        runtime.metrics.invocation_latency.labels(label).observe(time.perf_counter() - started)
    return response


async def _invoke(runtime: Runtime, request: Request, request_id: str) -> Response:
    config = runtime.config
    protocol.validate_endpoint_name(request.path_params["endpoint_name"], config)
    headers = request.headers
    target = protocol.validate_target_model(headers.get(protocol.TARGET_MODEL_HEADER))
    custom_attributes = protocol.validate_custom_attributes(headers.get(protocol.CUSTOM_ATTRIBUTES_HEADER))
    inference_id = protocol.validate_inference_id(headers.get(protocol.INFERENCE_ID_HEADER))
    body = await _read_body(request, config.max_body_bytes)
    if runtime.shutting_down:
        raise ServiceUnavailable("The endpoint is shutting down.")
    accept = headers.get("accept")
    if not accept or accept == "*/*":
        accept = config.default_accept
    context = RequestContext(
        target_model=target,
        content_type=headers.get("content-type"),
        accept=accept,
        custom_attributes=custom_attributes,
        inference_id=inference_id,
    )
    try:
        async with runtime.store.lease(target) as lease:
            prediction = await asyncio.get_running_loop().run_in_executor(
                runtime.predict_pool, runtime.program.invoke, lease.value, body, context
            )
    except ArtifactMissing as error:
        raise protocol.missing_artifact(error) from error
    except ArtifactInvalid as error:
        bucket, key = runtime.artifacts.location(target)
        raise ValidationError(f"Failed to extract model data (bucket: {bucket}, key: {key}): {error}") from error
    except StorageUnavailable as error:
        log.warning("S3 unavailable for %s: %s", target, error)
        raise ServiceUnavailable("Model data could not be downloaded right now; try again.") from error
    except ContainerError as error:
        log.warning("model %s failed (%d): %s", target, error.status, error.message.splitlines()[0])
        raise protocol.model_error(error.status, error.message, config) from error
    response_headers = {
        "content-type": prediction.content_type,
        protocol.INVOKED_VARIANT_HEADER: PRODUCTION_VARIANT,
        protocol.REQUEST_ID_HEADER: request_id,
    }
    # Only what the container set: SageMaker forwards the container's header and echoes nothing.
    attributes = context.response_custom_attributes
    if attributes:
        response_headers[protocol.CUSTOM_ATTRIBUTES_HEADER] = attributes
    return Response(prediction.body, status_code=200, headers=response_headers)


async def _read_body(request: Request, limit: int) -> bytes:
    """Read at most ``limit`` bytes; a larger body is refused from its Content-Length, unread."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise ValidationError("Content-Length must be an integer.") from None
        if size > limit:
            raise protocol.body_too_large(size, limit)
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise protocol.body_too_large(total, limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _error_response(error: InvokeError, request_id: str) -> Response:
    return JSONResponse(
        error.body(),
        status_code=error.status,
        headers={protocol.ERROR_TYPE_HEADER: error.code, protocol.REQUEST_ID_HEADER: request_id},
    )
