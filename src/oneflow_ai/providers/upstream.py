"""The upstream client protocol: how a provider adapter reaches its provider over HTTP.

An adapter receives one `UpstreamClient` in its constructor, bound to its provider: the client
owns the base URL, the credential headers, the connection pool and the timeouts. The adapter
names the path, the body, any per-request headers, and how to read an error answer
(`UpstreamRequest.map_error`). Two calls:

- `send(request)`: the whole answer as an `UpstreamResponse` (2xx only);
- `stream(request)`: an async context manager of an `UpstreamStream` whose body is read
  incrementally with `chunks()` (2xx only).

Failures are always `oneflow_ai.errors.ProviderError` subclasses:

- a non-2xx answer raises what `request.map_error(status, headers, body)` returns (the adapter
  knows its provider's error bodies; the client attaches `request.model`);
- a refused or broken connection raises `ProviderUnavailableError`, a connect or read timeout
  `ProviderTimeoutError` (also while reading a stream's chunks).

Wrappers implement the same protocol around an inner client: the resilience layer's retries
with jitter, circuit breaker and idempotency keys. Everything they need is on the request
(`provider`, `model`) and on the errors (`retryable`, `retry_after`). A wrapper may repeat
`send` and the *entering* of `stream` (nothing has reached the caller yet); it must never repeat
a stream whose chunks it has started to hand out.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

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


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    """One HTTP request to a provider; `path` is appended to the client's base URL."""

    method: str  # GET and POST for the adapters; any method for `ResilientHTTPClient`
    path: str
    map_error: ErrorMapper
    body: bytes | None = None
    headers: Mapping[str, str] | None = None  # on top of the client's (content type, accept)
    query: Mapping[str, str] | None = None
    model: str | None = None  # the upstream model, for errors, breakers and metrics
    read_timeout: float | None = None  # instead of the client's, for this request
    total_timeout: float | None = None  # a bound on the whole exchange (none by default)


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


@dataclass(frozen=True, slots=True)
class UpstreamResponse:
    status: int
    headers: Mapping[str, str]  # case-insensitive
    body: bytes


@runtime_checkable
class UpstreamStream(Protocol):
    status: int
    headers: Mapping[str, str]

    def chunks(self) -> AsyncIterator[bytes]:
        """Body bytes as they arrive (chunk boundaries carry no meaning)."""
        ...


@runtime_checkable
class UpstreamClient(Protocol):
    provider: str

    async def send(self, request: UpstreamRequest) -> UpstreamResponse: ...

    def stream(self, request: UpstreamRequest) -> AbstractAsyncContextManager[UpstreamStream]:
        """Leaving the context closes the connection if the body was not read to the end,
        which is how a caller's disconnect cancels the upstream request."""
        ...

    async def aclose(self) -> None: ...
