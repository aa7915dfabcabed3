"""`POST /v1/chat/completions`: the body's shape, declared once, and its canonical request.

`CHAT_COMPLETION_REQUEST` is both the check of a caller's body (a 400 naming the field) and the
`ChatCompletionRequest` schema of `/openapi.json` (`api/body_schema.py`). `parse_chat_request`
reads a checked body into a canonical `ChatRequest`, keeping the body (an OpenAI model gets it
unchanged) and naming the fields a Claude model cannot honour (`api/dialect_fields.py`).
"""

from __future__ import annotations

from typing import Any, cast

from oneflow_ai.api.body_schema import (
    Arr,
    Bool,
    Either,
    Field,
    Int,
    Num,
    Obj,
    Str,
    StrOrStrs,
    Tagged,
)
from oneflow_ai.api.dialect_fields import OPENAI_CARRIED, dialect_only
from oneflow_ai.api.validation import invalid
from oneflow_ai.domain.chat import (
    REASONING_EFFORTS,
    ChatRequest,
    ContentPart,
    ImagePart,
    Message,
    Reasoning,
    ReasoningEffort,
    ResponseFormat,
    Role,
    TextPart,
    Tool,
    ToolCall,
)

__all__ = [
    "CHAT_COMPLETION_REQUEST",
    "MODELS_FIELD",
    "ROLES",
    "model_field",
    "parse_chat_request",
]

#: The message roles of the OpenAI dialect and the canonical role each is read as.
ROLES: dict[str, Role] = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
    "tool": "tool",
}


def model_field(*examples: str) -> Field:
    """The `model` field, the same in both dialects."""
    return Field(
        "model",
        Str(),
        required=True,
        description="A catalog model id or alias (GET /v1/models), `auto`, or a strategy: "
        "cost_optimized, latency_optimized, quality_optimized, balanced",
        examples=examples,
    )


#: OneFlow's `models` field, the same in both dialects (`api/fallbacks.py` reads it).
MODELS_FIELD = Field(
    "models",
    Arr(Str()),
    description="OneFlow: fallback models, tried in order when `model` fails before any "
    "content was sent (OpenRouter's field; without `model`, the first is the model). "
    "Replaces the catalog's fallbacks; the X-OneFlow-Fallbacks header (a,b) is the same for "
    "any endpoint",
)

_PART = Tagged(
    {
        "text": Obj((Field("text", Str(), required=True),)),
        "image_url": Obj(
            (
                Field(
                    "image_url",
                    Obj((Field("url", Str(), required=True), Field("detail", Str()))),
                    required=True,
                ),
            )
        ),
    },
    unknown="content parts of type '{kind}' are not supported",
)
_FUNCTION_CALL = Obj(
    (
        Field("id", Str(), required=True),
        Field(
            "function",
            Obj((Field("name", Str(), required=True), Field("arguments", Str()))),
            required=True,
        ),
    )
)
CHAT_MESSAGE = Obj(
    (
        Field("role", Str(choices=tuple(ROLES)), required=True),
        Field(
            "content",
            Either(Str(), Arr(_PART), "a string or an array of content parts"),
            description="Text, or content parts ({type: text} / {type: image_url}); required "
            "but for an assistant message with tool calls",
        ),
        Field("name", Str()),
        Field("tool_call_id", Str(), description="A tool message: the call it answers"),
        Field("tool_calls", Arr(_FUNCTION_CALL), description="An assistant message's calls"),
    ),
    name="ChatMessage",
)
_TOOL = Obj(
    (
        Field("type", Str(choices=("function",)), required=True),
        Field(
            "function",
            Obj(
                (
                    Field("name", Str(), required=True),
                    Field("description", Str()),
                    Field("parameters", Obj(), description="A JSON schema of the arguments"),
                )
            ),
            required=True,
        ),
    )
)
_JSON_SCHEMA = Obj(
    (
        Field("name", Str(), required=True),
        Field("schema", Obj()),
        Field("description", Str()),
        Field("strict", Bool()),
    )
)

