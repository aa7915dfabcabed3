"""A request body read straight from ASGI's `receive`.

Starlette's `await request.body()` reads the body through `request.stream()`, an async
generator closed by a context manager: for the usual body of one message, several times the
cost of this loop. The body is kept on the request as Starlette keeps it, so a later
`request.body()` or `request.stream()` answers from it.
"""

from __future__ import annotations

from starlette.requests import ClientDisconnect, Request

__all__ = ["read_body"]


async def read_body(request: Request) -> bytes:
    """The whole body, as `await request.body()` gives it (`ClientDisconnect` when the caller
    goes away first)."""
    if hasattr(request, "_body"):
        return request._body
    receive = request.receive
    chunks: list[bytes] = []
    while True:
        message = await receive()
        kind = message["type"]
        if kind == "http.request":
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        elif kind == "http.disconnect":
            request._is_disconnected = True
            raise ClientDisconnect()
    request._stream_consumed = True
    body = request._body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    return body
