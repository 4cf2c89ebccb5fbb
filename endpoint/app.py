"""The ASGI app: routes and wiring only.

InvokeEndpoint itself is ``endpoint.invocations``; every error response comes from ``endpoint.handlers``.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from endpoint import toolkit
from endpoint.config import EndpointConfig
from endpoint.download import ArtifactCache, make_s3_client
from endpoint.handlers import exception_handlers, unparsable_request
from endpoint.invocations import InvokeEndpoint
from endpoint.loader import ModelLoader
from endpoint.memory import Trimmer
from endpoint.metrics import CONTENT_TYPE_LATEST, EndpointMetrics
from endpoint.program import InferenceProgram
from endpoint.store import ModelStore


@dataclass
class Runtime:
    """Everything one app instance owns; ``app.state.runtime`` (tests and benchmarks read it)."""

    config: EndpointConfig
    metrics: EndpointMetrics
    program: InferenceProgram
    artifacts: ArtifactCache
    loader: ModelLoader
    store: ModelStore[Any]
    invocations: InvokeEndpoint
    cache_dir: Path

    @property
    def shutting_down(self) -> bool:
        return self.invocations.shutting_down


def create_app(config: EndpointConfig, *, s3_client: Any = None) -> Starlette:
    """Build the endpoint app. The inference program is imported now, so a broken one fails fast."""
    program = InferenceProgram.from_file(config.program_path, toolkit.for_image(config.image_version))
    cache_dir = Path(tempfile.mkdtemp(prefix="endpoint-cache-")) if config.cache_dir is None else config.cache_dir
    metrics = EndpointMetrics()
    load_pool = ThreadPoolExecutor(max_workers=config.load_workers, thread_name_prefix="endpoint-load")
    predict_pool = ThreadPoolExecutor(max_workers=config.predict_workers, thread_name_prefix="endpoint-predict")
    if s3_client is None:
        s3_client = make_s3_client(
            max_pool_connections=config.load_workers * 2,
            connect_timeout=config.s3_connect_timeout_seconds,
            read_timeout=config.s3_read_timeout_seconds,
            max_attempts=config.s3_max_attempts,
        )
    artifacts = ArtifactCache(
        s3=s3_client,
        model_data_url=config.model_data_url,
        root=cache_dir,
        max_bytes=config.max_disk_bytes,
        max_artifact_bytes=config.max_artifact_bytes,
        max_unpacked_bytes=config.max_unpacked_bytes,
    )
    loader = ModelLoader(program, artifacts, metrics)
    trimmer = Trimmer()
    store: ModelStore[Any] = ModelStore(
        loader,
        load_pool,
        metrics,
        max_models=config.max_models,
        max_bytes=config.max_memory_bytes,
        caching=config.model_cache_setting == "Enabled",
        wait_seconds=config.model_load_wait_seconds,
        load_timeout_seconds=config.model_load_timeout_seconds,
        release=trimmer,
    )
    invocations = InvokeEndpoint(config, program, store, predict_pool, metrics)
    runtime = Runtime(config, metrics, program, artifacts, loader, store, invocations, cache_dir)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            invocations.shutting_down = True
            await store.close()
            trimmer.cancel()
            # A model_fn stuck past its load timeout cannot be interrupted: do not wait for it here.
            load_pool.shutdown(wait=False, cancel_futures=True)
            predict_pool.shutdown(wait=True, cancel_futures=True)
            if config.cache_dir is None:
                shutil.rmtree(cache_dir, ignore_errors=True)

    async def ping(request: Request) -> Response:
        return Response(status_code=503 if invocations.shutting_down else 200)

    async def metrics_view(request: Request) -> Response:
        return Response(metrics.render(), headers={"content-type": CONTENT_TYPE_LATEST})

    app = Starlette(
        routes=[
            # ``:path`` so that a name with an encoded slash (a%2Fb) still reaches InvokeEndpoint's validation
            # and gets SageMaker's ValidationError, not a bare 404.
            Route("/endpoints/{endpoint_name:path}/invocations", invocations, methods=["POST"]),
            Route("/ping", ping, methods=["GET"]),
            Route("/metrics", metrics_view, methods=["GET"]),
        ],
        exception_handlers=dict(exception_handlers(config, metrics)),
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    # Requests uvicorn's parser rejects get InvokeEndpoint's JSON ValidationError too (endpoint.http.server_config).
    app.state.unparsable_request = unparsable_request
    return app
