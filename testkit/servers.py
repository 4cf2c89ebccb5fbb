"""Servers for tests and benchmarks: an ASGI app in a thread, a child's base URL, free ports, wrk."""

from __future__ import annotations

import contextlib
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

from endpoint.http import SocketServer, server_config
from endpoint.sockets import listening_socket

LOCALHOST = "127.0.0.1"


def free_port() -> int:
    """A port free right now: for "nothing listens there" and servers that cannot inherit a socket.

    Another process may take it before it is used (a small race, accepted there); a server this
    project starts binds :func:`endpoint.sockets.listening_socket` on port 0 instead.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOCALHOST, 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def serve_in_thread(app: Any, host: str = LOCALHOST, port: int = 0) -> Iterator[str]:
    """Run ``app`` under uvicorn in a daemon thread; yields its base URL; shuts it down (lifespan too).

    The socket is bound here, before uvicorn starts, so port 0 needs no free-port guess that
    another process could take first.
    """
    sock = listening_socket(host, port)
    port = sock.getsockname()[1]
    server = SocketServer(server_config(app, timeout_graceful_shutdown=5), sock)
    thread = threading.Thread(target=server.serve_forever, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"uvicorn did not start on {host}:{port}")
        time.sleep(0.01)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()
        thread.join(timeout=15)
        sock.close()


def startup_url(process: subprocess.Popen[str], timeout: float = 60) -> str:
    """Read a child server's output until its ``listening on http://127.0.0.1:PORT`` line; its base URL.

    ``python -m endpoint`` announces itself so (as do the bench's peers). A child that exits or stays
    silent past ``timeout`` is killed, and the error carries what it printed.
    """
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        seen.append(line)
        match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
        if match:
            return match.group(1)
    process.kill()
    raise RuntimeError("server did not start; its output: " + "".join(seen))


def metric_value(base_url: str, name: str, **labels: str) -> float:
    """One sample from a server's ``/metrics`` (0.0 if the series does not exist yet)."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{base_url}/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(key) == value for key, value in labels.items()):
                return float(sample.value)
    return 0.0


def wrk_binary() -> str:
    """The ``wrk`` executable on PATH; FileNotFoundError naming the target that installs it."""
    found = shutil.which("wrk")
    if found is None:
        raise FileNotFoundError("wrk is not installed: `make wrk` installs the Debian package (`make bench` runs it)")
    return found
