"""One worker's app: the contract's routes and their wiring, nothing else.

Built in each worker process after the fork (its event loop, pools and registry handle are its own);
the inference programs are imported before the fork, so every worker shares those pages.

``POST /models/{model_name}/invoke`` — every InvokeEndpoint — goes straight to its ASGI app
(``container.invoke``); everything else, and any path the invoke route would not match, goes through
Starlette's router. An invocation's exception is answered by Starlette's own error layers
(``container.handlers.error_responder``), so both ways answer alike.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.routing import Route

from container.fastpath import CsvJsonFastPath
from container.handlers import Responder, error_responder, exception_handlers
from container.invoke import RESPONSE_STARTED, Invoke
from container.management import Management
from container.models import Models
from container.programs import Programs
from container.registry import Registry
from container.settings import ContainerSettings
from endpoint.memory import Trimmer

# A claim older than the load timeout plus this is abandoned: its loader would have given up by then.
STALE_CLAIM_MARGIN_SECONDS = 5.0


@dataclass
class Worker:
    """Everything one app owns; ``app.state.worker`` (tests read it)."""

    settings: ContainerSettings
    registry: Registry
    models: Models
    invoke: Invoke


_INVOKE_PREFIX = "/models/"
_INVOKE_SUFFIX = "/invoke"


def invoke_target(path: str) -> str | None:
    """The ``model_name`` when ``path`` is what Starlette's ``/models/{model_name}/invoke`` matches, else None.

    The ``str`` convertor's ``[^/]+``: a non-empty segment without ``/``. Only the common spelling is
    recognised here; anything else still reaches Starlette's router, which decides as it always did.
    """
    if not (path.startswith(_INVOKE_PREFIX) and path.endswith(_INVOKE_SUFFIX)):
        return None
    name = path[len(_INVOKE_PREFIX) : -len(_INVOKE_SUFFIX)]
    return name if name and "/" not in name else None


class Dispatch:
    """The worker's ASGI app: invocations straight to ``invoke``, the rest to the Starlette app."""

    def __init__(self, starlette: Starlette, invoke: Invoke, respond: Responder) -> None:
        self.starlette = starlette
        self.invoke = invoke
        self.respond = respond
        self.state = starlette.state  # app.state.worker, and what endpoint.http looks up on an app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            name = invoke_target(scope["path"])
            if name is not None:
                scope["app"] = self.starlette
                scope["path_params"] = {"model_name": name}
                try:
                    await self.invoke(scope, receive, send)
                except Exception as error:
                    if scope.get(RESPONSE_STARTED):
                        raise  # as Starlette: nothing more can be sent; uvicorn logs it and closes the connection
                    await self.respond(scope, receive, send, error)
                return
        await self.starlette(scope, receive, send)


def create_app(settings: ContainerSettings, programs: Programs, state_dir: Path) -> Dispatch:
    registry = Registry(
        state_dir,
        budget_bytes=settings.memory_budget.bytes,
        stale_after_seconds=settings.model_load_timeout_seconds + STALE_CLAIM_MARGIN_SECONDS,
    )
    load_pool = ThreadPoolExecutor(max_workers=settings.load_threads, thread_name_prefix="container-load")
    predict_pool = ThreadPoolExecutor(max_workers=settings.predict_threads, thread_name_prefix="container-predict")
    trimmer = Trimmer()
    models = Models(
        registry,
        programs,
        model_root=settings.model_root,
        max_model_dir_bytes=settings.max_model_dir_bytes,
        workers=settings.workers,
        load_pool=load_pool,
        load_timeout_seconds=settings.model_load_timeout_seconds,
        release=trimmer,
    )
    invoke = Invoke(
        models,
        predict_pool,
        default_accept=settings.default_accept,
        max_body_bytes=settings.max_body_bytes,
        body_read_timeout_seconds=settings.body_read_timeout_seconds,
        inline_predict_seconds=settings.inline_predict_seconds,
        fast_path=CsvJsonFastPath.for_program(programs.default),
    )
    management = Management(models, body_read_timeout_seconds=settings.body_read_timeout_seconds)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        keeping_up = asyncio.ensure_future(models.keep_up())
        try:
            yield
        finally:
            invoke.shutting_down = True
            keeping_up.cancel()
            trimmer.cancel()
            # A model_fn stuck past its load timeout cannot be interrupted: do not wait for it here.
            load_pool.shutdown(wait=False, cancel_futures=True)
            predict_pool.shutdown(wait=True, cancel_futures=True)
            registry.close()

    app = Starlette(
        routes=[
            Route("/ping", management.ping, methods=["GET"]),
            Route("/models", management.collection, methods=["GET", "POST"]),
            Route("/models/{model_name}/invoke", invoke, methods=["POST"]),
            Route("/models/{model_name}", management.model, methods=["GET", "DELETE"]),
        ],
        exception_handlers=exception_handlers(),
        lifespan=lifespan,
    )
    app.state.worker = Worker(settings, registry, models, invoke)
    return Dispatch(app, invoke, error_responder())
