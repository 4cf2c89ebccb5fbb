"""The SageMaker side's HTTP client for the model container: keep-alive connections, bounded waits.

SageMaker talks to a multi-model container over HTTP/1.1 on port 8080 (the contract's ``POST /models``,
``DELETE /models/{name}``, ``POST /models/{name}/invoke``, ``GET /ping``). Every InvokeEndpoint crosses
this hop, so the client is small: a pool of idle keep-alive connections, each request written in one
``write`` and its answer parsed by httptools (the parser uvicorn uses), a deadline on every request.

A request on a connection taken from the pool that fails before any byte of an answer arrived (the
container closed an idle connection just as the request left, or it restarted) is sent once more on a
new connection: the container never saw it. Anything else is the caller's to handle: a deadline gives
:class:`ContainerTimeout`, a container that cannot be reached or hangs up mid-answer
:class:`ContainerUnreachable`.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Sequence
from dataclasses import dataclass

import httptools

Headers = Sequence[tuple[bytes, bytes]]


class ContainerUnreachable(Exception):
    """No connection to the container, or it closed one before answering."""


class ContainerTimeout(Exception):
    """The container did not answer within the request's deadline."""


@dataclass(frozen=True, slots=True)
class Answer:
    """The container's response: status, headers (names lower-cased) and the whole body."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


class _Connection(asyncio.Protocol):
    """One keep-alive connection: one request at a time, its answer parsed as it arrives."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[Answer] | None = None
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._complete = False
        self.received_any = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.received_any = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as error:
            self._fail(ContainerUnreachable(f"the container sent an unparsable answer: {error}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self._complete:
            self._fail(ContainerUnreachable("the container closed the connection before answering"))

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.lower(), value))

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        self._complete = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
            waiter.set_result(Answer(self._parser.get_status_code(), self._headers, body))
        if not self._parser.should_keep_alive():
            self.close()

    # requests
    def send(self, request: bytes) -> asyncio.Future[Answer]:
        assert self.transport is not None
        self._waiter = asyncio.get_running_loop().create_future()
        self._headers = []
        self._body = []
        self._complete = False
        self.received_any = False
        self.transport.write(request)
        return self._waiter

    def expire(self) -> None:
        """The request's deadline passed with no (whole) answer."""
        self._fail(ContainerTimeout("no answer within the deadline"))
        self.close()

    def _fail(self, error: Exception) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)

    @property
    def reusable(self) -> bool:
        return not self.closed and self.transport is not None and not self.transport.is_closing()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class ContainerClient:
    """HTTP/1.1 to one container at ``host:port``; at most ``max_idle`` idle connections are kept."""

    def __init__(self, host: str, port: int, *, connect_timeout: float = 1.0, max_idle: int = 256) -> None:
        self.host = host
        self.port = port
        self._connect_timeout = connect_timeout
        self._max_idle = max_idle
        self._idle: list[_Connection] = []
        self._host_header = f"{host}:{port}".encode()

    async def request(
        self, method: str, path: str, *, headers: Headers = (), body: bytes = b"", timeout: float
    ) -> Answer:
        """Send one request and wait at most ``timeout`` seconds (connecting included) for the whole answer."""
        head = [
            f"{method} {path} HTTP/1.1\r\nhost: ".encode("latin-1"),
            self._host_header,
            b"\r\ncontent-length: ",
            str(len(body)).encode(),
            b"\r\n",
        ]
        for name, value in headers:
            head.extend((name, b": ", value, b"\r\n"))
        head.append(b"\r\n")
        head.append(body)
        request = b"".join(head)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            while self._idle:
                connection = self._idle.pop()
                if not connection.reusable:
                    continue
                try:
                    return await self._exchange(connection, request, deadline)
                except ContainerUnreachable:
                    if connection.received_any:
                        raise
                    # Closed by the container before it read this request: try a fresh connection.
            return await self._exchange(await self._connect(deadline), request, deadline)
        except ContainerTimeout:
            raise ContainerTimeout(f"{method} {path}: no answer from the container within {timeout:g} s") from None

    async def _exchange(self, connection: _Connection, request: bytes, deadline: float) -> Answer:
        # A timer rather than asyncio.timeout(): on this path, every microsecond is per request.
        timer = asyncio.get_running_loop().call_at(deadline, connection.expire)
        try:
            answer = await connection.send(request)
        except BaseException:
            connection.close()  # cancelled, failed or late mid-answer: the connection's state is unknown
            raise
        finally:
            timer.cancel()
        if connection.reusable and len(self._idle) < self._max_idle:
            self._idle.append(connection)
        else:
            connection.close()
        return answer

    async def _connect(self, deadline: float) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout_at(min(deadline, loop.time() + self._connect_timeout)):
                _, connection = await loop.create_connection(_Connection, self.host, self.port)
        except TimeoutError:
            if loop.time() >= deadline:
                raise ContainerTimeout("no connection before the deadline") from None
            raise ContainerUnreachable(
                f"cannot connect to the container at {self.host}:{self.port}: timed out"
            ) from None
        except OSError as error:
            raise ContainerUnreachable(f"cannot connect to the container at {self.host}:{self.port}: {error}") from None
        return connection

    def close(self) -> None:
        """Close every idle connection (connections in use close when their request ends)."""
        while self._idle:
            self._idle.pop().close()
