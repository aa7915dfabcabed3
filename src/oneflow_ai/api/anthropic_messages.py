"""Anthropic's Messages dialect at the edge: request in, message and stream events out.

The request is read by `api/anthropic_request.py`. `render_message` writes the answer (the
provider's own body when it speaks this dialect). `EventEncoder` writes a stream's events as
the full `message_start` ... `message_stop` sequence that the official SDK parses; the final
`message_delta` carries the usage in its own `usage` field and the credits in an extra
`oneflow` field, and an error event carries them too.
"""

from __future__ import annotations

from typing import Any

import orjson

from oneflow_ai.api.errors import Dialect, error_body
from oneflow_ai.api.openai_chat import oneflow_extra
from oneflow_ai.billing.cost import Cost
from oneflow_ai.domain.chat import (
    ChatResponse,
    FinishReason,
    StreamEvent,
    StreamFinish,
    StreamStart,
    StreamUsage,
    TextDelta,
    ThinkingDelta,
    ToolCallDelta,
)
from oneflow_ai.domain.usage import Usage
from oneflow_ai.errors import GatewayError

__all__ = ["EventEncoder", "render_message"]

STOP_REASONS: dict[FinishReason, str] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
}


# ---- answer ------------------------------------------------------------------------------


def _input(arguments: str) -> object:
    try:
        value = orjson.loads(arguments) if arguments.strip() else {}
    except orjson.JSONDecodeError:
        return {"arguments": arguments}
    return value if isinstance(value, dict) else {"value": value}


def render_message(response: ChatResponse, usage: Usage) -> dict[str, Any]:
    if response.raw is not None and response.raw_dialect == "anthropic":
        return response.raw
    content: list[dict[str, Any]] = []
    if response.text:
        content.append({"type": "text", "text": response.text})
    for call in response.tool_calls:
        content.append(
            {"type": "tool_use", "id": call.id, "name": call.name, "input": _input(call.arguments)}
        )
    return {
        "id": response.id,
        "type": "message",
        "role": "assistant",
        "model": response.model,
        "content": content,
        "stop_reason": STOP_REASONS[response.finish_reason],
        "stop_sequence": None,
        "usage": anthropic_usage_body(usage),
    }


def anthropic_usage_body(usage: Usage) -> dict[str, Any]:
    """Anthropic's `usage`: `input_tokens` is the prompt the cache did not serve, the cache
    reads and writes beside it (an OpenAI answer's `cached_tokens` are its cache reads)."""
    return {
        "input_tokens": usage.uncached_input_tokens,
        "output_tokens": usage.output_tokens,
        "cache_creation_input_tokens": usage.cache_write_tokens,
        "cache_read_input_tokens": usage.cached_input_tokens,
        "cache_creation": {
            "ephemeral_5m_input_tokens": usage.cache_write_5m_tokens,
            "ephemeral_1h_input_tokens": usage.cache_write_1h_tokens,
        },
    }


# ---- stream ------------------------------------------------------------------------------


