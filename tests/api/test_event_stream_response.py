"""`EventStreamResponse` driven as an ASGI server below spec 2.4 drives it (uvicorn): a caller
that goes away cancels the writing and the request ends quietly; a stream written to its end
leaves no cancellation behind, even when the disconnect arrives just after it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from oneflow_ai.api.responses import EventStreamResponse

SCOPE: dict[str, Any] = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}}


class Peer:
    """The server's side: what was sent, and a disconnect to deliver."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.gone = asyncio.Event()

    async def receive(self) -> dict[str, Any]:
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    def bodies(self) -> list[bytes]:
        return [m["body"] for m in self.sent if m["type"] == "http.response.body"]


async def test_a_stream_is_written_chunk_by_chunk_with_its_headers() -> None:
    async def content() -> AsyncIterator[bytes]:
        yield b"data: 1\n\n"
        yield b"data: 2\n\n"

    peer = Peer()
    await EventStreamResponse(content(), {"X-Test": "yes"})(SCOPE, peer.receive, peer.send)
    start = peer.sent[0]
    assert start["type"] == "http.response.start" and start["status"] == 200
    headers = dict(start["headers"])
    assert headers[b"content-type"] == b"text/event-stream; charset=utf-8"
    assert headers[b"x-test"] == b"yes" and b"content-length" not in headers
    assert peer.bodies() == [b"data: 1\n\n", b"data: 2\n\n", b""]
    assert peer.sent[-1]["more_body"] is False


async def test_a_caller_that_goes_away_cancels_the_writing() -> None:
    peer = Peer()
    closed = asyncio.Event()

    async def content() -> AsyncIterator[bytes]:
        try:
            yield b"data: 1\n\n"
            peer.gone.set()
            await asyncio.sleep(30)  # the provider is slow: the disconnect must not wait for it
            yield b"data: 2\n\n"
        finally:
            closed.set()

    task = asyncio.current_task()
    assert task is not None
    await asyncio.wait_for(EventStreamResponse(content(), {})(SCOPE, peer.receive, peer.send), 5)
    assert closed.is_set()
    assert peer.bodies() == [b"data: 1\n\n"]
    assert task.cancelling() == 0  # the cancellation was taken back: the request ends quietly
    await asyncio.sleep(0)  # and none is pending


async def test_a_disconnect_after_the_end_leaves_no_cancellation_behind() -> None:
    peer = Peer()

    async def content() -> AsyncIterator[bytes]:
        yield b"data: 1\n\n"

    async def send(message: dict[str, Any]) -> None:
        peer.sent.append(message)
        if not message.get("more_body", True):
            peer.gone.set()
            await asyncio.sleep(0)  # the watcher runs while the last message is written

    await EventStreamResponse(content(), {})(SCOPE, peer.receive, send)
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert peer.bodies() == [b"data: 1\n\n", b""]


async def test_a_cancellation_from_elsewhere_is_not_swallowed() -> None:
    peer = Peer()
    started = asyncio.Event()

    async def content() -> AsyncIterator[bytes]:
        started.set()
        await asyncio.sleep(30)
        yield b"never"

    response = EventStreamResponse(content(), {})
    task = asyncio.create_task(response(SCOPE, peer.receive, peer.send))
    await started.wait()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert task.cancelled()
