"""Serving over HTTP: uvicorn on a bound socket (:class:`SocketServer`, for every server here), and
the endpoint's httptools protocol, with each response sent in one write instead of two.

uvicorn writes a response's status line and headers when the app sends ``http.response.start`` and
the body when it sends ``http.response.body``: two ``send()`` system calls for every small answer.
Profiling the endpoint under ``wrk -c50`` put ~45 % of its CPU time in those two calls (syscalls are
expensive here). Writes made during one event-loop iteration are therefore held and handed to the
real transport together at the end of the iteration: one call per response, same bytes, same order.
Everything else (flow control, keep-alive, closing) is uvicorn's own.

A request that httptools cannot parse (an unknown or lower-case method, a request target of 64 KB or
more, a control character in a header, ...) never reaches the app: uvicorn answers it with a plain-text
``400 Invalid HTTP request received.``. An app whose wire protocol says otherwise provides
``unparsable_request(received, reason)`` (on a Starlette app: ``app.state.unparsable_request``);
:func:`server_config` then serves it with :class:`AnsweringParseErrors`, which sends that answer
instead and closes the connection.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, ClassVar, Protocol

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


class ParseErrorResponse(Protocol):
    """What a server answers a request its HTTP parser rejected (the connection is closed after it)."""

    @property
    def status(self) -> int: ...
    @property
    def headers(self) -> Sequence[tuple[str, str]]: ...
    @property
    def body(self) -> bytes: ...


@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: Sequence[tuple[str, str]]
    body: bytes


# (the bytes of the data chunk the parser failed on, the parser's reason) -> the answer
UnparsableAnswer = Callable[[bytes, str], ParseErrorResponse]
UNPARSABLE_HOOK = "unparsable_request"


class AnsweringParseErrors(CoalescingHttpToolsProtocol):
    """A coalescing protocol that answers unparsable requests with ``answer`` instead of uvicorn's text."""

    answer: ClassVar[UnparsableAnswer]
    _received: bytes = b""

    def data_received(self, data: bytes) -> None:
        self._received = data  # what the parser fails on, if it does: the answer may look at it
        super().data_received(data)

    def send_400_response(self, msg: str) -> None:
        # Called by uvicorn from its ``except httptools.HttpParserError`` block (after it logged a warning):
        # the exception names the reason.
        error = sys.exception()
        reason = str(error) if error is not None else msg
        response = type(self).answer(self._received, reason)
        phrase = HTTPStatus(response.status).phrase
        content = [f"HTTP/1.1 {response.status} {phrase}\r\n".encode("latin-1")]
        for default_name, default_value in self.server_state.default_headers:  # date (and server, when on)
            content.extend([default_name, b": ", default_value, b"\r\n"])
        for name, value in response.headers:
            content.append(f"{name}: {value}\r\n".encode("latin-1"))
        content.append(f"content-length: {len(response.body)}\r\nconnection: close\r\n\r\n".encode("latin-1"))
        content.append(response.body)
        self.transport.write(b"".join(content))
        self.transport.close()


def answering_parse_errors(answer: UnparsableAnswer) -> type[AnsweringParseErrors]:
    """The protocol class for ``uvicorn.Config(http=...)`` that answers unparsable requests with ``answer``."""

    class Answering(AnsweringParseErrors):
        pass

    Answering.answer = staticmethod(answer)
    return Answering


def unparsable_answer(app: Any) -> UnparsableAnswer | None:
    """``app``'s answer to requests the HTTP parser rejects, if its wire protocol has one."""
    hook = getattr(app, UNPARSABLE_HOOK, None) or getattr(getattr(app, "state", None), UNPARSABLE_HOOK, None)
    return hook if callable(hook) else None


def server_config(app: Any, **options: Any) -> uvicorn.Config:
    """The endpoint's uvicorn settings, for ``python -m endpoint`` and the in-process servers of tests alike.

    An app with an ``unparsable_request`` answer (:func:`unparsable_answer`) is served with a protocol that
    sends it; any other app gets uvicorn's own answer to unparsable requests.
    """
    answer = unparsable_answer(app)
    settings: dict[str, Any] = {
        # The fast stock stack (pinned in requirements): uvloop + httptools, with single-write responses.
        "loop": "uvloop",
        "http": CoalescingHttpToolsProtocol if answer is None else answering_parse_errors(answer),
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
