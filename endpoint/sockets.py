"""Listening sockets for the endpoint: bound before the server starts, or inherited from a parent."""

from __future__ import annotations

import socket


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket listening on ``host:port``; port 0 lets the OS pick, with no race for the port.

    ``IPPROTO_TCP`` must be explicit: asyncio only sets TCP_NODELAY on accepted sockets whose
    ``proto`` says TCP, and without it every response waits ~40 ms for the client's delayed ACK.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    return sock


def inherited_socket(fd: int) -> socket.socket:
    """The listening socket a supervisor bound and passed down as file descriptor ``fd``.

    The supervisor knows the port before this process starts, so it can tell other components
    where the endpoint is without waiting for it or guessing a free port.
    """
    sock = socket.socket(fileno=fd)
    if sock.type != socket.SOCK_STREAM:
        sock.detach()
        raise OSError(f"file descriptor {fd} is not a stream socket")
    return sock
