"""Same-dialect streams: the provider's events forwarded as they arrived, completed at the end.

When the caller speaks the provider's dialect (an OpenAI-dialect caller and an OpenAI or
OpenAI-compatible model; an Anthropic caller and Claude), the stream's `WireBytes` events carry
each of the provider's events as it came, and these encoders write them out unchanged: every
field survives (`logprobs`, `system_fingerprint`, `service_tier`, Anthropic's content blocks of
any type), the id and the model are the provider's (as in a non-streamed answer, which is the
provider's body). What OneFlow changes is the end, as in a translated stream:

- OpenAI: the finish chunk and the usage chunk are held back until the stream has been
  accounted for; with `stream_options.include_usage` the usage chunk (the provider's counts)
  gains the `oneflow` field (usage and credits), otherwise the finish chunk carries it and no
  chunk carries `usage` (the gateway asked the provider for it, not the caller);
- Anthropic: `message_delta` gains the `oneflow` field.

The canonical events beside them only feed what a missing end needs, and an error event is
written as in a translated stream (`ChunkEncoder`, `EventEncoder`).
"""

from __future__ import annotations

from typing import Any

import orjson

from oneflow_ai.api.anthropic_messages import STOP_REASONS, EventEncoder, anthropic_usage_body
from oneflow_ai.api.openai_chat import ChunkEncoder, oneflow_extra
from oneflow_ai.api.responses import StreamEncoder
from oneflow_ai.billing.cost import Cost
from oneflow_ai.domain.chat import FinishReason, StreamEvent, StreamFinish, StreamStart, WireBytes
from oneflow_ai.domain.usage import Usage
from oneflow_ai.errors import GatewayError
from oneflow_ai.gateway.stream import ChatStream

__all__ = ["AnthropicPassthrough", "OpenAIPassthrough", "anthropic_encoder", "openai_encoder"]

_DONE = b"data: [DONE]\n\n"
_MESSAGE_STOP = b'event: message_stop\ndata: {"type":"message_stop"}\n\n'


def openai_encoder(stream: ChatStream, *, created: int, include_usage: bool) -> StreamEncoder:
    """The encoder of a stream for an OpenAI-dialect caller: the provider's chunks as they
    came when it speaks the dialect, else chunks written from the canonical events."""
    if stream.passthrough == "openai":
        return OpenAIPassthrough(
            model=stream.route.model, created=created, include_usage=include_usage
        )
    return ChunkEncoder(model=stream.route.model, created=created, include_usage=include_usage)


def anthropic_encoder(stream: ChatStream, *, input_tokens: int) -> StreamEncoder:
    """The encoder of a stream for an Anthropic-dialect caller (as `openai_encoder`)."""
    if stream.passthrough == "anthropic":
        return AnthropicPassthrough(model=stream.route.model, input_tokens=input_tokens)
    return EventEncoder(model=stream.route.model, input_tokens=input_tokens)


#: The canonical events an OpenAI passthrough's end reads (through its `ChunkEncoder`).
_FOR_END = (StreamStart, StreamFinish)


def _data(data: bytes) -> bytes:
    return b"data: " + data + b"\n\n"


class OpenAIPassthrough:
    """The provider's `chat.completion.chunk`s, unchanged but for the end (module docstring)."""

    __slots__ = ("_include_usage", "_inner", "_last")

    def __init__(self, *, model: str, created: int, include_usage: bool) -> None:
        self._include_usage = include_usage
        self._inner = ChunkEncoder(model=model, created=created, include_usage=include_usage)
        self._last: list[bytes] = []  # the finish chunk and what followed it, held back

    def event(self, event: StreamEvent) -> bytes:
        if isinstance(event, WireBytes):
            if event.last:
                self._last.append(event.data)
                return b""
            if self._include_usage:
                return _data(event.data)
            return _data(_without_usage(event.data))
        if isinstance(event, _FOR_END):
            self._inner.event(event)  # the id, the model and the finish, for a missing end
        return b""

    def end(self, usage: Usage, cost: Cost | None) -> bytes:
        extra = oneflow_extra(usage, cost)
        chunks: list[dict[str, Any]] = [orjson.loads(data) for data in self._last]
        if self._include_usage:
            if not any(isinstance(chunk.get("usage"), dict) for chunk in chunks):
                return b"".join(map(_data, self._last)) + self._inner.end(usage, cost)
            final = {**chunks[-1], "oneflow": extra}
            return b"".join(map(_data, self._last[:-1])) + _data(orjson.dumps(final)) + _DONE
        kept = [
            (data, chunk)
            for data, chunk in zip(self._last, chunks, strict=True)
            if chunk.get("choices")
        ]
        if not kept:
            return self._inner.end(usage, cost)
        *head, (_, tail) = kept
        tail.pop("usage", None)
        tail["oneflow"] = extra
        return (
            b"".join(_data(_without_usage(data)) for data, _ in head)
            + _data(orjson.dumps(tail))
            + _DONE
        )

    def error(self, exc: GatewayError, usage: Usage | None, cost: Cost | None) -> bytes:
        return self._inner.error(exc, usage, cost)


def _without_usage(data: bytes) -> bytes:
    """A chunk without the `"usage": null` the provider adds to every chunk once usage is
    asked for (the gateway always asks; a caller that did not gets no `usage` field, as from
    the provider itself)."""
    if b'"usage"' not in data:
        return data
    for spelling in (b',"usage":null', b', "usage": null', b'"usage":null,', b'"usage": null, '):
        data = data.replace(spelling, b"")
    return data


class AnthropicPassthrough:
    """The provider's Messages events, unchanged but for `message_delta` (module docstring)."""

    __slots__ = ("_delta", "_finish", "_inner")

    def __init__(self, *, model: str, input_tokens: int) -> None:
        self._inner = EventEncoder(model=model, input_tokens=input_tokens)
        self._delta: bytes | None = None  # the provider's message_delta, held back
        self._finish: FinishReason = "stop"

    def event(self, event: StreamEvent) -> bytes:
        if isinstance(event, WireBytes):
            if event.last:
                self._delta = event.data
                return b""
            name = (event.event or "message").encode()
            return b"event: " + name + b"\ndata: " + event.data + b"\n\n"
        if isinstance(event, StreamFinish):
            self._finish = event.reason
        return b""

    def end(self, usage: Usage, cost: Cost | None) -> bytes:
        if self._delta is not None:
            delta: dict[str, Any] = orjson.loads(self._delta)
        else:  # the provider said nothing of how it stopped: as a translated stream says it
            delta = {
                "type": "message_delta",
                "delta": {"stop_reason": STOP_REASONS[self._finish], "stop_sequence": None},
                "usage": anthropic_usage_body(usage),
            }
        delta["oneflow"] = oneflow_extra(usage, cost)
        return b"event: message_delta\ndata: " + orjson.dumps(delta) + b"\n\n" + _MESSAGE_STOP

    def error(self, exc: GatewayError, usage: Usage | None, cost: Cost | None) -> bytes:
        return self._inner.error(exc, usage, cost)
