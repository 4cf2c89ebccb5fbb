"""A server process's lifetime: stopping when its parent dies (one watcher for the endpoint and the local
stack's children), whether a process is alive, stop signals, and the forking supervisor of ``python -m endpoint``
and ``python -m container``.

It lives in ``endpoint`` (stdlib only; the container image copies it) because ``local`` may import ``endpoint``
but not the other way round.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


def watch_parent(
    on_orphaned: Callable[[], None], *, done: Callable[[], bool] = lambda: False, interval_seconds: float = 0.5
) -> threading.Thread:
    """Call ``on_orphaned`` once the parent process is gone (we were re-parented), unless ``done()`` first.

    A supervisor killed with SIGKILL cannot stop its children; each child watching its parent
    stops on its own, so nothing (and no port) outlives the supervisor.
    """
    parent = os.getppid()

    def watch() -> None:
        while not done():
            if os.getppid() != parent:
                log.info("parent process %d is gone; stopping", parent)
                on_orphaned()
                return
            time.sleep(interval_seconds)

    thread = threading.Thread(target=watch, name="exit-with-parent", daemon=True)
    thread.start()
    return thread


def process_alive(pid: int) -> bool:
    """Whether a process with this id exists (one owned by another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def ignore_stop_signals() -> list[int]:
    """Make SIGINT/SIGTERM no-ops that are only noted; the list of the signals received.

    uvicorn handles SIGINT/SIGTERM (stop accepting, finish in-flight requests, run lifespan shutdown),
    then re-raises the signal to the handlers it found: with these, a requested stop exits 0.
    """
    stops: list[int] = []
    for stop_signal in _STOP_SIGNALS:
        signal.signal(stop_signal, lambda number, frame: stops.append(number))
    return stops


def supervise_workers(
    count: int,
    serve: Callable[[int], int],
    *,
    logger: logging.Logger,
    exit_with_parent: bool,
    on_started: Callable[[], None] | None = None,
    max_restarts: int = 5,
    restart_window_seconds: float = 60.0,
) -> tuple[int, int | None]:
    """Fork ``count`` workers, each running ``serve(index)`` (its exit code); restart one that dies; stop them
    all on SIGINT/SIGTERM (or when the parent dies, with ``exit_with_parent``).

    A worker that dies more than ``max_restarts`` times within the window stops them all (a crash loop):
    returns the exit code (1 then, else 0) and the stop signal received, if any. ``on_started`` runs once
    every worker is forked.
    """
    workers: dict[int, int] = {}
    stopping: list[int] = []
    restarts: list[float] = []

    def start(index: int) -> None:
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                for stop_signal in _STOP_SIGNALS:
                    signal.signal(stop_signal, signal.SIG_DFL)
                code = serve(index)
            finally:
                os._exit(code)
        workers[pid] = index

    def stop(number: int, frame: Any) -> None:
        stopping.append(number)
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    for stop_signal in _STOP_SIGNALS:
        signal.signal(stop_signal, stop)
    for index in range(count):
        start(index)
    if on_started is not None:
        on_started()
    if exit_with_parent:
        watch_parent(lambda: stop(signal.SIGTERM, None), done=lambda: bool(stopping))
    code = 0
    while workers:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        index = workers.pop(pid, -1)
        if index < 0 or stopping:
            continue
        now = time.monotonic()
        restarts[:] = [at for at in restarts if now - at < restart_window_seconds] + [now]
        logger.error("worker %d (pid %d) died with status %d", index, pid, os.waitstatus_to_exitcode(status))
        if len(restarts) > max_restarts:
            logger.error("workers died %d times within %g s; stopping", len(restarts), restart_window_seconds)
            code = 1
            stop(signal.SIGTERM, None)
            continue
        start(index)
    return code, stopping[0] if stopping else None
