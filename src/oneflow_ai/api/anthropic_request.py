"""`POST /v1/messages` (and `count_tokens`): the body's shape, declared once, and its canonical
request.

`MESSAGES_REQUEST` is both the check of a caller's body (a 400 naming the field) and the
`MessagesRequest` schema of `/openapi.json` (`api/body_schema.py`); `MESSAGES_COUNT_REQUEST`
is the same without `max_tokens`. `parse_messages_request` reads a checked body into a
canonical `ChatRequest`, keeping the body (a Claude model gets it unchanged) and naming the
fields a GPT model cannot honour (`api/dialect_fields.py`).
"""

from __future__ import annotations

from typing import Any

import orjson

from oneflow_ai.api.body_schema import (
    Arr,
    Bool,
    Either,
    Field,
    Int,
    Num,
    Obj,
    Str,
    Tagged,
    Value,
)
from oneflow_ai.api.dialect_fields import ANTHROPIC_CARRIED, dialect_only
from oneflow_ai.api.openai_chat_request import MODELS_FIELD, model_field
from oneflow_ai.api.validation import invalid
from oneflow_ai.domain.chat import (
    ChatRequest,
    ContentPart,
    ImagePart,
    Message,
    Reasoning,
    ResponseFormat,
    TextPart,
    Tool,
    ToolCall,
)

__all__ = [
    "MESSAGES_COUNT_REQUEST",
    "MESSAGES_REQUEST",
    "MIN_THINKING_BUDGET",
    "parse_messages_request",
]

#: Anthropic's smallest thinking budget.
MIN_THINKING_BUDGET = 1024

_BLOCKS = "a string or an array of content blocks"
_TEXT = Obj((Field("text", Str(), required=True),))
_SOURCE = Obj(
    (
        Field("type", Str(choices=("base64", "url")), required=True),
        Field("url", Str()),
        Field("media_type", Str()),
        Field("data", Str()),
    )
)
_BLOCK = Tagged(
    {
        "text": _TEXT,
        "image": Obj((Field("source", _SOURCE, required=True),)),
        "tool_use": Obj(
            (
                Field("id", Str(), required=True),
                Field("name", Str(), required=True),
                Field("input", Value()),
            )
        ),
        "tool_result": Obj(
            (
                Field("tool_use_id", Str(), required=True),
                Field("content", Either(Str(), Arr(Tagged({"text": _TEXT})), _BLOCKS)),
            )
        ),
        "thinking": Obj(),
        "redacted_thinking": Obj(),
    }
)  # a block of another type, or of a type the turn's role cannot send: parse_messages_request
ANTHROPIC_MESSAGE = Obj(
    (
        Field("role", Str(choices=("user", "assistant")), required=True),
        Field("content", Either(Str(), Arr(_BLOCK), _BLOCKS), required=True),
    ),
    name="AnthropicMessage",
)
_TOOL = Obj(
    (
        Field("input_schema", Obj(), required=True),
        Field("name", Str(), required=True),
        Field("description", Str()),
    )
)

MESSAGES_REQUEST = Obj(
    (
        model_field("claude-3-haiku-20240307", "gpt-4o", "auto"),
        Field("max_tokens", Int(minimum=1), required=True),
        Field(
            "system",
            Either(
                Str(),
                Arr(Obj((Field("type", Str(choices=("text",)), True), *_TEXT.fields))),
                "a string or an array of text blocks",
            ),
        ),
        Field("messages", Arr(ANTHROPIC_MESSAGE, non_empty=True), required=True),
        Field("metadata", Obj((Field("user_id", Str()),))),
        Field(
            "tool_choice",
            Obj(
                (
                    Field("disable_parallel_tool_use", Bool()),
                    Field("type", Str(choices=("auto", "any", "tool", "none")), True),
                    Field("name", Str(), description="type tool: the tool to call"),
                )
            ),
        ),
        Field(
            "output_config",
            Obj((Field("format", Obj((Field("type", Str(), True), Field("schema", Obj())))),)),
            description="format: {type: json_schema, schema} (structured output)",
        ),
        Field(
            "thinking",
            Obj(
                (
                    Field("type", Str(), required=True),
                    Field("budget_tokens", Int(minimum=MIN_THINKING_BUDGET)),
                )
            ),
            description="{type: enabled, budget_tokens} (at least 1024)",
        ),
        Field("temperature", Num(minimum=0, maximum=1)),
        Field("top_p", Num(minimum=0, maximum=1)),
        Field("stop_sequences", Arr(Str())),
        Field("stream", Bool()),
        Field(
            "tools",
            Arr(
                Tagged(
                    {"custom": _TOOL},
                    unknown="server tools ('{kind}') are not supported",
                    default=_TOOL,
                )
            ),
        ),
        MODELS_FIELD,
    ),
    name="MessagesRequest",
)
MESSAGES_COUNT_REQUEST = MESSAGES_REQUEST.variant(
    "MessagesTokenCountRequest", optional=("max_tokens",)
)


