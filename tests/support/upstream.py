"""A scripted upstream for adapter tests: a real aiohttp server on a free loopback port.

Each test queues the answers it wants (`reply`, `reply_stream`, `drop`) and reads back what the
adapter sent (`requests`). It runs in its own thread and event loop, so both async tests and a
gateway served by `live_server` can call it.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

__all__ = ["Recorded", "ScriptedUpstream", "scripted_upstream"]


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    peer: tuple[str, int] | None = None
    disconnected: threading.Event = field(default_factory=threading.Event)

    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class _Answer:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    chunks: Sequence[bytes] | None = None  # streamed, in this order
    delay: float = 0.0  # before the headers
    chunk_delay: float = 0.0
    drop_after: int | None = None  # chunks sent before the connection is cut
    hang: float = 0.0  # after the chunks, before ending (or dropping)


class ScriptedUpstream:
    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self._answers: deque[_Answer] = deque()
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # ---- scripting -----------------------------------------------------------------------

    def reply(
        self,
        body: object = None,
        *,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        raw: bytes | None = None,
        delay: float = 0.0,
    ) -> None:
        payload = raw if raw is not None else orjson.dumps(body)
        hdrs = {"Content-Type": "application/json", **(headers or {})}
        self._answers.append(_Answer(status, payload, hdrs, delay=delay))

    def reply_stream(
        self,
        events: Sequence[bytes],
        *,
        drop_after: int | None = None,
        chunk_delay: float = 0.0,
        hang: float = 0.0,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        hdrs = {"Content-Type": "text/event-stream", **(headers or {})}
        self._answers.append(
            _Answer(
                200,
                b"",
                hdrs,
                chunks=list(events),
                drop_after=drop_after,
                chunk_delay=chunk_delay,
                hang=hang,
            )
        )

    # ---- server --------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        recorded = Recorded(
            request.method,
            request.path,
            dict(request.query),
            {k.lower(): v for k, v in request.headers.items()},
            await request.read(),
            request.transport.get_extra_info("peername") if request.transport else None,
        )
        self.requests.append(recorded)
        answer = (
            self._answers.popleft() if self._answers else _Answer(500, b'{"error":"unscripted"}')
        )
        try:
            if answer.delay:
                await asyncio.sleep(answer.delay)
            if answer.chunks is None:
                return web.Response(status=answer.status, body=answer.body, headers=answer.headers)
            response = web.StreamResponse(status=answer.status, headers=answer.headers)
            await response.prepare(request)
            for index, chunk in enumerate(answer.chunks):
                if answer.drop_after is not None and index >= answer.drop_after:
                    break
                await response.write(chunk)
                if answer.chunk_delay:
                    await asyncio.sleep(answer.chunk_delay)
            if answer.hang:
                await asyncio.sleep(answer.hang)
            if answer.drop_after is not None:
                assert request.transport is not None
                request.transport.abort()  # cut the connection mid-stream
                return response
            await response.write_eof()
            return response
        except (asyncio.CancelledError, ConnectionResetError):
            recorded.disconnected.set()
            raise

    def start(self) -> ScriptedUpstream:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _shutdown(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()


@contextmanager
def scripted_upstream() -> Iterator[ScriptedUpstream]:
    server = ScriptedUpstream().start()
    try:
        yield server
    finally:
        server.stop()


def sse(*payloads: object, event: str | None = None) -> list[bytes]:
    """`data:` events (dicts are JSON-encoded, bytes/str sent as they are)."""
    out = []
    for payload in payloads:
        data = payload if isinstance(payload, bytes | str) else orjson.dumps(payload).decode()
        if isinstance(data, bytes):
            data = data.decode()
        prefix = f"event: {event}\n" if event else ""
        out.append(f"{prefix}data: {data}\n\n".encode())
    return out
