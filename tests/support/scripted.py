"""A real HTTP server whose answers a test scripts one request at a time.

`ScriptedUpstream` runs an aiohttp server on a free loopback port in the test's event loop.
Each request takes the next `Reply` from the script (or the default when it is empty), and
every request is recorded (method, path, headers, body), so a test can count the attempts a
client made and see what it sent.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import orjson
from aiohttp import web
from multidict import CIMultiDict

__all__ = ["Recorded", "Reply", "ScriptedUpstream", "scripted_upstream"]


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: bytes = b'{"ok": true}'
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before the status line
    chunks: tuple[bytes, ...] = ()  # a streamed body (sent after `body` is ignored)
    chunk_delay: float = 0.0
    drop_after_chunks: int | None = None  # close the connection after this many chunks
    drop: bool = False  # close the connection without answering

    @classmethod
    def json(cls, data: object, status: int = 200, **headers: str) -> Reply:
        return cls(status=status, body=orjson.dumps(data), headers=dict(headers))


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    headers: CIMultiDict[str]  # case-insensitive, as HTTP headers are
    body: bytes


class ScriptedUpstream:
    def __init__(self) -> None:
        self.script: deque[Reply] = deque()
        self.default = Reply()
        self.requests: list[Recorded] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    def add(self, *replies: Reply) -> None:
        self.script.extend(replies)

    def extend(self, replies: Iterable[Reply]) -> None:
        self.script.extend(replies)

    @property
    def count(self) -> int:
        return len(self.requests)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.requests.append(
            Recorded(request.method, request.path, CIMultiDict(request.headers), body)
        )
        reply = self.script.popleft() if self.script else self.default
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.drop:
            assert request.transport is not None
            request.transport.close()
            return web.Response()
        if not reply.chunks:
            return web.Response(
                status=reply.status,
                body=reply.body,
                headers={"Content-Type": "application/json", **reply.headers},
            )
        response = web.StreamResponse(status=reply.status, headers=reply.headers)
        response.content_type = "text/event-stream"
        await response.prepare(request)
        for index, chunk in enumerate(reply.chunks):
            if reply.drop_after_chunks is not None and index >= reply.drop_after_chunks:
                assert request.transport is not None
                request.transport.close()
                return response
            await response.write(chunk)
            if reply.chunk_delay:
                await asyncio.sleep(reply.chunk_delay)
        await response.write_eof()
        return response

    async def start(self) -> ScriptedUpstream:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@asynccontextmanager
async def scripted_upstream() -> AsyncIterator[ScriptedUpstream]:
    upstream = await ScriptedUpstream().start()
    try:
        yield upstream
    finally:
        await upstream.stop()