def parse_messages_request(body: dict[str, Any], *, counting: bool = False) -> ChatRequest:
    """The canonical request of a Messages body (`counting`: a `count_tokens` body, which
    has no `max_tokens`)."""
    (MESSAGES_COUNT_REQUEST if counting else MESSAGES_REQUEST).read(body)
    get = body.get
    messages: list[Message] = []
    system = _system(get("system"))
    if system:
        messages.append(Message("system", [TextPart(system)]))
    for i, turn in enumerate(body["messages"]):
        messages.extend(_turn(turn, f"messages[{i}]"))
    metadata = get("metadata") or {}
    choice = get("tool_choice")
    response_format, uncarried = _output_format(get("output_config"))
    max_tokens = get("max_tokens")
    temperature, top_p = get("temperature"), get("top_p")
    return ChatRequest(
        model=body["model"],
        messages=messages,
        max_tokens=None if max_tokens is None else int(max_tokens),
        temperature=None if temperature is None else float(temperature),
        top_p=None if top_p is None else float(top_p),
        stop=list(get("stop_sequences") or ()),
        stream=bool(get("stream")),
        tools=[
            Tool(tool["name"], tool.get("description"), tool["input_schema"])
            for tool in get("tools") or ()
        ],
        tool_choice=_tool_choice(choice),
        user=metadata.get("user_id"),
        parallel_tool_calls=False if choice and choice.get("disable_parallel_tool_use") else None,
        response_format=response_format,
        reasoning=_thinking(get("thinking"), uncarried),
        raw=body,
        raw_dialect="anthropic",
        dialect_only=dialect_only(body, ANTHROPIC_CARRIED, uncarried),
    )


def _thinking(thinking: dict[str, Any] | None, uncarried: list[str]) -> Reasoning | None:
    """`thinking: {"type": "enabled", "budget_tokens": N}` (N at least 1024, as Anthropic
    requires; a GPT model gets the effort docs/dialects.md maps it to). `disabled` asks for
    nothing; another type (Claude's `adaptive`) goes to Claude models as written and is named
    for the others."""
    if thinking is None or thinking["type"] == "disabled":
        return None
    if thinking["type"] != "enabled":
        uncarried.append("thinking.type")
        return None
    budget = thinking.get("budget_tokens")
    if budget is None:
        raise invalid("thinking.budget_tokens", "field required")
    return Reasoning(budget_tokens=int(budget))


def _output_format(config: dict[str, Any] | None) -> tuple[ResponseFormat | None, list[str]]:
    """`output_config.format` (a JSON schema the answer follows), and the names of the
    `output_config` keys a request in another dialect cannot carry (`effort`, ...)."""
    if config is None:
        return None, []
    uncarried = [
        f"output_config.{key}"
        for key, value in config.items()
        if key != "format" and value is not None
    ]
    spec = config.get("format")
    if spec is None:
        return None, uncarried
    if spec["type"] != "json_schema":
        uncarried.append("output_config.format")
        return None, uncarried
    if spec.get("schema") is None:
        raise invalid("output_config.format.schema", "field required")
    return ResponseFormat("json_schema", spec["schema"]), uncarried


def _system(value: str | list[dict[str, Any]] | None) -> str:
    if value is None or isinstance(value, str):
        return value or ""
    return "\n\n".join(block["text"] for block in value)


def _turn(turn: dict[str, Any], path: str) -> list[Message]:
    """One Anthropic turn as canonical messages: tool results become `tool` messages."""
    role = turn["role"]
    content = turn["content"]
    if isinstance(content, str):
        return [Message("user" if role == "user" else "assistant", [TextPart(content)])]
    parts: list[ContentPart] = []
    calls: list[ToolCall] = []
    results: list[Message] = []
    for i, block in enumerate(content):
        kind = block["type"]
        if kind == "text":
            parts.append(TextPart(block["text"]))
        elif kind == "image":
            parts.append(ImagePart(_image_url(block["source"], f"{path}.content[{i}].source")))
        elif kind == "tool_use" and role == "assistant":
            arguments = block.get("input")
            calls.append(
                ToolCall(
                    id=block["id"],
                    name=block["name"],
                    arguments=orjson.dumps(arguments if arguments is not None else {}).decode(),
                )
            )
        elif kind in ("thinking", "redacted_thinking") and role == "assistant":
            # A Claude model's reasoning, sent back as it came (signature and all): a Claude
            # model gets the body as written; another dialect's model does not read it.
            continue
        elif kind == "tool_result" and role == "user":
            text = _result_text(block.get("content"))
            results.append(Message("tool", [TextPart(text)], tool_call_id=block["tool_use_id"]))
        else:
            at = f"{path}.content[{i}].type"
            raise invalid(at, f"'{kind}' blocks are not supported in {role} turns")
    messages = results
    if role == "assistant":
        messages.append(Message("assistant", parts, tool_calls=calls))
    elif parts:
        messages.append(Message("user", parts))
    return messages


def _image_url(source: dict[str, Any], path: str) -> str:
    needed = ("url",) if source["type"] == "url" else ("media_type", "data")
    for key in needed:
        if source.get(key) is None:
            raise invalid(f"{path}.{key}", "field required")
    if source["type"] == "url":
        url: str = source["url"]
        return url
    return f"data:{source['media_type']};base64,{source['data']}"


def _result_text(content: str | list[dict[str, Any]] | None) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    return "\n".join(part["text"] for part in content if part["type"] == "text")


def _tool_choice(choice: dict[str, Any] | None) -> str | None:
    if choice is None:
        return None
    kind: str = choice["type"]
    if kind == "tool":
        name = choice.get("name")
        if name is None:
            raise invalid("tool_choice.name", "field required")
        return str(name)
    return "required" if kind == "any" else kind
