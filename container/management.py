"""The multi-model contract's management routes: ping, load, list, describe, unload.

Shapes as the AWS developer guide ("Custom Containers Contract for Multi-Model Endpoints") documents
them, with multi-model-server's for what it leaves open (docs/container.md lists each source):
``POST /models`` takes ``{"model_name", "url"}``; ``GET /models`` answers
``{"models": [{"modelName", "modelUrl"}], "nextPageToken"}`` (the token only while more follow; passed
back as ``next_page_token``, with ``limit`` 1-100, default 100, as MMS clamps it);
``GET /models/{model_name}`` answers ``{"modelName", "modelUrl"}``.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from container.bodies import read_body
from container.errors import BadRequest, ModelNotFound, UnsupportedMediaType
from container.models import Models
from container.names import validate_model_name
from container.registry import BadPageToken, Entry

# A load request is two short strings; nothing legitimate comes near this.
MAX_LOAD_BODY_BYTES = 64 * 1024
DEFAULT_PAGE = 100
MAX_PAGE = 100


class Management:
    def __init__(self, models: Models, *, body_read_timeout_seconds: float) -> None:
        self.models = models
        self.body_read_timeout_seconds = body_read_timeout_seconds

    async def ping(self, request: Request) -> Response:
        return Response(status_code=200)

    async def collection(self, request: Request) -> Response:
        """``/models``: one route for both methods, so a wrong method gets 405 naming both."""
        return await (self.load(request) if request.method == "POST" else self.list_models(request))

    async def model(self, request: Request) -> Response:
        return await (self.unload(request) if request.method == "DELETE" else self.describe(request))

    async def load(self, request: Request) -> Response:
        media_type = request.headers.get("content-type", "application/json").split(";", 1)[0].strip().lower()
        if media_type != "application/json":
            raise UnsupportedMediaType(f"POST /models takes application/json, got {media_type!r}")
        body = await read_body(
            request.receive, request.headers.get("content-length"), MAX_LOAD_BODY_BYTES, self.body_read_timeout_seconds
        )
        fields = _json_object(body)
        name = validate_model_name(fields.get("model_name"))
        await self.models.load(name, fields.get("url"))  # type: ignore[arg-type]  # checked by model_dir.resolve
        return JSONResponse({"status": f'Model "{name}" loaded'})

    async def list_models(self, request: Request) -> Response:
        limit = _page_size(request.query_params.get("limit"))
        token = request.query_params.get("next_page_token") or None
        self.models.catch_up()
        try:
            entries, next_token = self.models.registry.page(token, limit)
        except BadPageToken as error:
            raise BadRequest(str(error)) from None
        answer: dict[str, Any] = {"models": [_described(entry) for entry in entries]}
        if next_token is not None:
            answer["nextPageToken"] = next_token
        return JSONResponse(answer)

    async def describe(self, request: Request) -> Response:
        name = validate_model_name(request.path_params["model_name"])
        self.models.catch_up()
        entry = self.models.registry.loaded(name)
        if entry is None:
            raise ModelNotFound(f"Model not found: {name}")
        return JSONResponse(_described(entry))

    async def unload(self, request: Request) -> Response:
        name = validate_model_name(request.path_params["model_name"])
        await self.models.unload(name)
        return JSONResponse({"status": f'Model "{name}" unloaded'})


def _described(entry: Entry) -> dict[str, str]:
    return {"modelName": entry.name, "modelUrl": entry.url}


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        fields = json.loads(body)
    except (ValueError, RecursionError) as error:
        raise BadRequest(f"the body is not JSON: {error}") from None
    if not isinstance(fields, dict):
        raise BadRequest('the body must be a JSON object: {"model_name": ..., "url": ...}')
    return fields


def _page_size(raw: str | None) -> int:
    if raw is None or raw == "":
        return DEFAULT_PAGE
    try:
        limit = int(raw)
    except ValueError:
        raise BadRequest(f"limit must be an integer, got {raw!r}") from None
    # multi-model-server's rule: out of range means the default (0 would never make progress).
    return limit if 0 < limit <= MAX_PAGE else DEFAULT_PAGE
