"""Anthropic's Messages dialect at the edge: request in, message and stream events out.

`parse_messages_request` reads a caller's body into a canonical `ChatRequest` (keeping the
body, so a Claude model gets it unchanged, and naming the fields a GPT model cannot honour:
`api/dialect_fields.py`). `render_message` writes the answer (the provider's
own body when it speaks this dialect). `EventEncoder` writes a stream's events as the full
`message_start` ... `message_stop` sequence that the official SDK parses; the final
`message_delta` carries the usage in its own `usage` field and the credits in an extra
`oneflow` field, and an error event carries them too.
"""

from __future__ import annotations

from typing import Any

import orjson

from oneflow_ai.api.dialect_fields import ANTHROPIC_CARRIED, dialect_only
from oneflow_ai.api.errors import Dialect, error_body
from oneflow_ai.api.openai_chat import oneflow_extra
from oneflow_ai.api.validation import Fields, invalid
from oneflow_ai.billing.cost import Cost
from oneflow_ai.domain.chat import (
    ChatRequest,
    ChatResponse,
    ContentPart,
    FinishReason,
    ImagePart,
    Message,
    Reasoning,
    ResponseFormat,
    StreamEvent,
    StreamFinish,
    StreamStart,
    StreamUsage,
    TextDelta,
    TextPart,
    ThinkingDelta,
    Tool,
    ToolCall,
    ToolCallDelta,
)
from oneflow_ai.domain.usage import Usage
from oneflow_ai.errors import GatewayError

__all__ = ["EventEncoder", "parse_messages_request", "render_message"]

STOP_REASONS: dict[FinishReason, str] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
}


# ---- request -----------------------------------------------------------------------------


def parse_messages_request(body: dict[str, Any], *, counting: bool = False) -> ChatRequest:
    """The canonical request of a Messages body (`counting`: a `count_tokens` body, which
    has no `max_tokens`)."""
    fields = Fields(body)
    model = fields.req_str("model")
    max_tokens = fields.opt_int("max_tokens", minimum=1)
    if max_tokens is None and not counting:
        raise invalid("max_tokens", "field required")
    messages: list[Message] = []
    system = _system(fields)
    if system:
        messages.append(Message("system", [TextPart(system)]))
    for i, raw in enumerate(fields.req_list("messages", non_empty=True)):
        messages.extend(_turn(Fields(raw, f"messages[{i}]")))
    metadata = fields.opt_obj("metadata")
    choice = fields.opt_obj("tool_choice")
    single_call = choice.opt_bool("disable_parallel_tool_use") if choice is not None else None
    response_format, uncarried = _output_format(fields)
    reasoning = _thinking(fields, uncarried)
    return ChatRequest(
        model=model,
        messages=messages,
        max_tokens=max_tokens,
        temperature=fields.opt_number("temperature", minimum=0, maximum=1),
        top_p=fields.opt_number("top_p", minimum=0, maximum=1),
        stop=_stop_sequences(fields),
        stream=bool(fields.opt_bool("stream")),
        tools=_tools(fields),
        tool_choice=_tool_choice(fields),
        user=metadata.opt_str("user_id") if metadata is not None else None,
        parallel_tool_calls=False if single_call else None,
        response_format=response_format,
        reasoning=reasoning,
        raw=body,
        raw_dialect="anthropic",
        dialect_only=dialect_only(body, ANTHROPIC_CARRIED, uncarried),
    )


#: Anthropic's smallest thinking budget.
MIN_THINKING_BUDGET = 1024


def _thinking(fields: Fields, uncarried: list[str]) -> Reasoning | None:
    """`thinking: {"type": "enabled", "budget_tokens": N}` (N at least 1024, as Anthropic
    requires; a GPT model gets the effort docs/dialects.md maps it to). `disabled` asks for
    nothing; another type (Claude's `adaptive`) goes to Claude models as written and is named
    for the others."""
    thinking = fields.opt_obj("thinking")
    if thinking is None:
        return None
    kind = thinking.req_str("type")
    if kind == "disabled":
        return None
    if kind != "enabled":
        uncarried.append("thinking.type")
        return None
    budget = thinking.opt_int("budget_tokens", minimum=MIN_THINKING_BUDGET)
    if budget is None:
        raise invalid(thinking.at("budget_tokens"), "field required")
    return Reasoning(budget_tokens=budget)


