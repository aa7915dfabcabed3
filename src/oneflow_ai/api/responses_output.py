"""Answers in the Responses API's wire format: the `response` object and its output items.

`ResponseShape` holds what the response object echoes of the request (instructions, tools,
tool choice, text format, reasoning, metadata, ...). `render_response` writes a whole answer
(an OpenAI model's own body, with OneFlow's id, when it answered natively). The stream's typed
events are written by `api/responses_stream.py` from the same items.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from oneflow_ai.domain.chat import (
    ChatResponse,
    FinishReason,
    ToolCall,
)
from oneflow_ai.domain.usage import Usage

__all__ = [
    "ResponseShape",
    "created_now",
    "function_call_item",
    "message_item",
    "new_id",
    "reasoning_item",
    "render_response",
    "text_part",
    "usage_body",
]


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


@dataclass(slots=True)
class ResponseShape:
    """The response object's fields that echo the request."""

    id: str
    model: str
    created_at: int
    body: dict[str, Any]  # the caller's body
    previous_response_id: str | None
    store: bool
    reasoning_summary: bool

    def envelope(self, status: str) -> dict[str, Any]:
        body = self.body
        reasoning = _object(body.get("reasoning"))
        text = _object(body.get("text"))
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "background": False,
            "error": None,
            "incomplete_details": None,
            "instructions": body.get("instructions"),
            "max_output_tokens": body.get("max_output_tokens"),
            "max_tool_calls": body.get("max_tool_calls"),
            "model": self.model,
            "output": [],
            "parallel_tool_calls": body.get("parallel_tool_calls") is not False,
            "previous_response_id": self.previous_response_id,
            "reasoning": {
                "effort": reasoning.get("effort"),
                "summary": reasoning.get("summary") or reasoning.get("generate_summary"),
            },
            "service_tier": "default",
            "store": self.store,
            "temperature": body.get("temperature", 1.0),
            "text": {
                "format": text.get("format") or {"type": "text"},
                "verbosity": text.get("verbosity") or "medium",
            },
            "tool_choice": body.get("tool_choice") or "auto",
            "tools": body.get("tools") or [],
            "top_p": body.get("top_p", 1.0),
            "truncation": body.get("truncation") or "disabled",
            "usage": None,
            "user": body.get("user"),
            "metadata": body.get("metadata") or {},
        }

    def finished(
        self, output: list[dict[str, Any]], finish: FinishReason, usage: Usage
    ) -> dict[str, Any]:
        incomplete = finish in ("length", "content_filter")
        response = self.envelope("incomplete" if incomplete else "completed")
        if incomplete:
            reason = "content_filter" if finish == "content_filter" else "max_output_tokens"
            response["incomplete_details"] = {"reason": reason}
        response["output"] = output
        response["usage"] = usage_body(usage)
        return response


def _object(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def usage_body(usage: Usage) -> dict[str, Any]:
    return {
        "input_tokens": usage.input_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage.input_tokens + usage.output_tokens,
    }


def message_item(text: str, status: str = "completed") -> dict[str, Any]:
    return {
        "id": new_id("msg"),
        "type": "message",
        "role": "assistant",
        "status": status,
        "content": [text_part(text)] if status == "completed" else [],
    }


def text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def function_call_item(call: ToolCall, status: str = "completed") -> dict[str, Any]:
    return {
        "id": new_id("fc"),
        "type": "function_call",
        "call_id": call.id,
        "name": call.name,
        "arguments": call.arguments,
        "status": status,
    }


def reasoning_item(text: str, summary: bool, signature: str | None) -> dict[str, Any]:
    """A reasoning item of a bridged model's thinking: the text as `content`, also as the
    `summary` when the caller asked for one, and the provider's signature as
    `encrypted_content` (handed back in the next input, it lets Claude continue its turn)."""
    item: dict[str, Any] = {
        "id": new_id("rs"),
        "type": "reasoning",
        "summary": [{"type": "summary_text", "text": text}] if summary else [],
        "content": [{"type": "reasoning_text", "text": text}],
    }
    if signature is not None:
        item["encrypted_content"] = signature
    return item


def render_response(shape: ResponseShape, response: ChatResponse, usage: Usage) -> dict[str, Any]:
    """The response object of a whole answer."""
    if response.raw is not None and response.raw_dialect == "responses":
        native = dict(response.raw)  # OpenAI's own answer, under OneFlow's id
        native.update(
            id=shape.id, previous_response_id=shape.previous_response_id, store=shape.store
        )
        return native
    output: list[dict[str, Any]] = []
    if response.reasoning:
        summary = shape.reasoning_summary
        output.append(reasoning_item(response.reasoning, summary, response.reasoning_signature))
    if response.text or not response.tool_calls:
        output.append(message_item(response.text))
    output.extend(function_call_item(call) for call in response.tool_calls)
    return shape.finished(output, response.finish_reason, usage)


def created_now() -> int:
    return int(time.time())
