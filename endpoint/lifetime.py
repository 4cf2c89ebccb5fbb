"""Stopping a server process when its parent dies: one watcher for the endpoint and the local stack's children.

It lives in ``endpoint`` (stdlib only) because ``local`` may import ``endpoint`` but not the other way round.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

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
