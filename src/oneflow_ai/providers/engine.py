"""The provider engine: sending, streaming, reading answers and mapping errors, written once.

A chat provider is a *wire*: the typed transforms of one provider's API (`ChatWire`) —
canonical request -> wire body, wire answer -> canonical answer, wire stream event -> canonical
events (`StreamDecoder`), wire error -> OneFlow's error taxonomy — plus its path. `ChatProvider`
runs any wire over an `UpstreamClient` (which owns the URL, the credentials, the pool, the
timeouts, and, wrapped by the resilience layer, the retries and the circuit breakers):

- `chat`: send the body, read the answer; an answer of an unexpected shape is a
  `ProviderError` naming the provider ("malformed answer"), never a crash;
- `stream_chat`: open the stream, parse its server-sent events (`sse.py`) in batches as they
  arrived (those of one chunk of the body together), decode each event, hand each batch on;
  an error event ends the stream with its error after the events that came before it; a
  stream that closes before the provider said the answer was whole is a
  `ProviderUnavailableError`.

`read_answer` is the one place any adapter (images, speech too) reads an answer's body.
Which wires exist: `openai.py` (also every OpenAI-compatible API, `compatible.py`) and
`anthropic.py`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from typing import Protocol, TypeVar

import orjson

from oneflow_ai.domain.chat import ChatRequest, ChatResponse, StreamEvent, WireDialect
from oneflow_ai.errors import BadRequestError, ProviderError, ProviderUnavailableError
from oneflow_ai.providers.errors import MALFORMED, malformed
from oneflow_ai.providers.sse import SSEEvent, SSEParser
from oneflow_ai.providers.upstream import UpstreamClient, UpstreamRequest

__all__ = [
    "ChatProvider",
    "ChatWire",
    "StreamDecoder",
    "forwarded_body",
    "is_forwarded",
    "read_answer",
]

T = TypeVar("T")


class StreamDecoder(Protocol):
    """One streamed answer on its way from wire events to canonical events."""

    @property
    def complete(self) -> bool:
        """Whether the provider has said the answer is whole."""
        ...

    def decode(self, event: SSEEvent, out: list[StreamEvent]) -> bool:
        """Append the canonical events of one server-sent event to `out`; True when the event
        ends the stream (nothing after it is read). An error event raises its
        `ProviderError`; an event of an unexpected shape raises what reading it raised."""
        ...


class ChatWire(Protocol):
    """The typed transforms of one chat API (see the module docstring)."""

    @property
    def name(self) -> str:
        """The provider's name (the catalog's), in errors and metrics."""
        ...

    @property
    def dialect(self) -> WireDialect: ...

    @property
    def path(self) -> str:
        """The chat endpoint, after the client's base URL."""
        ...

    def request_path(self, request: ChatRequest) -> str:
        """The endpoint `request` is sent to (`path`, unless the wire serves the request's
        own dialect at another endpoint: OpenAI's Responses API)."""
        ...

    def request_body(
        self, request: ChatRequest, model: str, *, stream: bool
    ) -> Mapping[str, object]: ...

    def answer(self, body: bytes, request: ChatRequest, model: str) -> ChatResponse:
        """The canonical answer of a whole wire answer (raises on an unexpected shape)."""
        ...

    def stream_decoder(self, request: ChatRequest, model: str) -> StreamDecoder: ...

    def map_error(self, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
        """An error answer (non-2xx) in OneFlow's taxonomy."""
        ...


def is_forwarded(request: ChatRequest, dialect: WireDialect) -> bool:
    """Whether `request` arrived in the provider's `dialect`: its body goes as written, and a
    stream's events come back to the caller as they arrived (`WireBytes`)."""
    return request.raw is not None and request.raw_dialect == dialect


def forwarded_body(
    request: ChatRequest, dialect: WireDialect, model: str
) -> dict[str, object] | None:
    """The caller's own body, sent as written with only `model` replaced, when the request
    arrived in the provider's `dialect` (provider-specific fields survive); None when the body
    must be built from the canonical request."""
    raw = request.raw
    if raw is None or request.raw_dialect != dialect:
        return None
    return {**raw, "model": model}


def read_answer(provider: str, model: str | None, body: bytes, read: Callable[[bytes], T]) -> T:
    """`read(body)`, with an answer of an unexpected shape a `ProviderError` naming it."""
    try:
        return read(body)
    except MALFORMED as exc:
        raise malformed(provider, model, exc) from exc


class ChatProvider:
    """Chat over one upstream client in one wire (implements `ChatCapable`)."""

    def __init__(
        self,
        client: UpstreamClient,
        wire: ChatWire,
        *,
        path_for: Callable[[str], str] | None = None,
    ) -> None:
        """`path_for(model)`, when given, is the chat endpoint for the model named `model` at
        the provider (a deployment-name URL); otherwise every model uses `wire.path`."""
        self._client = client
        self.wire = wire
        self.name: str = wire.name
        self.dialect: WireDialect = wire.dialect
        self.native_responses: bool = getattr(wire, "native_responses", False)
        self._path_for = path_for
        self._map_error = wire.map_error

    async def aclose(self) -> None:
        await self._client.aclose()

    def _request(self, request: ChatRequest, model: str, *, stream: bool) -> UpstreamRequest:
        if request.raw_dialect == "responses" and request.dialect_only:
            self._refuse_unbridgeable(request, model)
        body = self.wire.request_body(request, model, stream=stream)
        path = self.wire.request_path(request) if self._path_for is None else self._path_for(model)
        return UpstreamRequest("POST", path, self._map_error, body=orjson.dumps(body), model=model)

    def _refuse_unbridgeable(self, request: ChatRequest, model: str) -> None:
        """A Responses API request with fields only OpenAI's own Responses API honours, for a
        model that is not OpenAI's (a fallback, say): refused, never sent without them."""
        if self.native_responses:
            return
        field = request.dialect_only[0]
        raise BadRequestError(
            f"'{field}' is not supported for the model '{model}' ({self.name}): only OpenAI "
            "models take it on the Responses API",
            param=field.split(" ", 1)[0],
            code="unsupported_parameter",
        )

    async def chat(self, request: ChatRequest, model: str) -> ChatResponse:
        response = await self._client.send(self._request(request, model, stream=False))
        wire = self.wire
        return read_answer(
            self.name, model, response.body, lambda body: wire.answer(body, request, model)
        )

    async def stream_chat(
        self, request: ChatRequest, model: str
    ) -> AsyncIterator[list[StreamEvent]]:
        decoder = self.wire.stream_decoder(request, model)
        decode = decoder.decode
        parser = SSEParser()
        async with self._client.stream(self._request(request, model, stream=True)) as response:
            # Read chunk by chunk, with no generator of chunks between the body and the events.
            next_chunk = response.next_chunk
            while chunk := await next_chunk():
                batch = parser.feed(chunk)
                if not batch:
                    continue
                events: list[StreamEvent] = []
                ended = False
                try:
                    for sse in batch:
                        if decode(sse, events):
                            ended = True
                            break
                except ProviderError:
                    if events:
                        yield events  # what arrived before the error still counts
                    raise
                except MALFORMED as exc:
                    raise malformed(self.name, model, exc) from exc
                if events:
                    yield events
                if ended:
                    break
            if not decoder.complete:
                raise ProviderUnavailableError(
                    f"{self.name}: the stream ended before the answer was complete",
                    provider=self.name,
                    model=model,
                )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"
