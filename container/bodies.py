"""Reading a request body within a size limit and a deadline, straight from the ASGI ``receive``.

A declared ``Content-Length`` over the limit is refused before a byte is read; a chunked body is cut
off as soon as it passes the limit; a body that has not fully arrived by the deadline is answered 408
(and the connection closed, since the rest of it may still come). A body already there is taken without
arming the deadline at all.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

from container.errors import BadRequest, PayloadTooLarge, RequestTimeout
from endpoint.bodies import receive_body

Receive = Any


async def read_body(receive: Receive, declared: bytes | str | None, limit: int, timeout: float) -> bytes:
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise BadRequest("Content-Length must be an integer") from None
        if size > limit:
            raise too_large(size, limit)
    message = _ready(receive)
    if message is not None and message["type"] == "http.request" and not message.get("more_body", False):
        body: bytes = message.get("body", b"")
        if len(body) > limit:
            raise too_large(len(body), limit)
        return body
    try:
        async with asyncio.timeout(timeout):
            return await receive_body(receive, limit, too_large, message)
    except TimeoutError:
        raise RequestTimeout(f"The request body was not received within {timeout:g} s.") from None


def _ready(receive: Receive) -> dict[str, Any] | None:
    """The first message if ``receive()`` has it without waiting, else None (and nothing is consumed).

    A small body nearly always arrives with its headers, and arming the deadline's timer would cost more
    than the read. uvicorn's ``receive`` only waits for its message event before it takes the message,
    so a coroutine closed at that wait has taken nothing, and the timed read below starts afresh.
    """
    pending = receive()
    if not inspect.iscoroutine(pending):
        return None
    try:
        pending.send(None)
    except StopIteration as done:
        message: dict[str, Any] = done.value
        return message
    pending.close()
    return None


def too_large(size: int, limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"The request body is {size} bytes or more; at most {limit} are accepted.")