def _event(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


class EventEncoder:
    """Canonical stream events to Anthropic's event stream (content blocks opened and closed
    as text and tool calls alternate)."""

    __slots__ = (
        "_block",
        "_blocks",
        "_count",
        "_finish",
        "_id",
        "_input_classes",
        "_input_tokens",
        "_model",
        "_started",
    )

    def __init__(self, *, model: str, input_tokens: int) -> None:
        self._id = "msg_oneflow"
        self._model = model
        self._input_tokens = input_tokens
        self._input_classes: dict[str, int] = {}
        self._started = False
        self._block: tuple[str, int] | None = None  # ("text" | "tool", block index) open now
        self._blocks: dict[int, int] = {}  # tool call index -> block index
        self._count = 0  # blocks opened so far
        self._finish: FinishReason = "stop"

    def _opening_usage(self) -> Usage:
        """The prompt's usage as `message_start` announces it (no output yet)."""
        prompt = {k: v for k, v in self._input_classes.items() if k != "reasoning_tokens"}
        return Usage.of_classes(self._input_tokens, 0, prompt)

    def _start(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        message: dict[str, Any] = {
            "id": self._id,
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": anthropic_usage_body(self._opening_usage()),
        }
        return _event("message_start", {"type": "message_start", "message": message})

    def _close_block(self) -> bytes:
        if self._block is None:
            return b""
        index = self._block[1]
        self._block = None
        return _event("content_block_stop", {"type": "content_block_stop", "index": index})

    def _open(self, kind: str, block: dict[str, Any]) -> tuple[bytes, int]:
        out = self._close_block()
        index = self._count
        self._count += 1
        self._block = (kind, index)
        start = {"type": "content_block_start", "index": index, "content_block": block}
        return out + _event("content_block_start", start), index

    def event(self, event: StreamEvent) -> bytes:
        if isinstance(event, StreamStart):
            self._id = event.id or self._id
            self._model = event.model or self._model
            return b""
        if isinstance(event, StreamFinish):
            self._finish = event.reason
            return b""
        if isinstance(event, StreamUsage):
            if event.input_tokens is not None and not self._started:
                self._input_tokens = event.input_tokens  # the provider's count: announce it
                self._input_classes = event.classes()
            return b""
        if isinstance(event, TextDelta):
            out = self._start()
            if self._block is None or self._block[0] != "text":
                opened, _ = self._open("text", {"type": "text", "text": ""})
                out += opened
            assert self._block is not None
            return out + _event(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": self._block[1],
                    "delta": {"type": "text_delta", "text": event.text},
                },
            )
        if isinstance(event, ThinkingDelta):
            return self._thinking(event)
        if isinstance(event, ToolCallDelta):
            out = self._start()
            index = self._blocks.get(event.index)
            if index is None:
                block = {
                    "type": "tool_use",
                    "id": event.id or f"toolu_oneflow_{event.index}",
                    "name": event.name or "",
                    "input": {},
                }
                opened, index = self._open("tool", block)
                self._blocks[event.index] = index
                out += opened
            if event.arguments:
                out += _event(
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "input_json_delta", "partial_json": event.arguments},
                    },
                )
            return out
        return b""

    def _thinking(self, event: ThinkingDelta) -> bytes:
        """A thinking block as Claude streamed it: opened by its first piece, its text, its
        signature (which closes it); a redacted block whole."""
        out = self._start()
        if event.redacted is not None:
            opened, _ = self._open(
                "redacted", {"type": "redacted_thinking", "data": event.redacted}
            )
            return out + opened + self._close_block()
        if self._block is None or self._block[0] != "thinking":
            opened, _ = self._open("thinking", {"type": "thinking", "thinking": ""})
            out += opened
        assert self._block is not None
        index = self._block[1]
        if event.text:
            delta = {"type": "thinking_delta", "thinking": event.text}
            out += _event(
                "content_block_delta",
                {"type": "content_block_delta", "index": index, "delta": delta},
            )
        if event.signature is not None:
            delta = {"type": "signature_delta", "signature": event.signature}
            out += _event(
                "content_block_delta",
                {"type": "content_block_delta", "index": index, "delta": delta},
            )
            out += self._close_block()
        return out

    def end(self, usage: Usage, cost: Cost | None) -> bytes:
        """Close the open block, then `message_delta` with usage and credits, `message_stop`."""
        out = self._start() + self._close_block()
        delta = {
            "type": "message_delta",
            "delta": {"stop_reason": STOP_REASONS[self._finish], "stop_sequence": None},
            "usage": anthropic_usage_body(usage),
            "oneflow": oneflow_extra(usage, cost),
        }
        return (
            out + _event("message_delta", delta) + _event("message_stop", {"type": "message_stop"})
        )

    def error(self, exc: GatewayError, usage: Usage | None, cost: Cost | None) -> bytes:
        """An `event: error` the SDK raises as `APIStatusError` with the error's type."""
        body = error_body(Dialect.ANTHROPIC, kind=exc.kind, message=exc.message)
        if usage is not None:
            body["oneflow"] = oneflow_extra(usage, cost)
        return _event("error", body)
