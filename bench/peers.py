"""The servers this project's endpoint is compared with, in one file so they stay minimal.

* ``ceiling``: a bare Starlette app answering the InvokeEndpoint route with a constant body: what the
  HTTP stack alone costs (run on uvicorn with httptools + uvloop, and with h11 + asyncio).
* ``sklearn``: the naive peer: Starlette + ``joblib.load`` + ``model.predict`` per request on
  Starlette's thread pool (as a sync route would run), same wire protocol as the endpoint.
* MLServer: :func:`write_mlserver_repository` lays out a model repository (joblib models,
  ``model-settings.json`` each, a ``settings.json``) for ``mlserver start`` in its own venv.

    python bench/peers.py ceiling --fd 3 --http httptools --loop uvloop
    python bench/peers.py sklearn --fd 3 --models-dir DIR   # DIR/{target model}.joblib

The peers load pickles: they are other people's servers, measured as they are normally used.
"""

from __future__ import annotations

import argparse
import io
import json
import socket
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

TARGET_MODEL_HEADER = "X-Amzn-SageMaker-Target-Model"
INVOCATIONS_PATH = "/endpoints/{endpoint_name}/invocations"
CEILING_BODY = b"[0.0]"


def ceiling_app() -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    async def invocations(request: Request) -> Response:
        await request.body()
        return Response(CEILING_BODY, media_type="application/json")

    async def ping(request: Request) -> Response:
        return Response(b"", status_code=200)

    return Starlette(routes=[Route(INVOCATIONS_PATH, invocations, methods=["POST"]), Route("/ping", ping)])


def sklearn_app(models_dir: Path) -> Any:
    import joblib
    import numpy as np
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    models = {path.stem: joblib.load(path) for path in sorted(models_dir.glob("*.joblib"))}

    async def invocations(request: Request) -> Response:
        body = await request.body()
        model = models.get(request.headers.get(TARGET_MODEL_HEADER, ""))
        if model is None:
            return JSONResponse({"message": "unknown target model"}, status_code=404)
        rows = np.loadtxt(io.StringIO(body.decode()), delimiter=",", ndmin=2)
        prices = await run_in_threadpool(model.predict, rows)
        return JSONResponse(prices.tolist())

    async def ping(request: Request) -> Response:
        return Response(b"", status_code=200)

    return Starlette(routes=[Route(INVOCATIONS_PATH, invocations, methods=["POST"]), Route("/ping", ping)])


def write_mlserver_repository(
    root: Path,
    models: Mapping[str, Path],
    *,
    parallel_workers: int,
    max_batch_size: int = 0,
    max_batch_time: float = 0.0,
) -> Path:
    """A model repository for ``mlserver start root``: one folder per model with its joblib file.

    Ports are filled in by the caller (``MLSERVER_HTTP_PORT`` etc. in the environment win over
    settings.json); metrics are off, as they are in the bare ceiling.
    """
    root.mkdir(parents=True, exist_ok=True)
    settings = {"debug": False, "parallel_workers": parallel_workers, "host": "127.0.0.1", "metrics_endpoint": None}
    (root / "settings.json").write_text(json.dumps(settings, indent=2))
    for name, joblib_path in models.items():
        folder = root / name
        folder.mkdir(exist_ok=True)
        target = folder / "model.joblib"
        if not target.exists():
            target.symlink_to(joblib_path.resolve())
        model_settings: dict[str, Any] = {
            "name": name,
            "implementation": "mlserver_sklearn.SKLearnModel",
            "parameters": {"uri": "./model.joblib", "version": "v1"},
        }
        if max_batch_size:
            model_settings.update(max_batch_size=max_batch_size, max_batch_time=max_batch_time)
        (folder / "model-settings.json").write_text(json.dumps(model_settings, indent=2))
    return root


def mlserver_infer_body(rows: Sequence[Sequence[float]]) -> str:
    """An Open Inference Protocol (V2) request for ``rows`` of features."""
    flat = [float(value) for row in rows for value in row]
    width = len(rows[0]) if rows else 0
    return json.dumps(
        {"inputs": [{"name": "predict", "shape": [len(rows), width], "datatype": "FP64", "data": flat}]},
        separators=(",", ":"),
    )


def main(argv: Sequence[str] | None = None) -> int:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("app", choices=["ceiling", "sklearn"])
    parser.add_argument("--fd", type=int, required=True, help="inherited listening socket")
    parser.add_argument("--http", choices=["httptools", "h11"], default="h11")
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="asyncio")
    parser.add_argument("--models-dir", type=Path)
    args = parser.parse_args(argv)
    if args.app == "sklearn" and args.models_dir is None:
        parser.error("sklearn needs --models-dir")
    app = ceiling_app() if args.app == "ceiling" else sklearn_app(args.models_dir)
    # Not uvicorn's own --fd: it wraps the descriptor as AF_UNIX, so asyncio never sets TCP_NODELAY.
    sock = socket.socket(fileno=args.fd)
    config = uvicorn.Config(app, http=args.http, loop=args.loop, log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
