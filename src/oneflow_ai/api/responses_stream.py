"""A stream in the Responses API's wire format: the typed server-sent events the official
SDKs parse (`response.created`, `response.in_progress`, `response.output_item.added`,
`response.content_part.added`, `response.output_text.delta`, ..., `response.completed` with
usage), each with its `sequence_number`. A bridged model's canonical events are written here;
an OpenAI model's own events pass through (`WireEvent`) under OneFlow's id.
"""

from __future__ import annotations

from typing import Any

import orjson

from oneflow_ai.api.openai_chat import oneflow_extra
from oneflow_ai.api.responses_output import (
    ResponseShape,
    function_call_item,
    message_item,
    new_id,
    text_part,
    usage_body,
)
from oneflow_ai.billing.cost import Cost
from oneflow_ai.domain.chat import (
    FinishReason,
    StreamEvent,
    StreamFinish,
    TextDelta,
    ThinkingDelta,
    ToolCall,
    ToolCallDelta,
    WireEvent,
)
from oneflow_ai.domain.usage import Usage
from oneflow_ai.errors import GatewayError

__all__ = ["ResponsesEncoder"]


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
                out += self._close() + self._openmessage_item()
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
        elif isinstance(event, ThinkingDelta):
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

    def _openmessage_item(self) -> bytes:
        item = self._open = message_item("", status="in_progress")
        self._text = []
        out = self._add(item)
        return out + self._event(
            "response.content_part.added",
            item_id=item["id"],
            output_index=self._index(item),
            content_index=0,
            part=text_part(""),
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
            item = self._calls[event.index] = function_call_item(call, status="in_progress")
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
        out += self._event("response.content_part.done", **common, part=text_part(text))
        item["content"], item["status"] = [text_part(text)], "completed"
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
            out += self._openmessage_item()
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
