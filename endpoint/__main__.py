"""``python -m endpoint``: run the local multi-model endpoint (options in docs/endpoint.md)."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import uvicorn

from endpoint.app import create_app
from endpoint.config import EndpointConfig
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
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument(
        "--exit-with-parent",
        action="store_true",
        help="stop when the launching process dies (a supervisor killed with SIGKILL leaves nothing behind)",
    )
    parser.add_argument(
        "--preload",
        nargs="*",
        default=os.environ.get("ENDPOINT_PRELOAD_MODULES", "sklearn.ensemble").split(),
        help="modules imported at boot, as the scikit-learn container does (default sklearn.ensemble) "
        "[ENDPOINT_PRELOAD_MODULES]",
    )
    return parser.parse_args(argv)


class _Server(uvicorn.Server):
    """Logs the one startup line once the app is ready to serve."""

    def __init__(self, config: uvicorn.Config, announce: str) -> None:
        super().__init__(config)
        self._announce = announce

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if not self.should_exit:
            log.info("%s", self._announce)


def _stop_when_orphaned(server: uvicorn.Server, interval_seconds: float = 0.5) -> None:
    """Ask uvicorn for its graceful stop once the parent process is gone (we are re-parented)."""
    parent = os.getppid()

    def watch() -> None:
        while not server.should_exit:
            if os.getppid() != parent:
                log.info("parent process %d is gone; stopping", parent)
                server.should_exit = True
                return
            time.sleep(interval_seconds)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


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
        "image_version": args.image_version,
    }
    try:
        config = EndpointConfig.from_env(os.environ if environ is None else environ, **overrides)
        app = create_app(config)
    except (ValueError, OSError, ImportError) as error:
        print(f"endpoint: {error}", file=sys.stderr)
        return 2
    try:
        # Otherwise the first model load of the process pays for importing sklearn (~0.7 s here).
        for module in args.preload:
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
    url = f"http://{host}:{port}"
    announce = (
        f"endpoint {config.endpoint_name} listening on {url} (model data {config.model_data_url}, "
        f"program {config.program_path}, cache {config.model_cache_setting}, "
        f"{app.state.runtime.program.stack.describe()})"
    )
    server = _Server(
        uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=10), announce=announce
    )
    # uvicorn handles SIGINT/SIGTERM (stop accepting, finish in-flight requests, run lifespan shutdown),
    # then re-raises the signal to the handlers it found: make those no-ops so a requested stop exits 0.
    stops: list[int] = []
    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop_signal, lambda number, frame: stops.append(number))
    if args.exit_with_parent:
        _stop_when_orphaned(server)
    server.run(sockets=[sock])
    log.info("endpoint %s stopped%s", config.endpoint_name, f" by signal {stops[0]}" if stops else "")
    return 0


if __name__ == "__main__":
    sys.exit(main())
