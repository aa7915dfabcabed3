"""A body read straight from ASGI's `receive` reads as Starlette's `request.body()` reads it."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.requests import ClientDisconnect, Request

from oneflow_ai.api.request_body import read_body


def _request(*messages: dict[str, Any]) -> tuple[Request, list[dict[str, Any]]]:
    pending = list(messages)

    async def receive() -> dict[str, Any]:
        return pending.pop(0)

    return Request({"type": "http", "method": "POST", "headers": []}, receive), pending


@pytest.mark.parametrize(
    "chunks",
    [[b'{"a": 1}'], [b""], [b'{"a"', b"", b": 1}"], [b"", b'{"a": 1}']],
)
async def test_a_body_reads_as_starlette_reads_it(chunks: list[bytes]) -> None:
    messages = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
        for i, chunk in enumerate(chunks)
    ]
    ours, left = _request(*messages)
    theirs, _ = _request(*messages)
    body = await read_body(ours)
    assert body == await theirs.body() == b"".join(chunks)
    assert left == []  # every message read, none past the last
    assert await ours.body() == body  # kept: read again from the request
    assert await read_body(ours) == body
    assert [chunk async for chunk in ours.stream()] == [body, b""]


async def test_a_body_without_its_body_key_is_empty() -> None:
    request, _ = _request({"type": "http.request"})
    assert await read_body(request) == b""


async def test_a_caller_gone_before_the_end_of_its_body() -> None:
    request, _ = _request(
        {"type": "http.request", "body": b"{", "more_body": True}, {"type": "http.disconnect"}
    )
    with pytest.raises(ClientDisconnect):
        await read_body(request)
    assert await request.is_disconnected()
