"""Serving over HTTP: uvicorn on a bound socket (:class:`SocketServer`, for every server here), and
the endpoint's httptools protocol, with each response sent in one write instead of two.

uvicorn writes a response's status line and headers when the app sends ``http.response.start`` and
the body when it sends ``http.response.body``: two ``send()`` system calls for every small answer.
Profiling the endpoint under ``wrk -c50`` put ~45 % of its CPU time in those two calls (syscalls are
expensive here). Writes made during one event-loop iteration are therefore held and handed to the
real transport together at the end of the iteration: one call per response, same bytes, same order.
Everything else (flow control, keep-alive, closing) is uvicorn's own.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from endpoint.lifetime import watch_parent


class _CoalescingTransport:
    """A transport whose writes within one loop iteration reach the real transport as one write."""

    __slots__ = ("_loop", "_pending", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(data)

    def _flush(self) -> None:
        if not self._pending:
            return
        data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        self._pending.clear()
        if not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """Pass as ``uvicorn.Config(http=...)``: uvicorn's httptools protocol over a coalescing transport."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(_CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]


def server_config(app: Any, **options: Any) -> uvicorn.Config:
    """The endpoint's uvicorn settings, for ``python -m endpoint`` and the in-process servers of tests alike."""
    settings: dict[str, Any] = {
        # The fast stock stack (pinned in requirements): uvloop + httptools, with single-write responses.
        "loop": "uvloop",
        "http": CoalescingHttpToolsProtocol,
        "log_level": "warning",
        "access_log": False,
        # Nothing sits in front of the endpoint: no X-Forwarded-* to trust, and no per-request cost for it.
        "proxy_headers": False,
        "lifespan": "on",
        "timeout_graceful_shutdown": 10,
    }
    settings.update(options)
    return uvicorn.Config(app, **settings)


class SocketServer(uvicorn.Server):
    """uvicorn serving on ``sock``, a socket bound (or inherited) before the server starts.

    Binding first makes port 0 race-free and lets a supervisor hand the socket down; the socket
    should be made with ``IPPROTO_TCP`` (``endpoint.sockets``) so asyncio sets TCP_NODELAY on
    accepted connections. ``on_started`` runs once the app is ready to serve (lifespan done).
    """

    def __init__(
        self, config: uvicorn.Config, sock: socket.socket, on_started: Callable[[], None] | None = None
    ) -> None:
        super().__init__(config)
        self.socket = sock
        self._on_started = on_started

    @property
    def port(self) -> int:
        return int(self.socket.getsockname()[1])

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if not self.should_exit and self._on_started is not None:
            self._on_started()

    def serve_forever(self) -> bool:
        """Serve until stopped (a signal, :meth:`stop`); whether the server had started at all."""
        self.run(sockets=[self.socket])
        return bool(self.started)

    def stop(self) -> None:
        """Ask for uvicorn's graceful stop (finish in-flight requests, run lifespan shutdown)."""
        self.should_exit = True

    def stop_with_parent(self) -> None:
        """Stop gracefully once the parent process is gone."""
        watch_parent(self.stop, done=lambda: bool(self.should_exit))
