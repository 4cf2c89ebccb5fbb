"""The bare-Starlette ceiling (``bench/peers.py``'s app) in N processes, laid out as the container's workers.

The container binds one ``SO_REUSEPORT`` socket per worker on its port and forks the workers; so does
this, so the ceiling and the container spread connections the same way and "as many processes as
cores" means the same thing for both. Each process is stock uvicorn + httptools + uvloop.

    PYTHONPATH=. python bench/density_ceiling.py --port 8080 --workers 2
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import sys
from collections.abc import Sequence

from bench.peers import ceiling_app


def reuseport_sockets(host: str, port: int, count: int) -> list[socket.socket]:
    sockets: list[socket.socket] = []
    for _ in range(count):
        # IPPROTO_TCP explicitly: asyncio then sets TCP_NODELAY on accepted connections (endpoint/sockets.py).
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(2048)
        port = sock.getsockname()[1]
        sockets.append(sock)
    return sockets


def serve(sock: socket.socket) -> None:
    import uvicorn

    config = uvicorn.Config(ceiling_app(), http="httptools", loop="uvloop", log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    sockets = reuseport_sockets(args.host, args.port, args.workers)
    if args.workers == 1:
        serve(sockets[0])
        return 0
    children = []
    for index, sock in enumerate(sockets):
        pid = os.fork()
        if pid == 0:
            for other in sockets[:index] + sockets[index + 1 :]:
                other.close()
            try:
                serve(sock)
            finally:
                os._exit(0)
        children.append(pid)

    def stop(number: int, frame: object) -> None:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for _ in children:
        with contextlib.suppress(ChildProcessError):
            os.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
