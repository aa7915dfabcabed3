"""A steady load through a load balancer: callers sending requests at fixed rates (an open
loop: a request goes out on time whether or not the previous ones have answered), plain and
streamed chat in both dialects, each request's outcome recorded as the client saw it.

Every request is one attempt (no client retry), on a connection of its own, with an
`X-Request-ID` of its own; the gateway's id for it (`X-OneFlow-Request-ID`, the key of its
charge) and the replica that answered (`X-OneFlow-Upstream`, set by the load balancer) are
read from the answer's headers.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from dataclasses import dataclass, field
from decimal import Decimal

import aiohttp
import orjson

from tests.support.gateway_load import (
    HANG_GUARD,
    StreamRead,
    chat_body,
    stream_chat,
)
from tests.support.load_balancer import UPSTREAM_HEADER

__all__ = ["KINDS", "Caller", "Outcome", "SteadyLoad", "delivered_text"]

#: What each caller sends, in turn.
KINDS = ("plain", "stream-openai", "plain", "stream-anthropic")


@dataclass(frozen=True)
class Caller:
    name: str
    project: str
    key: str
    #: Requests per second.
    rate: float


@dataclass
class Outcome:
    """One request as its client saw it. Times are seconds since the load began."""

    caller: str
    project: str
    request_id: str
    kind: str
    started: float
    ended: float = 0.0
    #: 0: no HTTP status ever came (the connection failed or broke before the headers).
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    #: Credits the answer announced (header or final usage event); None: it announced none.
    credits: Decimal | None = None
    #: The whole answer arrived (a plain body; a stream up to its end after its usage).
    complete: bool = False
    error: str | None = None

    @property
    def stream(self) -> bool:
        return self.kind.startswith("stream")

    @property
    def gateway_id(self) -> str | None:
        return self.headers.get("x-oneflow-request-id")

    @property
    def upstream(self) -> str:
        """The replica that answered (the last one the load balancer tried)."""
        return self.headers.get(UPSTREAM_HEADER, "").split(",")[-1].strip()

    @property
    def seconds(self) -> float:
        return self.ended - self.started


class SteadyLoad:
    """`callers` at their rates through `url` until `duration` seconds (or `finish_in`);
    `outcomes` fills in as requests are sent and answered. `elapsed()` is the load's clock
    (faults use it too)."""

    def __init__(self, url: str, callers: list[Caller], duration: float = math.inf) -> None:
        self.url, self.callers, self.duration = url, callers, duration
        self.outcomes: list[Outcome] = []
        self._start = time.monotonic()
        self._streaming: dict[str, StreamRead] = {}

    def elapsed(self) -> float:
        return time.monotonic() - self._start

    def streaming_on(self, address: str) -> int:
        """Streams under way through the replica at `address` (content seen, not ended)."""
        return sum(
            1
            for read in list(self._streaming.values())
            if read.started and not read.done and read.headers.get(UPSTREAM_HEADER) == address
        )

    def finish_in(self, seconds: float) -> None:
        """Send no request later than `seconds` from now."""
        self.duration = min(self.duration, self.elapsed() + seconds)

    async def run(self) -> list[Outcome]:
        """Send on schedule until the duration is over, then wait for every answer."""
        connector = aiohttp.TCPConnector(limit=0, force_close=True)
        timeout = aiohttp.ClientTimeout(total=HANG_GUARD)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            self._start = time.monotonic()
            sent: list[asyncio.Task[None]] = []
            await asyncio.gather(*(self._schedule(session, c, sent) for c in self.callers))
            await asyncio.gather(*sent)
        return self.outcomes

    async def _schedule(
        self, session: aiohttp.ClientSession, caller: Caller, sent: list[asyncio.Task[None]]
    ) -> None:
        for n in itertools.count():
            due = n / caller.rate
            if due >= self.duration:
                return
            await asyncio.sleep(max(0.0, due - self.elapsed()))
            outcome = Outcome(
                caller.name, caller.project, f"{caller.name}-{n}", KINDS[n % len(KINDS)],
                self.elapsed(),
            )  # fmt: skip
            self.outcomes.append(outcome)
            sent.append(asyncio.create_task(self._send(session, caller, outcome)))

    async def _send(self, session: aiohttp.ClientSession, caller: Caller, outcome: Outcome) -> None:
        try:
            if outcome.stream:
                await self._stream(session, caller, outcome)
            else:
                await self._plain(session, caller, outcome)
        except Exception as exc:  # whatever broke, the outcome says so
            outcome.error = outcome.error or repr(exc)
        outcome.ended = self.elapsed()

    async def _plain(
        self, session: aiohttp.ClientSession, caller: Caller, outcome: Outcome
    ) -> None:
        headers = {
            "Authorization": f"Bearer {caller.key}",
            "Content-Type": "application/json",
            "X-Request-ID": outcome.request_id,
        }
        async with session.post(
            f"{self.url}/v1/chat/completions", data=chat_body(stream=False), headers=headers
        ) as response:
            outcome.status = response.status
            outcome.headers = {k.lower(): v for k, v in response.headers.items()}
            outcome.body = await response.read()
        if outcome.status == 200:
            outcome.complete = True
            announced = outcome.headers.get("x-oneflow-credits")
            if announced is None:  # not known before the body: the body's usage says it
                announced = orjson.loads(outcome.body).get("oneflow", {}).get("credits")
            outcome.credits = Decimal(announced) if announced is not None else None

    async def _stream(
        self, session: aiohttp.ClientSession, caller: Caller, outcome: Outcome
    ) -> None:
        read = StreamRead(outcome.request_id, outcome.kind.removeprefix("stream-"))
        self._streaming[outcome.request_id] = read
        try:
            await stream_chat(session, self.url, caller.key, read)
        finally:
            del self._streaming[outcome.request_id]
            outcome.status, outcome.headers, outcome.body = read.status, read.headers, read.body
            outcome.credits, outcome.complete = read.credits, read.complete
            outcome.error = read.error


def delivered_text(outcome: Outcome) -> str:
    """The content a streamed answer delivered before it ended or broke off (whole events
    only; in either dialect)."""
    parts: list[str] = []
    for line in outcome.body.splitlines():
        if not line.startswith(b"data: ") or line == b"data: [DONE]":
            continue
        try:
            event = orjson.loads(line.removeprefix(b"data: "))
        except orjson.JSONDecodeError:  # the line the break cut in two
            continue
        for choice in event.get("choices") or ():
            parts.append((choice.get("delta") or {}).get("content") or "")
        if event.get("type") == "content_block_delta":
            parts.append(event["delta"].get("text", ""))
    return "".join(parts)
