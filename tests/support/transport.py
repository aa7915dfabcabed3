"""The one in-process upstream of unit tests, in the manner of httpx's `MockTransport`.

`MockTransport(handler)` implements the providers' `UpstreamClient` protocol
(`src/oneflow_ai/providers/upstream.py`) without a socket: each request goes to `handler`, a
function (plain or async) from a `MockRequest` to a `MockResponse`, and comes back the way the
pooled aiohttp client (`AiohttpUpstream`) would hand it over: a non-2xx status raises the
request's mapped error (`answer_error`, shared with that client), a streamed body comes chunk by
chunk, and `cut_after` breaks the "connection" mid-stream with the client's own transport
error. A handler may also raise a `ProviderError` itself (a timeout, a refused connection).

It goes wherever the aiohttp client would be: under an adapter (`OpenAIProvider(transport)`),
under `ResilientHTTPClient(transport=...)`, or under a whole gateway
(`create_app(settings, transport=mock_transports(handler))`, below its breakers and retries).

`Script` is the handler most tests want: answers queued in order, every request recorded.
Timeouts, refused connections, keep-alive and cancellation on the wire belong to the network:
tests of those use the real HTTP fakes (`oneflow_fakes.FakeProviders`).
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from oneflow_ai.errors import ProviderError
from oneflow_ai.providers.http import transport_error
from oneflow_ai.providers.registry import ClientFactory
from oneflow_ai.providers.upstream import (
    UpstreamClient,
    UpstreamRequest,
    UpstreamResponse,
    UpstreamStream,
    answer_error,
)
from oneflow_ai.settings import ProviderSettings

__all__ = [
    "MockRequest",
    "MockResponse",
    "MockTransport",
    "Script",
    "mock_transports",
    "sse",
]


@dataclass(frozen=True)
class MockRequest:
    method: str
    url: URL  # the client's base URL and the request's path, query included
    headers: CIMultiDictProxy[str]  # the client's fixed headers and the request's own
    body: bytes
    #: Set when the caller left a streamed answer before its end (a cancelled request).
    disconnected: threading.Event = field(default_factory=threading.Event, compare=False)

    @property
    def path(self) -> str:
        return self.url.path

    @property
    def query(self) -> dict[str, str]:
        return dict(self.url.query)

    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass(frozen=True)
class MockResponse:
    status: int = 200
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    chunks: Sequence[bytes] | None = None  # a streamed body, in this order
    cut_after: int | None = None  # chunks handed out before the connection breaks
    delay: float = 0.0  # seconds before the answer
    chunk_delay: float = 0.0  # seconds between chunks

    @classmethod
    def json(cls, data: object, status: int = 200, **options: Any) -> MockResponse:
        headers = {"Content-Type": "application/json", **options.pop("headers", {})}
        return cls(status, orjson.dumps(data), headers, **options)

    @classmethod
    def stream(cls, chunks: Iterable[bytes], **options: Any) -> MockResponse:
        headers = {"Content-Type": "text/event-stream", **options.pop("headers", {})}
        return cls(200, b"", headers, chunks=tuple(chunks), **options)


Handler = Callable[[MockRequest], MockResponse | Awaitable[MockResponse]]


class MockTransport:
    """An `UpstreamClient` answering from `handler` (see the module's docstring)."""

    def __init__(
        self,
        handler: Handler,
        *,
        provider: str = "mock",
        base_url: str = "",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.provider = provider
        self.handler = handler
        self._base = base_url.rstrip("/")
        self._headers = dict(headers or {})

    async def _answer(self, request: UpstreamRequest) -> tuple[MockRequest, MockResponse]:
        headers = CIMultiDict(self._headers)
        headers.update(request.headers or {})
        url = URL(self._base + request.path)
        if request.query:
            url = url.update_query(request.query)
        sent = MockRequest(request.method, url, CIMultiDictProxy(headers), request.body or b"")
        try:
            answer = self.handler(sent)
            response = await answer if inspect.isawaitable(answer) else answer
        except ProviderError as error:
            error.provider = error.provider or self.provider
            error.model = error.model or request.model
            raise
        if response.delay:
            await asyncio.sleep(response.delay)
        if response.status >= 300:
            body = response.body or b"".join(response.chunks or ())
            headers = CIMultiDictProxy(CIMultiDict(response.headers))
            raise answer_error(request, self.provider, response.status, headers, body)
        return sent, response

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        _, response = await self._answer(request)
        body = response.body if response.chunks is None else b"".join(response.chunks)
        headers = CIMultiDictProxy(CIMultiDict(response.headers))
        return UpstreamResponse(response.status, headers, body)

    @asynccontextmanager
    async def stream(self, request: UpstreamRequest) -> AsyncIterator[UpstreamStream]:
        sent, response = await self._answer(request)
        headers = CIMultiDictProxy(CIMultiDict(response.headers))
        stream = UpstreamStream(response.status, headers, self._reader(request, response))
        try:
            yield stream
        finally:
            if not stream.at_eof:  # left before the end: the "connection" is closed
                sent.disconnected.set()

    def _reader(
        self, request: UpstreamRequest, response: MockResponse
    ) -> Callable[[], Awaitable[bytes]]:
        """The stream's next chunk, b"" at the end; the transport error of a cut connection."""
        chunks = list(response.chunks if response.chunks is not None else (response.body,))
        sent = 0

        async def read_chunk() -> bytes:
            nonlocal sent
            if sent == len(chunks):
                return b""
            if response.cut_after is not None and sent >= response.cut_after:
                cause = ConnectionResetError("the connection was cut")
                raise transport_error(
                    cause, self.provider, request.model, mid_stream=True
                ) from cause
            if sent and response.chunk_delay:
                await asyncio.sleep(response.chunk_delay)
            sent += 1
            return chunks[sent - 1]

        return read_chunk

    async def aclose(self) -> None:
        return None


class Script:
    """A handler answering from a queue (`reply`, `reply_stream`, `add`), or with `default`
    once it is empty, recording every request (`requests`, `count`)."""

    def __init__(self, *replies: MockResponse, default: MockResponse | None = None) -> None:
        self.replies: deque[MockResponse] = deque(replies)
        self.default = default or MockResponse(500, b'{"error":"unscripted"}')
        self.requests: list[MockRequest] = []

    def __call__(self, request: MockRequest) -> MockResponse:
        self.requests.append(request)
        return self.replies.popleft() if self.replies else self.default

    @property
    def count(self) -> int:
        return len(self.requests)

    def add(self, *replies: MockResponse) -> None:
        self.replies.extend(replies)

    def reply(
        self,
        body: object = None,
        *,
        status: int = 200,
        raw: bytes | None = None,
        **options: Any,
    ) -> None:
        """A whole answer: `body` as JSON, or `raw` bytes as they are."""
        if raw is None:
            self.add(MockResponse.json(body, status, **options))
        else:
            self.add(MockResponse(status, raw, options.pop("headers", {}), **options))

    def reply_stream(self, chunks: Iterable[bytes], **options: Any) -> None:
        self.add(MockResponse.stream(chunks, **options))


def mock_transports(handler: Handler) -> ClientFactory:
    """For `create_app(transport=...)`: every provider's client answers from `handler`."""

    def factory(settings: ProviderSettings, headers: Mapping[str, str]) -> UpstreamClient:
        return MockTransport(
            handler, provider=settings.name, base_url=settings.base_url, headers=headers
        )

    return factory


def sse(*payloads: object, event: str | None = None) -> list[bytes]:
    """Server-sent `data:` events (dicts JSON-encoded, bytes and str sent as they are)."""
    out = []
    for payload in payloads:
        data = payload if isinstance(payload, bytes | str) else orjson.dumps(payload).decode()
        if isinstance(data, bytes):
            data = data.decode()
        prefix = f"event: {event}\n" if event else ""
        out.append(f"{prefix}data: {data}\n\n".encode())
    return out
