"""The upstream types: how OneFlow reaches a provider over HTTP, the one set every layer uses.

A provider adapter receives one `UpstreamClient` in its constructor, bound to its provider: the
client owns the base URL, the credential headers, the connection pool and the timeouts. The
adapter names the path, the body, any per-request headers, and how to read an error answer
(`UpstreamRequest.map_error`). Two calls:

- `send(request)`: the whole answer as an `UpstreamResponse` (2xx only);
- `stream(request)`: an async context manager of an `UpstreamStream` whose body is read
  incrementally with `chunks()` (2xx only).

Failures are always `oneflow_ai.errors.ProviderError` subclasses:

- a non-2xx answer raises what `request.map_error(status, headers, body)` returns (the adapter
  knows its provider's error bodies; the client attaches `request.model` and its provider's
  name where the mapper left them out);
- a refused or broken connection raises `ProviderUnavailableError`, a connect or read timeout
  `ProviderTimeoutError` (also while reading a stream's chunks).

Wrappers implement the same protocol around an inner client: the resilience layer's retries
with jitter, circuit breaker and idempotency keys (`resilience/upstream_client.py`), keyed by
the request's `provider` and `model`, and deciding on the errors' `retryable` and
`retry_after`. A wrapper may repeat `send` and the *entering* of `stream` (nothing has reached
the caller yet); it must never repeat a stream whose chunks it has started to hand out.
`ResilientHTTPClient` (`resilience/http.py`) answers with these same types.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import orjson

from oneflow_ai.errors import ProviderError

__all__ = [
    "ErrorMapper",
    "UpstreamClient",
    "UpstreamRequest",
    "UpstreamResponse",
    "UpstreamStream",
    "answer_error",
]

ErrorMapper = Callable[[int, Mapping[str, str], bytes], ProviderError]
"""`(status, headers, body) -> ProviderError` for a non-2xx answer."""


@dataclass(slots=True)
class UpstreamRequest:
    """One HTTP request to a provider; `path` is appended to the client's base URL.

    Never changed once made (a wrapper that needs other headers makes another one with
    `with_headers`); not a frozen dataclass only because making a frozen one costs three times
    as much (every request makes one or two)."""

    method: str  # GET and POST for the adapters; any method for `ResilientHTTPClient`
    path: str
    map_error: ErrorMapper
    body: bytes | None = None
    headers: Mapping[str, str] | None = None  # on top of the client's (content type, accept)
    query: Mapping[str, str] | None = None  # on top of the client's own query parameters
    # The model the call is for: errors name it, and the circuit breakers of the resilience
    # layer count the call for it (the registry's routes pass the catalog id).
    model: str | None = None
    read_timeout: float | None = None  # instead of the client's, for this request
    total_timeout: float | None = None  # a bound on the whole exchange (none by default)

    def with_headers(self, headers: Mapping[str, str]) -> UpstreamRequest:
        """This request with `headers` instead of its own (what `dataclasses.replace` does,
        at a fraction of its cost: the resilience layer adds a header to every call)."""
        return UpstreamRequest(
            self.method,
            self.path,
            self.map_error,
            self.body,
            headers,
            self.query,
            self.model,
            self.read_timeout,
            self.total_timeout,
        )


def answer_error(
    request: UpstreamRequest,
    provider: str,
    status: int,
    headers: Mapping[str, str],
    body: bytes,
) -> ProviderError:
    """What a client raises for a non-2xx answer: the request's `map_error`, with the
    provider's `x-should-retry` hint, and the model and provider filled in where the mapping
    left them out. Every `UpstreamClient` raises an error answer this way."""
    error = request.map_error(status, headers, body)
    hint = headers.get("x-should-retry")
    if hint is not None:
        error.should_retry = hint.strip().lower() == "true"
    if error.model is None:
        error.model = request.model
    if not error.provider:
        error.provider = provider
    return error


@dataclass(slots=True)
class UpstreamResponse:
    """A complete answer; `headers` is case-insensitive. `attempts` and `elapsed` (seconds,
    of the attempt that produced it) are filled in by `ResilientHTTPClient`. Never changed
    once made, like `UpstreamRequest`."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    attempts: int = 1
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status < 400

    def json(self) -> object:
        """The body parsed as JSON (orjson); `orjson.JSONDecodeError` if it is not."""
        return orjson.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


class UpstreamStream:
    """An answer whose body is still arriving (server-sent events, audio).

    `read_chunk()` (the transport's) returns the next bytes as they arrive and `b""` at the
    end, or raises a `ProviderError` when the connection drops or stalls mid-body.
    `next_chunk()` (and `chunks()`, an iterator over it) hands them out and remembers how the
    body ended: `at_eof` once it was read to the end, `error` when it failed (the resilience
    layer counts that against the circuit even when the reader swallowed it). Leaving the
    `stream()` block before the end closes the connection.
    """

    __slots__ = ("_read_chunk", "at_eof", "error", "headers", "status")

    def __init__(
        self, status: int, headers: Mapping[str, str], read_chunk: Callable[[], Awaitable[bytes]]
    ) -> None:
        self.status = status
        self.headers = headers
        self.error: ProviderError | None = None
        self.at_eof = False
        self._read_chunk = read_chunk

    async def next_chunk(self) -> bytes:
        """The next body bytes as they arrive (chunk boundaries are the network's, not the
        events'); `b""` at the end."""
        try:
            chunk = await self._read_chunk()
        except ProviderError as exc:
            self.error = exc
            raise
        if not chunk:
            self.at_eof = True
        return chunk

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        """`next_chunk()` until the end."""
        next_chunk = self.next_chunk
        while chunk := await next_chunk():
            yield chunk

    async def read(self) -> bytes:
        """The rest of the body at once."""
        return b"".join([chunk async for chunk in self.chunks()])


@runtime_checkable
class UpstreamClient(Protocol):
    provider: str

    async def send(self, request: UpstreamRequest) -> UpstreamResponse: ...

    def stream(self, request: UpstreamRequest) -> AbstractAsyncContextManager[UpstreamStream]:
        """Leaving the context closes the connection if the body was not read to the end,
        which is how a caller's disconnect cancels the upstream request."""
        ...

    async def aclose(self) -> None: ...