CHAT_COMPLETION_REQUEST = Obj(
    (
        model_field("gpt-4o", "claude-3-haiku-20240307", "auto"),
        Field("messages", Arr(CHAT_MESSAGE, non_empty=True), required=True),
        Field("n", Int(minimum=1), description="1 only"),
        Field("max_completion_tokens", Int(minimum=1)),
        Field("max_tokens", Int(minimum=1)),
        Field("stream", Bool()),
        Field(
            "stream_options",
            Obj((Field("include_usage", Bool()),)),
            description="{include_usage: true} adds a final usage chunk",
        ),
        Field(
            "response_format",
            Obj((Field("type", Str(), required=True), Field("json_schema", _JSON_SCHEMA))),
            description="{type: json_object} or {type: json_schema, json_schema: {name, schema}}",
        ),
        Field("temperature", Num(minimum=0, maximum=2)),
        Field("top_p", Num(minimum=0, maximum=1)),
        Field("stop", StrOrStrs(max_items=4)),
        Field("tools", Arr(_TOOL)),
        Field(
            "tool_choice",
            Either(
                Str(choices=("auto", "none", "required")),
                Obj((Field("function", Obj((Field("name", Str(), required=True),)), True),)),
                "a string or an object",
            ),
        ),
        Field("user", Str()),
        Field("parallel_tool_calls", Bool()),
        Field("reasoning_effort", Str(choices=REASONING_EFFORTS)),
        MODELS_FIELD,
    ),
    name="ChatCompletionRequest",
)


def parse_chat_request(body: dict[str, Any]) -> tuple[ChatRequest, bool]:
    """The canonical request, and whether the caller asked for a usage chunk."""
    CHAT_COMPLETION_REQUEST.read(body)
    get = body.get
    n = get("n")
    if n is not None and n != 1:
        raise invalid("n", "only n=1 is supported")
    max_tokens = get("max_completion_tokens")
    if max_tokens is None:
        max_tokens = get("max_tokens")
    options = get("stream_options")
    response_format, unknown_format = _response_format(get("response_format"))
    effort = get("reasoning_effort")
    stop = get("stop")
    request = ChatRequest(
        model=body["model"],
        messages=[_message(item, i) for i, item in enumerate(body["messages"])],
        max_tokens=None if max_tokens is None else int(max_tokens),
        temperature=_number(get("temperature")),
        top_p=_number(get("top_p")),
        stop=[stop] if isinstance(stop, str) else list(stop or ()),
        stream=bool(get("stream")),
        tools=[_tool(tool["function"]) for tool in get("tools") or ()],
        tool_choice=_tool_choice(get("tool_choice")),
        user=get("user"),
        response_format=response_format,
        parallel_tool_calls=get("parallel_tool_calls"),
        reasoning=None if effort is None else Reasoning(effort=cast(ReasoningEffort, effort)),
        raw=body,
        raw_dialect="openai",
        dialect_only=dialect_only(body, OPENAI_CARRIED, unknown_format),
    )
    return request, bool(options and options.get("include_usage"))


def _number(value: float | None) -> float | None:
    return None if value is None else float(value)


def _response_format(value: dict[str, Any] | None) -> tuple[ResponseFormat | None, tuple[str, ...]]:
    """JSON mode or a JSON schema; a format of another type is forwarded to OpenAI models
    only (the second value then names the field)."""
    if value is None:
        return None, ()
    kind = value["type"]
    if kind == "json_object":
        return ResponseFormat("json_object"), ()
    if kind == "json_schema":
        spec = value.get("json_schema")
        if spec is None:
            raise invalid("response_format.json_schema", "field required")
        return ResponseFormat("json_schema", spec.get("schema"), spec["name"]), ()
    return None, (() if kind == "text" else ("response_format",))


def _message(item: dict[str, Any], index: int) -> Message:
    role = ROLES[item["role"]]
    content = item.get("content")
    if content is None and role != "assistant":
        raise invalid(f"messages[{index}].content", "field required")
    message = Message(role=role, content=_content(content), name=item.get("name"))
    if role == "tool":
        call_id = item.get("tool_call_id")
        if call_id is None:
            raise invalid(f"messages[{index}].tool_call_id", "field required")
        message.tool_call_id = call_id
    if role == "assistant":
        message.tool_calls = [
            ToolCall(
                id=call["id"],
                name=call["function"]["name"],
                arguments=call["function"].get("arguments") or "",
            )
            for call in item.get("tool_calls") or ()
        ]
    return message


def _content(value: str | list[dict[str, Any]] | None) -> list[ContentPart]:
    if value is None:
        return []
    if isinstance(value, str):
        return [TextPart(value)]
    parts: list[ContentPart] = []
    for part in value:
        if part["type"] == "text":
            parts.append(TextPart(part["text"]))
        else:
            image = part["image_url"]
            parts.append(ImagePart(url=image["url"], detail=image.get("detail")))
    return parts


def _tool(function: dict[str, Any]) -> Tool:
    return Tool(
        name=function["name"],
        description=function.get("description"),
        parameters=function.get("parameters") or {},
    )


def _tool_choice(value: str | dict[str, Any] | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    name: str = value["function"]["name"]
    return name
