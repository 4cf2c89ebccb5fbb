"""``python -m endpoint``: run the local multi-model endpoint (options in docs/endpoint.md)."""

from __future__ import annotations

import argparse
import dataclasses
import gc
import importlib
import logging
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from endpoint import toolkit
from endpoint.app import DenseRuntime, create_app
from endpoint.config import EndpointConfig
from endpoint.http import SocketServer, server_config
from endpoint.instance import IMAGE_COMMAND
from endpoint.lifetime import ignore_stop_signals, supervise_workers
from endpoint.program import InferenceProgram
from endpoint.sockets import inherited_socket, listening_socket

log = logging.getLogger("endpoint")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m endpoint", description=__doc__)
    parser.add_argument("--host", help="bind address (default 127.0.0.1) [ENDPOINT_HOST]")
    parser.add_argument("--port", type=int, help="port (default 8080; 0 = a free port) [ENDPOINT_PORT]")
    parser.add_argument(
        "--fd",
        type=int,
        help="serve on this inherited, already listening socket instead of binding --host/--port "
        "(how the local stack starts it: the port is known before the process exists)",
    )
    parser.add_argument("--endpoint-name", help="EndpointName to answer to [ENDPOINT_NAME]")
    parser.add_argument("--model-data-url", help="s3://bucket/prefix/ TargetModel is relative to [MODEL_DATA_URL]")
    parser.add_argument("--cache-dir", type=Path, help="disk cache of unpacked models [ENDPOINT_CACHE_DIR]")
    parser.add_argument("--max-models", type=int, help="max models in memory [ENDPOINT_MAX_MODELS]")
    parser.add_argument(
        "--max-memory-bytes", type=int, help="max measured bytes of models in memory [ENDPOINT_MAX_MEMORY_BYTES]"
    )
    parser.add_argument(
        "--model-cache-setting",
        choices=["Enabled", "Disabled"],
        help="SageMaker ModelCacheSetting [MODEL_CACHE_SETTING]",
    )
    parser.add_argument(
        "--model-load-wait-seconds",
        type=float,
        help="wait for a loading model before ModelNotReadyException (default 60) [ENDPOINT_MODEL_LOAD_WAIT_SECONDS]",
    )
    parser.add_argument(
        "--image-version",
        help="scikit-learn image tag whose serving stack to emulate (default: training/images.json's default) "
        "[SAGEMAKER_SKLEARN_VERSION]",
    )
    parser.add_argument(
        "--serving",
        choices=["managed", "dense"],
        help="managed: emulate the SageMaker scikit-learn image in this process (default); dense: be the SageMaker "
        "side in front of the dense container's process, started with the image's command [ENDPOINT_SERVING]",
    )
    parser.add_argument(
        "--container-workers",
        type=int,
        help="dense serving: the container's --workers (default: its own, the CPUs it may use) "
        "[ENDPOINT_CONTAINER_WORKERS]",
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument(
        "--exit-with-parent",
        action="store_true",
        help="stop when the launching process dies (a supervisor killed with SIGKILL leaves nothing behind)",
    )
    parser.add_argument(
        "--preload",
        nargs="*",
        help="modules imported at boot, as the scikit-learn container does (default sklearn.ensemble) "
        "[ENDPOINT_PRELOAD_MODULES]",
    )
    parser.add_argument(
        "--workers",
        type=int,
        help="managed serving: server processes sharing the socket and the disk cache, each holding its own copy "
        "of every model it serves, as the image's model server runs SAGEMAKER_NUM_MODEL_WORKERS processes per "
        "model (default 1) [ENDPOINT_WORKERS, SAGEMAKER_NUM_MODEL_WORKERS]",
    )
    parser.add_argument(
        "--inline-predict-seconds",
        type=float,
        help="predict on the event loop when a model's recent predictions took less than this (default 0.002; "
        "0 = always in the predict pool) [ENDPOINT_INLINE_PREDICT_SECONDS]",
    )
    parser.add_argument(
        "--body-read-timeout-seconds",
        type=float,
        help="answer 408 and close when a body has not arrived by then (default 10) "
        "[ENDPOINT_BODY_READ_TIMEOUT_SECONDS]",
    )
    parser.add_argument(
        "--model-load-timeout-seconds",
        type=float,
        help="a model load (download + model_fn) still running after this fails (default 120) "
        "[ENDPOINT_MODEL_LOAD_TIMEOUT_SECONDS]",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    overrides: dict[str, Any] = {
        "host": args.host,
        "port": args.port,
        "endpoint_name": args.endpoint_name,
        "model_data_url": args.model_data_url,
        "cache_dir": args.cache_dir,
        "max_models": args.max_models,
        "max_memory_bytes": args.max_memory_bytes,
        "model_cache_setting": args.model_cache_setting,
        "model_load_wait_seconds": args.model_load_wait_seconds,
        "preload_modules": tuple(args.preload) if args.preload is not None else None,
        "workers": args.workers,
        "inline_predict_seconds": args.inline_predict_seconds,
        "body_read_timeout_seconds": args.body_read_timeout_seconds,
        "model_load_timeout_seconds": args.model_load_timeout_seconds,
        "image_version": args.image_version,
        "serving": args.serving,
        "container_workers": args.container_workers,
    }
    environ = os.environ if environ is None else environ
    try:
        config = EndpointConfig.from_env(environ, **overrides)
        # Managed serving imports the program here once, so a broken program (or an unknown image tag) fails
        # before anything is bound or forked. In dense serving the container imports it (and fails with exit 2).
        program = (
            None
            if config.serving == "dense"
            else InferenceProgram.from_file(config.program_path, toolkit.for_image(config.image_version))
        )
    except (ValueError, OSError, ImportError) as error:
        print(f"endpoint: {error}", file=sys.stderr)
        return 2
    try:
        # Otherwise the first model load of the process pays for importing sklearn (~0.7 s here).
        for module in config.preload_modules if program is not None else ():
            importlib.import_module(module)
    except ImportError as error:
        print(f"endpoint: cannot preload {error.name}: {error}", file=sys.stderr)
        return 2
    # Bind before serving, so port 0 works and the announced URL is the real one.
    try:
        sock = inherited_socket(args.fd) if args.fd is not None else listening_socket(config.host, config.port)
    except OSError as error:
        where = f"file descriptor {args.fd}" if args.fd is not None else f"{config.host}:{config.port}"
        print(f"endpoint: cannot listen on {where}: {error}", file=sys.stderr)
        return 2
    host, port = sock.getsockname()[:2]
    if program is None:
        serving = f"serving dense: the SageMaker side in front of `python {' '.join(IMAGE_COMMAND[1:])}`"
    else:
        serving = f"program {config.program_path}, workers {config.workers}, {program.stack.describe()}"
    announce = (
        f"endpoint {config.endpoint_name} listening on http://{host}:{port} (model data {config.model_data_url}, "
        f"cache {config.model_cache_setting}, {serving})"
    )
    if config.workers == 1:
        return _serve(config, sock, announce, exit_with_parent=args.exit_with_parent, environ=environ)
    return _supervise(config, sock, announce, exit_with_parent=args.exit_with_parent)


def _serve(
    config: EndpointConfig,
    sock: socket.socket,
    announce: str | None,
    *,
    exit_with_parent: bool,
    environ: Mapping[str, str] | None = None,
) -> int:
    """Run one server process on ``sock`` until SIGINT/SIGTERM (or its parent dies); 1 if it never served
    or its container gave up (dense serving)."""
    try:
        app = create_app(config, environ=environ)
    except (ValueError, OSError, ImportError) as error:
        print(f"endpoint: {error}", file=sys.stderr)
        return 2
    # Everything built so far lives as long as the process: keep it out of the collector's generations, so an
    # automatic full collection during serving walks only what requests allocate (and, after a fork, does
    # not write to shared pages).
    gc.freeze()
    announced = (lambda: log.info("%s", announce)) if announce else None
    server = SocketServer(server_config(app), sock, on_started=announced)
    stops = ignore_stop_signals()
    if exit_with_parent:
        server.stop_with_parent()
    runtime = app.state.runtime
    if isinstance(runtime, DenseRuntime):
        runtime.on_failure.append(server.stop)
    started = server.serve_forever()
    log.info("endpoint %s stopped%s", config.endpoint_name, f" by signal {stops[0]}" if stops else "")
    if isinstance(runtime, DenseRuntime) and runtime.failure:
        log.error("endpoint %s stopped: %s", config.endpoint_name, runtime.failure)
        return 1
    return 0 if started else 1


# A worker that dies this many times within the window stops the whole endpoint (a crash loop).
_MAX_RESTARTS = 5
_RESTART_WINDOW_SECONDS = 60.0


def _supervise(config: EndpointConfig, sock: socket.socket, announce: str, *, exit_with_parent: bool) -> int:
    """Fork ``config.workers`` server processes on the shared socket; restart one that dies; stop them all on a signal.

    Forked after the program and preloads are imported, so workers share those pages too. Every worker
    gets the same disk cache (a temporary one is made here when none is configured), so a model is
    downloaded once and its memory-mapped files are shared through the page cache.
    """
    temporary = config.cache_dir is None
    if temporary:
        config = dataclasses.replace(config, cache_dir=Path(tempfile.mkdtemp(prefix="endpoint-cache-")))
    # Forked after everything built so far: keep it out of the collector's generations (shared pages).
    gc.freeze()
    try:
        code, stopped_by = supervise_workers(
            config.workers,
            lambda index: _serve(config, sock, None, exit_with_parent=True),
            logger=log,
            exit_with_parent=exit_with_parent,
            on_started=lambda: log.info("%s", announce),
            max_restarts=_MAX_RESTARTS,
            restart_window_seconds=_RESTART_WINDOW_SECONDS,
        )
    finally:
        sock.close()
        if temporary and config.cache_dir is not None:
            shutil.rmtree(config.cache_dir, ignore_errors=True)
    log.info(
        "endpoint %s stopped%s", config.endpoint_name, f" by signal {stopped_by}" if stopped_by is not None else ""
    )
    return code


if __name__ == "__main__":
    sys.exit(main())
