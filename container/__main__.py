"""``python -m container [serve]``: the image's serve command (SageMaker runs ``docker run IMAGE serve``).

Options override the environment (docs/container.md lists both). The inference program is imported
and the listening sockets are bound before any worker starts, so a broken program or a taken port
fails at once (exit 2) and the announced URL is live from the first line. With one worker the server
runs in this process; with more, this process forks them and restarts one that dies. Each worker
gets its own ``SO_REUSEPORT`` socket on the port (the kernel spreads connections across them), made
here before the fork and kept, so a restarted worker takes over its queue; an inherited ``--fd``
socket is shared by all workers instead.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from container.app import create_app
from container.programs import Programs
from container.registry import JOURNAL, LOCK
from container.settings import ContainerSettings
from endpoint.http import SocketServer, server_config
from endpoint.lifetime import ignore_stop_signals, supervise_workers
from endpoint.sockets import inherited_socket, listening_socket

log = logging.getLogger("container")
# A worker that dies this many times within the window stops the container (a crash loop).
_MAX_RESTARTS = 5
_RESTART_WINDOW_SECONDS = 60.0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m container", description=__doc__)
    parser.add_argument("command", nargs="?", default="serve", choices=["serve"], help="SageMaker's serve (default)")
    parser.add_argument("--host", help="bind address (default 0.0.0.0) [CONTAINER_HOST]")
    parser.add_argument(
        "--port", type=int, help="port (default 8080; 0 = a free one) [CONTAINER_PORT, SAGEMAKER_BIND_TO_PORT]"
    )
    parser.add_argument("--fd", type=int, help="serve on this inherited, already listening socket instead")
    parser.add_argument(
        "--workers",
        type=int,
        help="server processes (default: the CPUs the container may use) "
        "[CONTAINER_WORKERS, SAGEMAKER_MODEL_SERVER_WORKERS]",
    )
    parser.add_argument(
        "--model-root",
        type=Path,
        help="models must lie under this directory (default /opt/ml/models) [CONTAINER_MODEL_ROOT]",
    )
    parser.add_argument("--state-dir", type=Path, help="the workers' shared registry (default: a temporary one)")
    parser.add_argument(
        "--memory-budget-bytes",
        type=int,
        help="bytes the loaded models may take (default: the cgroup limit, else CONTAINER_MEMORY_BYTES, less headroom) "
        "[CONTAINER_MEMORY_BUDGET_BYTES]",
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument(
        "--exit-with-parent", action="store_true", help="stop when the launching process dies (local supervisors)"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        settings = ContainerSettings.from_env(
            os.environ if environ is None else environ,
            host=args.host,
            port=args.port,
            workers=args.workers,
            model_root=args.model_root,
            state_dir=args.state_dir,
            budget=args.memory_budget_bytes,
        )
        programs = Programs.from_file(settings.program_path, allow_model_code=settings.allow_model_code)
    except (ValueError, OSError, ImportError) as error:
        print(f"container: {error}", file=sys.stderr)
        return 2
    try:
        sockets = _sockets(settings, args.fd)
    except OSError as error:
        where = f"file descriptor {args.fd}" if args.fd is not None else f"{settings.host}:{settings.port}"
        print(f"container: cannot listen on {where}: {error}", file=sys.stderr)
        return 2
    host, port = sockets[0].getsockname()[:2]
    state_dir, temporary = _state_dir(settings.state_dir)
    # Printed whatever the log level: supervisors (and tests) wait for this line to know the URL.
    print(
        f"container listening on http://{host}:{port} (workers {settings.workers}, memory budget "
        f"{settings.memory_budget.bytes} bytes: {settings.memory_budget.source}; model root {settings.model_root}; "
        f"program {settings.program_path}{', model code allowed' if settings.allow_model_code else ''})",
        file=sys.stderr,
        flush=True,
    )
    try:
        # Everything built so far lives as long as the process; after a fork the collector must not
        # write to these (shared) pages.
        gc.freeze()
        if settings.workers == 1:
            return _serve(settings, programs, state_dir, sockets[0], exit_with_parent=args.exit_with_parent)
        return _supervise(settings, programs, state_dir, sockets, exit_with_parent=args.exit_with_parent)
    finally:
        for sock in sockets:
            sock.close()
        if temporary:
            shutil.rmtree(state_dir, ignore_errors=True)


def _sockets(settings: ContainerSettings, fd: int | None) -> list[socket.socket]:
    """One listening socket per worker (SO_REUSEPORT on one port), or the inherited one for all."""
    if fd is not None:
        shared = inherited_socket(fd)
        return [shared] * settings.workers
    if settings.workers == 1:
        return [listening_socket(settings.host, settings.port)]
    sockets: list[socket.socket] = []
    port = settings.port
    try:
        for _ in range(settings.workers):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((settings.host, port))
            sock.listen(2048)
            port = sock.getsockname()[1]  # port 0: the others join the port the first one got
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _state_dir(configured: Path | None) -> tuple[Path, bool]:
    """The registry's directory, emptied: a container starts with no model loaded."""
    if configured is None:
        return Path(tempfile.mkdtemp(prefix="container-state-")), True
    configured.mkdir(parents=True, exist_ok=True)
    for name in (JOURNAL, LOCK):
        with contextlib.suppress(FileNotFoundError):
            (configured / name).unlink()
    return configured, False


def _serve(
    settings: ContainerSettings, programs: Programs, state_dir: Path, sock: socket.socket, *, exit_with_parent: bool
) -> int:
    """One server process on ``sock`` until SIGINT/SIGTERM (or its parent dies)."""
    app = create_app(settings, programs, state_dir)
    server = SocketServer(server_config(app), sock)
    stops = ignore_stop_signals()
    if exit_with_parent:
        server.stop_with_parent()
    server.serve_forever()
    log.info("worker %d stopped%s", os.getpid(), f" by signal {stops[0]}" if stops else "")
    return 0


def _supervise(
    settings: ContainerSettings,
    programs: Programs,
    state_dir: Path,
    sockets: list[socket.socket],
    *,
    exit_with_parent: bool,
) -> int:
    """Fork one worker per socket; restart one that dies; stop them all on a signal."""

    def serve(index: int) -> int:
        for other, sock in enumerate(sockets):
            if other != index and sock is not sockets[index]:
                sock.close()
        return _serve(settings, programs, state_dir, sockets[index], exit_with_parent=True)

    code, stopped_by = supervise_workers(
        len(sockets),
        serve,
        logger=log,
        exit_with_parent=exit_with_parent,
        max_restarts=_MAX_RESTARTS,
        restart_window_seconds=_RESTART_WINDOW_SECONDS,
    )
    log.info("container stopped%s", f" by signal {stopped_by}" if stopped_by is not None else "")
    return code


if __name__ == "__main__":
    sys.exit(main())
