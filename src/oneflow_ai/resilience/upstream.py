"""What an upstream call returns, and how a failed one becomes a `ProviderError`.

`UpstreamResponse` is a small, complete answer (status, headers, body bytes); `UpstreamStream`
an answer whose body is still arriving. `map_status_error` turns an HTTP error answer into our
taxonomy, reading the error message from any of the providers' error shapes; a provider adapter
can pass its own mapper (e.g. to recognise a content-policy refusal) to `ResilientHTTPClient`.
"""

from __future__ import annotations

import contextvars
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass

import orjson

from oneflow_ai.errors import ProviderError, ProviderUnavailableError
from oneflow_ai.providers.errors import error_class
from oneflow_ai.providers.upstream import UpstreamStream as TransportStream
from oneflow_ai.resilience.retry import parse_retry_after

__all__ = [
    "ErrorMapper",
    "UpstreamResponse",
    "UpstreamStream",
    "current_model",
    "error_message",
    "map_status_error",
]

#: The catalog model an upstream call is made for. The fallback executor sets it around each
#: attempt, so the HTTP client keys the per-model circuit breaker without every adapter
#: having to pass ``model=`` (an explicit ``model=`` wins).
current_model: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "oneflow_upstream_model", default=None
)


@dataclass(frozen=True, slots=True)
class UpstreamResponse:
    """A complete upstream answer. ``headers`` is case-insensitive."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    attempts: int = 1
    elapsed: float = 0.0  # seconds taken by the attempt that produced this answer

    @property
    def ok(self) -> bool:
        return self.status < 400

    def json(self) -> object:
        """The body parsed as JSON (orjson); ``orjson.JSONDecodeError`` if it is not."""
        return orjson.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


#: Builds the error for an HTTP error answer: ``(provider, model, response) -> ProviderError``.
ErrorMapper = Callable[[str, str | None, UpstreamResponse], ProviderError]


class UpstreamStream:
    """An upstream answer whose body is read as it arrives (SSE, audio).

    Iterating raises ``ProviderUnavailableError`` / ``ProviderTimeoutError`` when the connection
    drops or stalls mid-body; the client counts that against the circuit when the stream
    closes. Leaving the ``stream()`` block before the end closes the upstream connection.
    """

    def __init__(self, inner: TransportStream) -> None:
        self._inner = inner
        self.status: int = inner.status
        self.headers: Mapping[str, str] = inner.headers
        self.error: ProviderError | None = None
        self._eof = False

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        """Body bytes as they arrive (chunk boundaries are the network's, not the events')."""
        try:
            async for chunk in self._inner.chunks():
                yield chunk
        except ProviderError as exc:
            self.error = exc
            raise
        self._eof = True

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.iter_chunks()])

    @property
    def at_eof(self) -> bool:
        """Whether the whole body has been read."""
        return self._eof


def error_message(body: bytes) -> str | None:
    """The message of an OpenAI, Anthropic, ElevenLabs or Stability error body, if any."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    for container in (data.get("error"), data.get("detail"), data):
        if isinstance(container, dict):
            message = container.get("message")
            if isinstance(message, str) and message:
                return message
        elif isinstance(container, str) and container:
            return container
    errors = data.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], str):
        return errors[0]
    return None


def map_status_error(provider: str, model: str | None, response: UpstreamResponse) -> ProviderError:
    """The default mapping of an HTTP error status onto our taxonomy: the providers' own
    (:func:`~oneflow_ai.providers.errors.error_class`: 401/402/403 -> ProviderAuthError;
    408/504 -> ProviderTimeoutError; 429 -> ProviderRateLimitedError; 5xx and 529 (Anthropic's
    overloaded) -> ProviderUnavailableError; any other 4xx -> ProviderBadRequestError), and 409
    (a conflict, e.g. a lock timeout, that OpenAI's clients retry) -> ProviderUnavailableError.
    ``retry_after`` comes from ``retry-after-ms`` / ``Retry-After``.
    """
    status = response.status
    message = error_message(response.body) or f"{provider} answered HTTP {status}"
    cls = ProviderUnavailableError if status == 409 else error_class(status)
    return cls(
        message,
        provider=provider,
        model=model,
        upstream_status=status,
        retry_after=parse_retry_after(response.headers),
    )