def _output_format(fields: Fields) -> tuple[ResponseFormat | None, list[str]]:
    """`output_config.format` (a JSON schema the answer follows), and the names of the
    `output_config` keys a request in another dialect cannot carry (`effort`, ...)."""
    config = fields.opt_obj("output_config")
    if config is None:
        return None, []
    wanted: ResponseFormat | None = None
    uncarried = [
        f"output_config.{key}"
        for key, value in config.data.items()
        if key != "format" and value is not None
    ]
    spec = config.opt_obj("format")
    if spec is not None and spec.req_str("type") == "json_schema":
        wanted = ResponseFormat("json_schema", spec.req_obj("schema").data)
    elif spec is not None:
        uncarried.append("output_config.format")
    return wanted, uncarried


def _system(fields: Fields) -> str:
    value = fields.data.get("system")
    if value is None or isinstance(value, str):
        return value or ""
    if not isinstance(value, list):
        raise invalid("system", "must be a string or an array of text blocks")
    texts = []
    for i, raw in enumerate(value):
        block = Fields(raw, f"system[{i}]")
        block.req_str("type", choices=("text",))
        texts.append(block.req_str("text"))
    return "\n\n".join(texts)


def _stop_sequences(fields: Fields) -> list[str]:
    values = fields.opt_list("stop_sequences") or []
    for i, value in enumerate(values):
        if not isinstance(value, str):
            raise invalid(f"stop_sequences[{i}]", "must be a string")
    return values


def _turn(fields: Fields) -> list[Message]:
    """One Anthropic turn as canonical messages: tool results become `tool` messages."""
    role = fields.req_str("role", choices=("user", "assistant"))
    content = fields.data.get("content")
    if isinstance(content, str):
        return [Message("user" if role == "user" else "assistant", [TextPart(content)])]
    if not isinstance(content, list):
        raise invalid(fields.at("content"), "must be a string or an array of content blocks")
    parts: list[ContentPart] = []
    calls: list[ToolCall] = []
    results: list[Message] = []
    for i, raw in enumerate(content):
        block = Fields(raw, fields.at(f"content[{i}]"))
        kind = block.req_str("type")
        if kind == "text":
            parts.append(TextPart(block.req_str("text")))
        elif kind == "image":
            parts.append(ImagePart(_image_url(block.req_obj("source"))))
        elif kind == "tool_use" and role == "assistant":
            arguments = block.data.get("input")
            calls.append(
                ToolCall(
                    id=block.req_str("id"),
                    name=block.req_str("name"),
                    arguments=orjson.dumps(arguments if arguments is not None else {}).decode(),
                )
            )
        elif kind in ("thinking", "redacted_thinking") and role == "assistant":
            # A Claude model's reasoning, sent back as it came (signature and all): a Claude
            # model gets the body as written; another dialect's model does not read it.
            continue
        elif kind == "tool_result" and role == "user":
            results.append(
                Message(
                    "tool",
                    [TextPart(_result_text(block))],
                    tool_call_id=block.req_str("tool_use_id"),
                )
            )
        else:
            raise invalid(block.at("type"), f"'{kind}' blocks are not supported in {role} turns")
    messages = results
    if role == "assistant":
        messages.append(Message("assistant", parts, tool_calls=calls))
    elif parts:
        messages.append(Message("user", parts))
    return messages


def _image_url(source: Fields) -> str:
    kind = source.req_str("type", choices=("base64", "url"))
    if kind == "url":
        return source.req_str("url")
    return f"data:{source.req_str('media_type')};base64,{source.req_str('data')}"


def _result_text(block: Fields) -> str:
    content = block.data.get("content")
    if content is None or isinstance(content, str):
        return content or ""
    if not isinstance(content, list):
        raise invalid(block.at("content"), "must be a string or an array of content blocks")
    texts = []
    for i, raw in enumerate(content):
        part = Fields(raw, block.at(f"content[{i}]"))
        if part.req_str("type") == "text":
            texts.append(part.req_str("text"))
    return "\n".join(texts)


def _tools(fields: Fields) -> list[Tool]:
    tools = []
    for i, raw in enumerate(fields.opt_list("tools") or ()):
        tool = Fields(raw, f"tools[{i}]")
        kind = tool.opt_str("type")
        if kind not in (None, "custom"):
            raise invalid(tool.at("type"), f"server tools ('{kind}') are not supported")
        schema = tool.req_obj("input_schema")
        tools.append(Tool(tool.req_str("name"), tool.opt_str("description"), schema.data))
    return tools


def _tool_choice(fields: Fields) -> str | None:
    choice = fields.opt_obj("tool_choice")
    if choice is None:
        return None
    kind = choice.req_str("type", choices=("auto", "any", "tool", "none"))
    if kind == "tool":
        return choice.req_str("name")
    return "required" if kind == "any" else kind


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
