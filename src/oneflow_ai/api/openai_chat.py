"""OpenAI's Chat Completions dialect at the edge: request in, answer and stream chunks out.

The request is read by `api/openai_chat_request.py`. `render_chat_completion` writes the
answer (the provider's own body when it speaks this dialect). `ChunkEncoder` writes a
stream's events as `chat.completion.chunk` SSE lines that the official SDK parses; the
stream ends with usage and credits: in a final usage chunk when the caller asked
`stream_options.include_usage`, otherwise in an extra `oneflow` field of the finish chunk,
and an error event carries them too.
"""

from __future__ import annotations

from typing import Any

import orjson

from oneflow_ai.api.errors import Dialect, error_body
from oneflow_ai.billing.cost import Cost
from oneflow_ai.domain.chat import (
    ChatResponse,
    FinishReason,
    StreamEvent,
    StreamFinish,
    StreamStart,
    TextDelta,
    ToolCallDelta,
)
from oneflow_ai.domain.usage import Usage
from oneflow_ai.errors import GatewayError

__all__ = ["ChunkEncoder", "oneflow_extra", "render_chat_completion"]

_DONE = b"data: [DONE]\n\n"


# ---- answer ------------------------------------------------------------------------------


def usage_body(usage: Usage) -> dict[str, Any]:
    """OpenAI's `usage`: a Claude answer's cache reads are its `cached_tokens` (its cache
    writes stay within `prompt_tokens`: OpenAI has no field for them; the `oneflow`
    extension names them)."""
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.input_tokens + usage.output_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_input_tokens},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }


def oneflow_extra(usage: Usage, cost: Cost | None) -> dict[str, Any]:
    """The `oneflow` extension field: usage and credits in OneFlow's own terms."""
    return {
        "usage": {
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "cached_input_tokens": usage.cached_input_tokens,
            "cache_write_5m_tokens": usage.cache_write_5m_tokens,
            "cache_write_1h_tokens": usage.cache_write_1h_tokens,
            "reasoning_tokens": usage.reasoning_tokens,
            "estimated": usage.estimated,
        },
        "credits": str(cost.credits) if cost is not None else "0",
    }


def render_chat_completion(response: ChatResponse, usage: Usage, created: int) -> dict[str, Any]:
    if response.raw is not None and response.raw_dialect == "openai":
        return response.raw
    message: dict[str, Any] = {
        "role": "assistant",
        "content": response.text if (response.text or not response.tool_calls) else None,
        "refusal": None,
    }
    if response.tool_calls:
        message["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in response.tool_calls
        ]
    return {
        "id": response.id,
        "object": "chat.completion",
        "created": created,
        "model": response.model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": response.finish_reason,
            }
        ],
        "usage": usage_body(usage),
    }


# ---- stream ------------------------------------------------------------------------------


class ChunkEncoder:
    """Canonical stream events to `chat.completion.chunk` SSE bytes."""

    __slots__ = ("_created", "_finish", "_id", "_include_usage", "_model", "_role_sent")

    def __init__(self, *, model: str, created: int, include_usage: bool) -> None:
        self._id = "chatcmpl-oneflow"
        self._model = model
        self._created = created
        self._include_usage = include_usage
        self._role_sent = False
        self._finish: FinishReason = "stop"

    def _chunk(self, choices: list[dict[str, Any]], **extra: Any) -> bytes:
        chunk: dict[str, Any] = {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
            "choices": choices,
        }
        if self._include_usage:
            chunk["usage"] = None
        chunk.update(extra)
        return b"data: " + orjson.dumps(chunk) + b"\n\n"

    def _delta(self, delta: dict[str, Any]) -> bytes:
        if not self._role_sent:
            self._role_sent = True
            delta = {"role": "assistant", **delta}
        return self._chunk([{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}])

    def event(self, event: StreamEvent) -> bytes:
        if isinstance(event, TextDelta):
            return self._delta({"content": event.text})
        if isinstance(event, ToolCallDelta):
            call: dict[str, Any] = {"index": event.index}
            function: dict[str, Any] = {"arguments": event.arguments}
            if event.id is not None:
                call["id"] = event.id
                call["type"] = "function"
            if event.name is not None:
                function["name"] = event.name
            call["function"] = function
            return self._delta({"tool_calls": [call]})
        if isinstance(event, StreamFinish):
            self._finish = event.reason
        elif isinstance(event, StreamStart):
            self._id = event.id or self._id
            self._model = event.model or self._model
        return b""

    def end(self, usage: Usage, cost: Cost | None) -> bytes:
        """The finish chunk, usage and credits, and `[DONE]`."""
        extra = oneflow_extra(usage, cost)
        head = b"" if self._role_sent else self._delta({"content": ""})
        finish = [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": self._finish}]
        if self._include_usage:
            return (
                head
                + self._chunk(finish)
                + self._chunk([], usage=usage_body(usage), oneflow=extra)
                + _DONE
            )
        return head + self._chunk(finish, oneflow=extra) + _DONE

    def error(self, exc: GatewayError, usage: Usage | None, cost: Cost | None) -> bytes:
        """An error event the SDK raises as `openai.APIError` (no `[DONE]` after it)."""
        body = error_body(
            Dialect.OPENAI, kind=exc.kind, message=exc.message, param=exc.param, code=exc.code
        )
        if usage is not None:
            body["oneflow"] = oneflow_extra(usage, cost)
        return b"data: " + orjson.dumps(body) + b"\n\n"
