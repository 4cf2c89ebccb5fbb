"""Reading an ASGI request body in chunks within a size limit: the loop of both invocation paths, the
endpoint's (``endpoint.invocations``) and the dense container's (``container.bodies``).

Each caller keeps its own deadline and its own error for a body too large; stdlib only (the container
image copies it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from endpoint.errors import ClientGone

Receive = Any


async def receive_body(
    receive: Receive,
    limit: int,
    too_large: Callable[[int, int], Exception],
    message: dict[str, Any] | None = None,
) -> bytes:
    """The whole body, from ``message`` (the first one, if already taken) and then ``receive()``.

    ``too_large(size, limit)`` is raised as soon as the body passes ``limit`` bytes, :class:`ClientGone`
    when the caller disconnects first.
    """
    if message is None:
        message = await receive()
    if message["type"] == "http.disconnect":
        raise ClientGone()
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        if len(body) > limit:
            raise too_large(len(body), limit)
        return body
    chunks = [body]
    total = len(body)
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        chunk = message.get("body", b"")
        total += len(chunk)
        if total > limit:
            raise too_large(total, limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
