"""A steady mixed load over several gateway replicas: plain and streamed chat, from several
projects, each answer recorded with what the client saw (status, Retry-After, the credits
announced, whether it came whole) and how long it took."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from decimal import Decimal

import aiohttp

from tests.support.gateway_load import HANG_GUARD, StreamRead, post_chat, stream_chat

__all__ = ["MixedLoad", "Reply"]


@dataclass
class Reply:
    """One request as its client saw it."""

    n: int
    replica: int
    project: str
    stream: bool
    started: float  # time.monotonic()
    seconds: float = 0.0
    status: int = 0  # 0: no answer (connection refused or broken)
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    credits: Decimal | None = None  # announced: X-OneFlow-Credits, or the last stream event
    complete: bool = False  # a 200 the client saw whole

    @property
    def gateway_id(self) -> str | None:
        return self.headers.get("x-oneflow-request-id")


class MixedLoad:
    """`clients` clients, each sending one request after another (a short pause between),
    turning over the replicas, the projects (name -> API key) and plain/streamed."""

    def __init__(
        self, urls: list[str], keys: dict[str, str], clients: int, pause: float = 0.02
    ) -> None:
        self.urls = urls
        self.keys = keys
        self.clients = clients
        self.pause = pause
        self.replies: list[Reply] = []
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task

    def between(self, start: float, end: float) -> list[Reply]:
        return [r for r in self.replies if start <= r.started < end]

    async def _run(self) -> None:
        connector = aiohttp.TCPConnector(limit=self.clients, force_close=True)
        timeout = aiohttp.ClientTimeout(total=HANG_GUARD)
        projects = sorted(self.keys)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

            async def client(index: int) -> None:
                while not self._stop.is_set():
                    n = len(self.replies)
                    reply = Reply(
                        n=n,
                        replica=(n + index) % len(self.urls),
                        project=projects[(n // len(self.urls)) % len(projects)],
                        stream=(n // (len(self.urls) * len(projects))) % 2 == 1,
                        started=time.monotonic(),
                    )
                    self.replies.append(reply)
                    await self._send(session, reply)
                    await asyncio.sleep(self.pause)

            await asyncio.gather(*(client(i) for i in range(self.clients)))

    async def _send(self, session: aiohttp.ClientSession, reply: Reply) -> None:
        url, key = self.urls[reply.replica], self.keys[reply.project]
        try:
            if reply.stream:
                read = await stream_chat(session, url, key, StreamRead(f"mixed-{reply.n}"))
                reply.status, reply.headers, reply.body = read.status, read.headers, read.body
                reply.credits, reply.complete = read.credits, read.complete
            else:
                answer = await post_chat(session, url, key)
                reply.status, reply.headers, reply.body = (
                    answer.status,
                    answer.headers,
                    answer.body,
                )
                credits = answer.headers.get("x-oneflow-credits")
                reply.credits = Decimal(credits) if credits is not None else None
                reply.complete = answer.status == 200 and credits is not None
        except (aiohttp.ClientError, ConnectionError, TimeoutError):
            pass
        reply.seconds = time.monotonic() - reply.started
