"""The SageMaker side's container client over real sockets, against scripted servers.

Each server answers from a script (what to send per request, and whether to hang up), so the client's
keep-alive reuse, its one retry of a request a closed connection never delivered, and its deadlines are
shown on the wire.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from endpoint.container_client import ContainerClient, ContainerTimeout, ContainerUnreachable

Script = Callable[[int, bytes], Awaitable[bytes | None]]  # (request number, request head) -> bytes, or None: hang up


def ok(body: bytes = b'{"ok": true}', extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%s\r\n%s" % (
        len(body),
        extra,
        body,
    )


async def serve(script: Script, *, hang_up_after_answer: bool = False) -> tuple[asyncio.Server, list[int]]:
    """A server that reads each request head (and its body) and answers it as ``script`` says.

    Returns the server and the list of connection numbers each request arrived on.
    """
    connections: list[int] = []
    requests = 0
    opened = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal requests, opened
        opened += 1
        connection = opened
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":")[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length")
                    ),
                    0,
                )
                await reader.readexactly(length)
                requests += 1
                connections.append(connection)
                answer = await script(requests, head)
                if answer is None:
                    break
                writer.write(answer)
                await writer.drain()
                if hang_up_after_answer:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, connections


def port_of(server: asyncio.Server) -> int:
    return int(server.sockets[0].getsockname()[1])


def test_answers_are_parsed_and_connections_kept_alive() -> None:
    async def scenario() -> None:
        async def script(number: int, head: bytes) -> bytes:
            assert head.startswith(b"POST /models/m/invoke HTTP/1.1\r\n")
            assert b"\r\naccept: text/csv\r\n" in head
            return ok(b"[%d]" % number)

        server, connections = await serve(script)
        client = ContainerClient("127.0.0.1", port_of(server))
        # When three requests are sent one after the other
        answers = [
            await client.request("POST", "/models/m/invoke", headers=[(b"accept", b"text/csv")], body=b"1,2", timeout=5)
            for _ in range(3)
        ]
        # Then each answer is read whole, and all three went over one connection
        assert [(answer.status, answer.body) for answer in answers] == [(200, b"[1]"), (200, b"[2]"), (200, b"[3]")]
        assert answers[0].header(b"content-type") == b"application/json"
        assert connections == [1, 1, 1]
        client.close()
        server.close()

    asyncio.run(scenario())


def test_a_request_on_a_connection_the_server_closed_while_idle_is_sent_again_on_a_new_one() -> None:
    async def scenario() -> None:
        async def script(number: int, head: bytes) -> bytes:
            return ok(b"[%d]" % number)

        # Given a server that hangs up each connection once it has answered, without saying so beforehand
        # (no "connection: close"), as a keep-alive timeout does while the connection sits in the pool
        server, connections = await serve(script, hang_up_after_answer=True)
        client = ContainerClient("127.0.0.1", port_of(server))
        assert (await client.request("GET", "/ping", timeout=5)).body == b"[1]"
        await asyncio.sleep(0.1)
        # When the next request is sent
        answer = await client.request("GET", "/ping", timeout=5)
        # Then it was delivered once, on a new connection, and answered
        assert answer.body == b"[2]"
        assert connections == [1, 2]
        server.close()

    asyncio.run(scenario())


def test_a_pooled_connection_dropped_before_any_answer_byte_is_retried_once_on_a_new_one() -> None:
    async def scenario() -> None:
        async def script(number: int, head: bytes) -> bytes | None:
            return None if number == 2 else ok(b"[%d]" % number)

        # Given a pooled connection the server drops as the second request arrives (before answering a byte)
        server, connections = await serve(script)
        client = ContainerClient("127.0.0.1", port_of(server))
        await client.request("GET", "/ping", timeout=5)
        # When that request is sent
        answer = await client.request("GET", "/ping", timeout=5)
        # Then it is sent once more, on a new connection, and that answer is returned
        assert answer.body == b"[3]"
        assert connections == [1, 1, 2]
        server.close()

    asyncio.run(scenario())


def test_a_server_that_hangs_up_mid_answer_is_unreachable_and_not_retried() -> None:
    async def scenario() -> None:
        async def script(number: int, head: bytes) -> bytes | None:
            return ok()[:20]

        server, connections = await serve(script, hang_up_after_answer=True)
        client = ContainerClient("127.0.0.1", port_of(server))
        # When the answer stops halfway and the connection closes
        with pytest.raises(ContainerUnreachable):
            await client.request("POST", "/models/m/invoke", body=b"1", timeout=2)
        # Then the request was sent once
        assert connections == [1]
        server.close()

    asyncio.run(scenario())


def test_no_answer_within_the_deadline_is_a_timeout() -> None:
    async def scenario() -> None:
        async def script(number: int, head: bytes) -> bytes:
            await asyncio.sleep(5)
            return ok()

        server, _ = await serve(script)
        client = ContainerClient("127.0.0.1", port_of(server))
        with pytest.raises(ContainerTimeout):
            await client.request("POST", "/models/m/invoke", body=b"1", timeout=0.3)
        server.close()

    asyncio.run(scenario())


def test_nobody_listening_is_unreachable() -> None:
    async def scenario() -> None:
        server, _ = await serve(lambda number, head: asyncio.sleep(0, ok()))
        port = port_of(server)
        server.close()
        await server.wait_closed()
        with pytest.raises(ContainerUnreachable, match="cannot connect"):
            await ContainerClient("127.0.0.1", port).request("GET", "/ping", timeout=2)

    asyncio.run(scenario())


def test_chunked_answers_are_read_whole() -> None:
    async def scenario() -> None:
        async def script(number: int, head: bytes) -> bytes:
            head = b"HTTP/1.1 500 Internal Server Error\r\ntransfer-encoding: chunked\r\n\r\n"
            return head + b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"

        server, _ = await serve(script)
        client = ContainerClient("127.0.0.1", port_of(server))
        answer = await client.request("POST", "/models/m/invoke", body=b"1", timeout=2)
        assert (answer.status, answer.text()) == (500, "hello world")
        server.close()

    asyncio.run(scenario())
