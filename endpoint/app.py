"""The ASGI app: routes and wiring only.

InvokeEndpoint itself is ``endpoint.invocations`` (managed serving: the scikit-learn image emulated in
this process) or ``endpoint.sagemaker_side`` (dense serving: the SageMaker side in front of the dense
container's process, ``endpoint.instance``); every error response comes from ``endpoint.handlers``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from endpoint import toolkit
from endpoint.config import EndpointConfig
from endpoint.container_client import ContainerClient
from endpoint.download import ArtifactCache, make_s3_client
from endpoint.handlers import exception_handlers, unparsable_request
from endpoint.instance import ContainerProcess, container_environment
from endpoint.invocations import InvokeEndpoint
from endpoint.loader import ModelLoader
from endpoint.memory import Trimmer
from endpoint.metrics import CONTENT_TYPE_LATEST, EndpointMetrics
from endpoint.program import InferenceProgram
from endpoint.sagemaker_side import ContainerModels, InvokeContainer, instance_memory, ping_container
from endpoint.sockets import listening_socket
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


@dataclass
class DenseRuntime:
    """Dense serving's parts (``app.state.runtime``): the container's process, the client, the models it holds."""

    config: EndpointConfig
    metrics: EndpointMetrics
    artifacts: ArtifactCache
    client: ContainerClient
    instance: ContainerProcess
    models: ContainerModels
    invocations: InvokeContainer
    cache_dir: Path
    # Run when the container crash-loops and the endpoint gives up (python -m endpoint stops its server: exit 1).
    on_failure: list[Callable[[], None]] = field(default_factory=list)

    @property
    def failure(self) -> str | None:
        return self.instance.failure


def create_app(config: EndpointConfig, *, s3_client: Any = None, environ: Mapping[str, str] | None = None) -> Starlette:
    """Build the endpoint app. Managed serving imports the inference program now, so a broken one fails fast;
    dense serving starts the container (``environ`` less the endpoint's own settings is its environment) when
    the app starts."""
    if config.serving == "dense":
        return _dense_app(config, s3_client, os.environ if environ is None else environ)
    program = InferenceProgram.from_file(config.program_path, toolkit.for_image(config.image_version))
    cache_dir = Path(tempfile.mkdtemp(prefix="endpoint-cache-")) if config.cache_dir is None else config.cache_dir
    metrics = EndpointMetrics()
    load_pool = ThreadPoolExecutor(max_workers=config.load_workers, thread_name_prefix="endpoint-load")
    predict_pool = ThreadPoolExecutor(max_workers=config.predict_workers, thread_name_prefix="endpoint-predict")
    artifacts = _artifacts(config, cache_dir, s3_client)
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

    async def healthy() -> bool:
        return not invocations.shutting_down

    return _routes(config, metrics, invocations, healthy, lifespan, runtime)


def _dense_app(config: EndpointConfig, s3_client: Any, environ: Mapping[str, str]) -> Starlette:
    """The SageMaker side in front of the container's process (endpoint.sagemaker_side, endpoint.instance)."""
    # Absolute: the container runs in another working directory, and takes only absolute model paths.
    cache_dir = Path(tempfile.mkdtemp(prefix="endpoint-cache-")) if config.cache_dir is None else config.cache_dir
    cache_dir = cache_dir.resolve()
    metrics = EndpointMetrics()
    pool = ThreadPoolExecutor(max_workers=config.load_workers, thread_name_prefix="endpoint-load")
    # The container's models live where SageMaker puts them: ROOT/{model_name}/model, ROOT = the cache's models/.
    artifacts = _artifacts(config, cache_dir, s3_client, extract_into="model")
    model_root = cache_dir / "models"
    # Bound here and kept: a restarted container serves on the same address.
    container_socket = listening_socket("127.0.0.1", 0)
    client = ContainerClient("127.0.0.1", container_socket.getsockname()[1])
    workers = config.container_workers or len(os.sched_getaffinity(0))
    arguments = ["--model-root", str(model_root)]
    if config.container_workers is not None:
        arguments += ["--workers", str(config.container_workers)]
    environment = container_environment(environ)
    # The models' budget, unless the Model's environment sets one (as a template could).
    environment.setdefault("CONTAINER_MEMORY_BUDGET_BYTES", str(config.max_memory_bytes))
    budget = int(environment["CONTAINER_MEMORY_BUDGET_BYTES"])
    holder: list[DenseRuntime] = []

    def failed(reason: str) -> None:
        # A crash-looping container: answer 503 from now on, and let whoever runs the endpoint stop it.
        runtime = holder[0]
        runtime.invocations.shutting_down = True
        for hook in runtime.on_failure:
            hook()

    instance = ContainerProcess(
        arguments,
        environment,
        container_socket,
        client,
        on_restart=lambda: holder[0].models.container_restarted(),
        on_failed=failed,
    )
    models = ContainerModels(
        artifacts,
        client,
        instance,
        metrics,
        pool,
        caching=config.model_cache_setting == "Enabled",
        wait_seconds=config.model_load_wait_seconds,
        load_timeout_seconds=config.model_load_timeout_seconds,
        instance_memory_bytes=instance_memory(budget, workers),
    )
    invocations = InvokeContainer(config, models, client, instance, metrics)
    runtime = DenseRuntime(config, metrics, artifacts, client, instance, models, invocations, cache_dir)
    holder.append(runtime)
    ping_container_now = ping_container(client)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        watcher = None
        try:
            await instance.start()
            watcher = asyncio.ensure_future(models.watch_memory())
            yield
        finally:
            invocations.shutting_down = True
            if watcher is not None:
                watcher.cancel()
            await models.close()
            await instance.stop()
            client.close()
            container_socket.close()
            pool.shutdown(wait=True, cancel_futures=True)
            if config.cache_dir is None:
                shutil.rmtree(cache_dir, ignore_errors=True)

    async def healthy() -> bool:
        return not invocations.shutting_down and await ping_container_now()

    return _routes(config, metrics, invocations, healthy, lifespan, runtime)


def _artifacts(config: EndpointConfig, cache_dir: Path, s3_client: Any, extract_into: str = "") -> ArtifactCache:
    if s3_client is None:
        s3_client = make_s3_client(
            max_pool_connections=config.load_workers * 2,
            connect_timeout=config.s3_connect_timeout_seconds,
            read_timeout=config.s3_read_timeout_seconds,
            max_attempts=config.s3_max_attempts,
        )
    return ArtifactCache(
        s3=s3_client,
        model_data_url=config.model_data_url,
        root=cache_dir,
        max_bytes=config.max_disk_bytes,
        max_artifact_bytes=config.max_artifact_bytes,
        max_unpacked_bytes=config.max_unpacked_bytes,
        extract_into=extract_into,
    )


class EndpointApp(Starlette):
    """Starlette, with InvokeEndpoint taken before the middleware stack and the router.

    ``POST /endpoints/{EndpointName}/invocations`` is every request but a few: it goes straight to
    ``invocations`` (a plain ASGI app), and an exception it raises is answered by the same handler
    Starlette would pick (``endpoint.handlers``). Everything else is Starlette's, the same route included
    for other methods (405 → UnknownOperation).
    """

    invocations: Any = None
    error_handlers: Mapping[Any, Any] = {}

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path: str = scope["path"]
            if path.startswith(_INVOCATIONS_PREFIX) and path.endswith(_INVOCATIONS_SUFFIX) and len(path) >= _SHORTEST:
                scope["app"] = self
                scope["path_params"] = {"endpoint_name": path[len(_INVOCATIONS_PREFIX) : -len(_INVOCATIONS_SUFFIX)]}
                try:
                    await self.invocations(scope, receive, send)
                except Exception as error:
                    handler = next(
                        self.error_handlers[kind] for kind in type(error).__mro__ if kind in self.error_handlers
                    )
                    response = await handler(Request(scope, receive), error)
                    await response(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


_INVOCATIONS_PREFIX = "/endpoints/"
_INVOCATIONS_SUFFIX = "/invocations"
_SHORTEST = len(_INVOCATIONS_PREFIX) + len(_INVOCATIONS_SUFFIX)


def _routes(
    config: EndpointConfig,
    metrics: EndpointMetrics,
    invocations: Any,
    healthy: Callable[[], Awaitable[bool]],
    lifespan: Any,
    runtime: Any,
) -> Starlette:
    async def ping(request: Request) -> Response:
        return Response(status_code=200 if await healthy() else 503)

    async def metrics_view(request: Request) -> Response:
        return Response(metrics.render(), headers={"content-type": CONTENT_TYPE_LATEST})

    handlers = dict(exception_handlers(config, metrics))
    app = EndpointApp(
        routes=[
            # ``:path`` so that a name with an encoded slash (a%2Fb) still reaches InvokeEndpoint's validation
            # and gets SageMaker's ValidationError, not a bare 404.
            Route("/endpoints/{endpoint_name:path}/invocations", invocations, methods=["POST"]),
            Route("/ping", ping, methods=["GET"]),
            Route("/metrics", metrics_view, methods=["GET"]),
        ],
        exception_handlers=handlers,
        lifespan=lifespan,
    )
    app.invocations = invocations
    app.error_handlers = handlers
    app.state.runtime = runtime
    # Requests uvicorn's parser rejects get InvokeEndpoint's JSON ValidationError too (endpoint.http.server_config).
    app.state.unparsable_request = unparsable_request
    return app
