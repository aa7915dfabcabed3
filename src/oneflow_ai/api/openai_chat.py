"""OpenAI's Chat Completions dialect at the edge: request in, answer and stream chunks out.

`parse_chat_request` reads a caller's body into a canonical `ChatRequest` (keeping the body,
so an OpenAI model gets it unchanged, and naming the fields a Claude model cannot honour:
`api/dialect_fields.py`). `render_chat_completion` writes the answer (the
provider's own body when it speaks this dialect). `ChunkEncoder` writes a stream's events as
`chat.completion.chunk` SSE lines that the official SDK parses; the stream ends with usage and
credits: in a final usage chunk when the caller asked `stream_options.include_usage`,
otherwise in an extra `oneflow` field of the finish chunk, and an error event carries them too.
"""

from __future__ import annotations

from typing import Any, cast

import orjson

from oneflow_ai.api.dialect_fields import OPENAI_CARRIED, dialect_only
from oneflow_ai.api.errors import Dialect, error_body
from oneflow_ai.api.validation import Fields, invalid
from oneflow_ai.billing.cost import Cost
from oneflow_ai.domain.chat import (
    REASONING_EFFORTS,
    ChatRequest,
    ChatResponse,
    ContentPart,
    FinishReason,
    ImagePart,
    Message,
    Reasoning,
    ReasoningEffort,
    ResponseFormat,
    Role,
    StreamEvent,
    StreamFinish,
    StreamStart,
    TextDelta,
    TextPart,
    Tool,
    ToolCall,
    ToolCallDelta,
)
from oneflow_ai.domain.usage import Usage
from oneflow_ai.errors import GatewayError

__all__ = ["ChunkEncoder", "oneflow_extra", "parse_chat_request", "render_chat_completion"]

_ROLES: dict[str, Role] = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
    "tool": "tool",
}
_DONE = b"data: [DONE]\n\n"


# ---- request -----------------------------------------------------------------------------


def parse_chat_request(body: dict[str, Any]) -> tuple[ChatRequest, bool]:
    """The canonical request, and whether the caller asked for a usage chunk."""
    fields = Fields(body)
    model = fields.req_str("model")
    messages = [
        _message(item, f"messages[{i}]")
        for i, item in enumerate(fields.req_list("messages", non_empty=True))
    ]
    n = fields.opt_int("n", minimum=1)
    if n is not None and n != 1:
        raise invalid("n", "only n=1 is supported")
    max_tokens = fields.opt_int("max_completion_tokens", minimum=1)
    if max_tokens is None:
        max_tokens = fields.opt_int("max_tokens", minimum=1)
    stream = bool(fields.opt_bool("stream"))
    include_usage = False
    options = fields.opt_obj("stream_options")
    if options is not None:
        include_usage = bool(options.opt_bool("include_usage"))
    response_format, unknown_format = _response_format(fields)
    request = ChatRequest(
        model=model,
        messages=messages,
        max_tokens=max_tokens,
        temperature=fields.opt_number("temperature", minimum=0, maximum=2),
        top_p=fields.opt_number("top_p", minimum=0, maximum=1),
        stop=fields.stop("stop", max_items=4),
        stream=stream,
        tools=_tools(fields),
        tool_choice=_tool_choice(fields),
        user=fields.opt_str("user"),
        response_format=response_format,
        parallel_tool_calls=fields.opt_bool("parallel_tool_calls"),
        reasoning=_reasoning(fields),
        raw=body,
        raw_dialect="openai",
        dialect_only=dialect_only(body, OPENAI_CARRIED, unknown_format),
    )
    return request, include_usage


def _reasoning(fields: Fields) -> Reasoning | None:
    effort = fields.opt_str("reasoning_effort", choices=REASONING_EFFORTS)
    return None if effort is None else Reasoning(effort=cast(ReasoningEffort, effort))


def _response_format(fields: Fields) -> tuple[ResponseFormat | None, tuple[str, ...]]:
    """JSON mode or a JSON schema; a format of another type is forwarded to OpenAI models
    only (the second value then names the field)."""
    value = fields.opt_obj("response_format")
    if value is None:
        return None, ()
    kind = value.req_str("type")
    if kind == "json_object":
        return ResponseFormat("json_object"), ()
    if kind == "json_schema":
        spec = value.req_obj("json_schema")
        schema = spec.opt_obj("schema")
        name = spec.req_str("name")
        return ResponseFormat("json_schema", schema.data if schema is not None else None, name), ()
    return None, (() if kind == "text" else ("response_format",))


def _message(item: object, path: str) -> Message:
    fields = Fields(item, path)
    role_name = fields.req_str("role", choices=_ROLES)
    role = _ROLES[role_name]
    content = _content(fields, required=role != "assistant")
    message = Message(role=role, content=content, name=fields.opt_str("name"))
    if role == "tool":
        message.tool_call_id = fields.req_str("tool_call_id")
    if role == "assistant":
        for i, raw in enumerate(fields.opt_list("tool_calls") or ()):
            call = Fields(raw, fields.at(f"tool_calls[{i}]"))
            function = call.req_obj("function")
            message.tool_calls.append(
                ToolCall(
                    id=call.req_str("id"),
                    name=function.req_str("name"),
                    arguments=function.opt_str("arguments") or "",
                )
            )
    return message


def _content(fields: Fields, *, required: bool) -> list[ContentPart]:
    value = fields.data.get("content")
    if value is None:
        if required:
            raise invalid(fields.at("content"), "field required")
        return []
    if isinstance(value, str):
        return [TextPart(value)]
    if not isinstance(value, list):
        raise invalid(fields.at("content"), "must be a string or an array of content parts")
    parts: list[ContentPart] = []
    for i, raw in enumerate(value):
        part = Fields(raw, fields.at(f"content[{i}]"))
        kind = part.req_str("type")
        if kind == "text":
            parts.append(TextPart(part.req_str("text")))
        elif kind == "image_url":
            image = part.req_obj("image_url")
            parts.append(ImagePart(url=image.req_str("url"), detail=image.opt_str("detail")))
        else:
            raise invalid(part.at("type"), f"content parts of type '{kind}' are not supported")
    return parts


def _tools(fields: Fields) -> list[Tool]:
    tools: list[Tool] = []
    for i, raw in enumerate(fields.opt_list("tools") or ()):
        tool = Fields(raw, f"tools[{i}]")
        tool.req_str("type", choices=("function",))
        function = tool.req_obj("function")
        parameters = function.opt_obj("parameters")
        tools.append(
            Tool(
                name=function.req_str("name"),
                description=function.opt_str("description"),
                parameters=parameters.data if parameters is not None else {},
            )
        )
    return tools


def _tool_choice(fields: Fields) -> str | None:
    value = fields.data.get("tool_choice")
    if value is None:
        return None
    if isinstance(value, str):
        return fields.req_str("tool_choice", choices=("auto", "none", "required"))
    choice = Fields(value, "tool_choice")
    return choice.req_obj("function").req_str("name")


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
