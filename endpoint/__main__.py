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
from endpoint.config import EndpointConfig, settings
from endpoint.http import SocketServer, server_config
from endpoint.instance import IMAGE_COMMAND
from endpoint.lifetime import ignore_stop_signals, supervise_workers
from endpoint.program import InferenceProgram
from endpoint.sockets import inherited_socket, listening_socket

log = logging.getLogger("endpoint")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m endpoint", description=__doc__)
    add_setting_options(parser)
    parser.add_argument(
        "--fd",
        type=int,
        help="serve on this inherited, already listening socket instead of binding --host/--port "
        "(how the local stack starts it: the port is known before the process exists)",
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument(
        "--exit-with-parent",
        action="store_true",
        help="stop when the launching process dies (a supervisor killed with SIGKILL leaves nothing behind)",
    )
    return parser.parse_args(argv)


def add_setting_options(parser: argparse.ArgumentParser) -> None:
    """One option per ``EndpointConfig`` field declared with one: its help, default and variables from there."""
    for name, (spec, default) in settings().items():
        if spec.option is None:
            continue
        shown = spec.default_text if spec.default_text is not None else str(default)
        words = [spec.help, *([f"(default {shown})"] if shown else []), f"[{', '.join(spec.variables)}]"]
        parser.add_argument(
            spec.option,
            dest=name,
            # Numbers and paths are checked by argparse; the rest by EndpointConfig, whose errors name the setting.
            type=spec.convert if spec.convert in (int, float, Path) and not spec.many else str,
            choices=spec.choices,
            nargs="*" if spec.many else None,
            help=" ".join(words),
        )


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    overrides: dict[str, Any] = {name: getattr(args, name) for name, (spec, _) in settings().items() if spec.option}
    if args.preload_modules is not None:
        overrides["preload_modules"] = tuple(args.preload_modules)
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
    temporary = None
    if config.cache_dir is None:
        temporary = Path(tempfile.mkdtemp(prefix="endpoint-cache-"))
        config = dataclasses.replace(config, cache_dir=temporary)
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
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)
    log.info(
        "endpoint %s stopped%s", config.endpoint_name, f" by signal {stopped_by}" if stopped_by is not None else ""
    )
    return code


if __name__ == "__main__":
    sys.exit(main())
