"""Answers in the Responses API's wire format: the `response` object and its typed stream.

`ResponseShape` holds what the response object echoes of the request (instructions, tools,
tool choice, text format, reasoning, metadata, ...). `render_response` writes a whole answer
(an OpenAI model's own body, with OneFlow's id, when it answered natively); `ResponsesEncoder`
writes a stream's canonical events as the typed server-sent events the official SDKs parse
(`response.created`, `response.in_progress`, `response.output_item.added`,
`response.content_part.added`, `response.output_text.delta`, ...,
`response.completed` with usage), each with its `sequence_number`.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import orjson

from oneflow_ai.api.openai_chat import oneflow_extra
from oneflow_ai.billing.cost import Cost
from oneflow_ai.domain.chat import (
    ChatResponse,
    FinishReason,
    ReasoningDelta,
    StreamEvent,
    StreamFinish,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    WireEvent,
)
from oneflow_ai.domain.usage import Usage
from oneflow_ai.errors import GatewayError

__all__ = ["ResponseShape", "ResponsesEncoder", "new_id", "render_response", "usage_body"]


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


def _message(text: str, status: str = "completed") -> dict[str, Any]:
    return {
        "id": new_id("msg"),
        "type": "message",
        "role": "assistant",
        "status": status,
        "content": [_text_part(text)] if status == "completed" else [],
    }


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _function_call(call: ToolCall, status: str = "completed") -> dict[str, Any]:
    return {
        "id": new_id("fc"),
        "type": "function_call",
        "call_id": call.id,
        "name": call.name,
        "arguments": call.arguments,
        "status": status,
    }


def _reasoning(text: str, summary: bool, signature: str | None) -> dict[str, Any]:
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
        output.append(_reasoning(response.reasoning, summary, response.reasoning_signature))
    if response.text or not response.tool_calls:
        output.append(_message(response.text))
    output.extend(_function_call(call) for call in response.tool_calls)
    return shape.finished(output, response.finish_reason, usage)


class ResponsesEncoder:
    """Canonical stream events to the Responses API's typed events (a `StreamEncoder`).
    After `end`, `final` is the whole response object (for storing it)."""

    def __init__(self, shape: ResponseShape) -> None:
        self._shape = shape
        self._sequence = 0
        self._started = False
        self._output: list[dict[str, Any]] = []
        self._open: dict[str, Any] | None = None  # the item being written (not a call)
        self._text: list[str] = []
        self._calls: dict[int, dict[str, Any]] = {}  # tool call index -> its item
        self._finish: FinishReason = "stop"
        self._native = False  # the provider speaks this dialect: its events pass through
        self._pending: dict[str, Any] | None = None  # its final event, until `end`
        self.final: dict[str, Any] | None = None

    def _event(self, kind: str, **fields: Any) -> bytes:
        data = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"

    def _start(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        response = self._shape.envelope("in_progress")
        return self._event("response.created", response=response) + self._event(
            "response.in_progress", response=response
        )

    def _index(self, item: dict[str, Any]) -> int:
        return self._output.index(item)

    def _add(self, item: dict[str, Any]) -> bytes:
        self._output.append(item)
        return self._event(
            "response.output_item.added", output_index=len(self._output) - 1, item=dict(item)
        )

    def _wire(self, event: WireEvent) -> bytes:
        """OpenAI's own event, as it came: OneFlow's id (and `store`, `previous_response_id`)
        in its response object, the sequence numbers OneFlow's; the final event waits for
        `end`, which adds the credits."""
        self._native = self._started = True
        data = dict(event.data)
        response = data.get("response")
        if isinstance(response, dict):
            data["response"] = response = {
                **response,
                "id": self._shape.id,
                "store": self._shape.store,
                "previous_response_id": self._shape.previous_response_id,
            }
        kind = str(data.get("type") or "")
        if kind in ("response.completed", "response.incomplete"):
            self._pending = data
            return b""
        data.pop("type", None)
        data.pop("sequence_number", None)
        return self._event(kind, **data)

    def event(self, event: StreamEvent) -> bytes:
        if isinstance(event, WireEvent):
            return self._wire(event) if event.dialect == "responses" else b""
        if self._native:
            return b""  # the provider's own events say it (above)
        out = self._start()
        if isinstance(event, TextDelta):
            if self._open is None or self._open["type"] != "message":
                out += self._close() + self._open_message()
            item = self._open
            assert item is not None
            self._text.append(event.text)
            out += self._event(
                "response.output_text.delta",
                item_id=item["id"],
                output_index=self._index(item),
                content_index=0,
                delta=event.text,
                logprobs=[],
            )
        elif isinstance(event, ReasoningDelta):
            if event.signature is not None:
                if self._open is not None and self._open["type"] == "reasoning":
                    self._open["encrypted_content"] = event.signature
            elif event.text:
                out += self._reasoning_delta(event.text)
        elif isinstance(event, ToolCallDelta):
            out += self._call_delta(event)
        elif isinstance(event, StreamFinish):
            self._finish = event.reason
        return out

    def _open_message(self) -> bytes:
        item = self._open = _message("", status="in_progress")
        self._text = []
        out = self._add(item)
        return out + self._event(
            "response.content_part.added",
            item_id=item["id"],
            output_index=self._index(item),
            content_index=0,
            part=_text_part(""),
        )

    def _reasoning_delta(self, text: str) -> bytes:
        out = b""
        summary = self._shape.reasoning_summary
        if self._open is None or self._open["type"] != "reasoning":
            out += self._close()
            item = self._open = {"id": new_id("rs"), "type": "reasoning", "summary": []}
            self._text = []
            out += self._add(item)
            if summary:
                out += self._event(
                    "response.reasoning_summary_part.added",
                    item_id=item["id"],
                    output_index=self._index(item),
                    summary_index=0,
                    part={"type": "summary_text", "text": ""},
                )
        item = self._open
        self._text.append(text)
        if summary:
            out += self._event(
                "response.reasoning_summary_text.delta",
                item_id=item["id"],
                output_index=self._index(item),
                summary_index=0,
                delta=text,
            )
        return out

    def _call_delta(self, event: ToolCallDelta) -> bytes:
        out = b""
        item = self._calls.get(event.index)
        if item is None:
            out += self._close()
            call = ToolCall(event.id or new_id("call"), event.name or "", "")
            item = self._calls[event.index] = _function_call(call, status="in_progress")
            out += self._add(item)
        if event.arguments:
            item["arguments"] += event.arguments
            out += self._event(
                "response.function_call_arguments.delta",
                item_id=item["id"],
                output_index=self._index(item),
                delta=event.arguments,
            )
        return out

    def _close(self) -> bytes:
        """End the item being written (text or reasoning)."""
        item, self._open = self._open, None
        if item is None:
            return b""
        index, text = self._index(item), "".join(self._text)
        if item["type"] == "reasoning":
            item["content"] = [{"type": "reasoning_text", "text": text}]
            if not self._shape.reasoning_summary:
                return self._event("response.output_item.done", output_index=index, item=item)
            part = {"type": "summary_text", "text": text}
            item["summary"] = [part]
            out = self._event(
                "response.reasoning_summary_text.done",
                item_id=item["id"],
                output_index=index,
                summary_index=0,
                text=text,
            )
            out += self._event(
                "response.reasoning_summary_part.done",
                item_id=item["id"],
                output_index=index,
                summary_index=0,
                part=part,
            )
            return out + self._event("response.output_item.done", output_index=index, item=item)
        common = {"item_id": item["id"], "output_index": index, "content_index": 0}
        out = self._event("response.output_text.done", **common, text=text, logprobs=[])
        out += self._event("response.content_part.done", **common, part=_text_part(text))
        item["content"], item["status"] = [_text_part(text)], "completed"
        return out + self._event("response.output_item.done", output_index=index, item=item)

    def _close_calls(self) -> bytes:
        out = b""
        for item in self._calls.values():
            index = self._index(item)
            out += self._event(
                "response.function_call_arguments.done",
                item_id=item["id"],
                output_index=index,
                arguments=item["arguments"],
            )
            item["status"] = "completed"
            out += self._event("response.output_item.done", output_index=index, item=item)
        self._calls = {}
        return out

    def end(self, usage: Usage, cost: Cost | None) -> bytes:
        pending = self._pending
        if pending is not None:
            kind = str(pending.pop("type"))
            pending.pop("sequence_number", None)
            self.final = pending["response"]
            return self._event(kind, **pending, oneflow=oneflow_extra(usage, cost))
        out = self._start()
        if not self._output:  # an empty answer is still one message
            out += self._open_message()
        out += self._close() + self._close_calls()
        finish = self._finish
        response = self._shape.finished(self._output, finish, usage)
        self.final = response
        kind = "response.completed" if response["status"] == "completed" else "response.incomplete"
        return out + self._event(kind, response=response, oneflow=oneflow_extra(usage, cost))

    def error(self, exc: GatewayError, usage: Usage | None, cost: Cost | None) -> bytes:
        """An `error` event (the SDK raises it), then `response.failed`."""
        out = self._start()
        code = exc.code or exc.kind
        out += self._event("error", code=code, message=exc.message, param=exc.param)
        response = self._shape.envelope("failed")
        response["error"] = {"code": code, "message": exc.message}
        response["output"] = self._output
        if usage is not None:
            response["usage"] = usage_body(usage)
        extra = oneflow_extra(usage, cost) if usage is not None else None
        return out + self._event("response.failed", response=response, oneflow=extra)


def created_now() -> int:
    return int(time.time())
