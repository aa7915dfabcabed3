"""A Responses API body (`POST /v1/responses`) read into a canonical `ChatRequest`.

Every field is checked for its type (a 400 naming it otherwise), whichever model answers.
What only OpenAI's own `/responses` can do (built-in tools, `include`, `prompt`, item types
other than messages and function calls and their outputs, ...) is collected in
`ResponsesInput.native_only`: the edge refuses it with a 400 naming the field when the model
is bridged through the canonical types (docs/responses.md), and forwards it to an OpenAI
model. The instructions and the conversation of `previous_response_id` are put before the input's
messages by the edge.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from oneflow_ai.api.openai_chat_request import ROLES
from oneflow_ai.api.validation import Fields, invalid
from oneflow_ai.domain.chat import (
    REASONING_EFFORTS,
    ChatRequest,
    ContentPart,
    ImagePart,
    Message,
    Reasoning,
    ResponseFormat,
    Role,
    TextPart,
    Tool,
    ToolCall,
)

__all__ = ["ResponsesInput", "input_items", "messages_of", "parse_responses_request"]

#: A message item's roles: the chat roles but `tool` (a tool's output is an item of its own).
_ROLES: dict[str, Role] = {name: role for name, role in ROLES.items() if role != "tool"}
_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")
_SUMMARIES = ("auto", "concise", "detailed")
#: Fields a bridged model honours (or OneFlow answers itself), with their types checked below.
_CARRIED = frozenset(
    {
        "model", "input", "instructions", "max_output_tokens", "temperature", "top_p", "tools",
        "tool_choice", "parallel_tool_calls", "text", "reasoning", "store", "stream",
        "stream_options", "previous_response_id", "metadata", "user", "safety_identifier",
        "truncation", "include", "service_tier", "top_logprobs", "background",
    }
)  # fmt: skip


@dataclass(slots=True)
class ResponsesInput:
    """The parsed body: the canonical request (without the earlier conversation yet) and
    what the edge needs besides."""

    chat: ChatRequest
    body: dict[str, Any]
    items: list[dict[str, Any]]  # the input as items (a string input is one user message)
    instructions: str | None = None
    store: bool = True
    previous_response_id: str | None = None
    reasoning_summary: bool = False
    native_only: list[str] = field(default_factory=list)


def parse_responses_request(body: dict[str, Any]) -> ResponsesInput:
    fields = Fields(body)
    model = fields.req_str("model")
    native_only: list[str] = [key for key in body if key not in _CARRIED]
    if fields.opt_bool("background"):
        raise invalid("background", "background responses are not supported by OneFlow")
    if "conversation" in fields:
        raise invalid("conversation", "conversations are not supported: use previous_response_id")
    items = input_items(fields)
    messages = messages_of(items, native_only)
    instructions = fields.opt_str("instructions")
    reasoning = fields.opt_obj("reasoning")
    effort = summary = None
    if reasoning is not None:
        effort = reasoning.opt_str("effort", choices=_EFFORTS)
        summary = reasoning.opt_str("summary", choices=_SUMMARIES) or reasoning.opt_str(
            "generate_summary", choices=_SUMMARIES
        )
    _check_options(fields, native_only)
    request = ChatRequest(
        model=model,
        messages=messages,
        max_tokens=fields.opt_int("max_output_tokens", minimum=1),
        temperature=fields.opt_number("temperature", minimum=0, maximum=2),
        top_p=fields.opt_number("top_p", minimum=0, maximum=1),
        stream=bool(fields.opt_bool("stream")),
        tools=_tools(fields, native_only),
        tool_choice=_tool_choice(fields, native_only),
        user=fields.opt_str("user") or fields.opt_str("safety_identifier"),
        response_format=_text_format(fields, native_only),
        parallel_tool_calls=fields.opt_bool("parallel_tool_calls"),
        reasoning=Reasoning(effort=effort) if effort in REASONING_EFFORTS else None,
        raw_dialect="responses",
    )
    store = fields.opt_bool("store")
    return ResponsesInput(
        chat=request,
        body=body,
        items=items,
        instructions=instructions,
        store=True if store is None else store,
        previous_response_id=fields.opt_str("previous_response_id"),
        reasoning_summary=summary is not None,
        native_only=native_only,
    )


def _check_options(fields: Fields, native_only: list[str]) -> None:
    """Options with a value that asks for nothing are accepted for every model."""
    metadata = fields.opt_obj("metadata")
    if metadata is not None:
        for key, value in metadata.data.items():
            if not isinstance(value, str):
                raise invalid(metadata.at(key), "must be a string")
    truncation = fields.opt_str("truncation", choices=("auto", "disabled"))
    if truncation == "auto":
        native_only.append("truncation")
    include = fields.opt_list("include")
    if include:
        native_only.append("include")
    tier = fields.opt_str("service_tier")
    if tier not in (None, "auto", "default"):
        native_only.append("service_tier")
    if fields.opt_int("top_logprobs", minimum=0):
        native_only.append("top_logprobs")
    options = fields.opt_obj("stream_options")
    if options is not None:
        options.opt_bool("include_obfuscation")


# ---- input items -----------------------------------------------------------------------


def input_items(fields: Fields) -> list[dict[str, Any]]:
    """The `input` as a list of items (checked as objects; their fields as they are read)."""
    value = fields.data.get("input")
    if value is None:
        if fields.data.get("previous_response_id") is not None:
            return []
        raise invalid("input", "field required")
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": value}]
    if not isinstance(value, list):
        raise invalid("input", "must be a string or an array of input items")
    for i, item in enumerate(value):
        Fields(item, f"input[{i}]")
    return list(value)


def messages_of(items: list[dict[str, Any]], native_only: list[str]) -> list[Message]:
    """Input items (the earlier conversation's included) as canonical messages; items only
    OpenAI's own `/responses` understands are named in `native_only`."""
    messages: list[Message] = []
    for i, raw in enumerate(items):
        item = Fields(raw, f"input[{i}]")
        kind = item.opt_str("type") or "message"
        if kind == "message":
            role = _ROLES[item.req_str("role", choices=_ROLES)]
            messages.append(Message(role=role, content=_content(item, native_only)))
        elif kind == "function_call":
            call = ToolCall(
                id=item.req_str("call_id"), name=item.req_str("name"), arguments=_args(item)
            )
            last = messages[-1] if messages else None
            if last is not None and last.role == "assistant":
                last.tool_calls.append(call)
            else:
                messages.append(Message(role="assistant", tool_calls=[call]))
        elif kind == "function_call_output":
            output = raw.get("output")
            text = output if isinstance(output, str) else None
            if text is None:
                parts = _parts(item, "output", native_only)
                if any(isinstance(p, ImagePart) for p in parts):
                    native_only.append(item.at("output"))  # a tool result is text elsewhere
                text = "".join(p.text for p in parts if isinstance(p, TextPart))
            messages.append(
                Message(role="tool", content=[TextPart(text)], tool_call_id=item.req_str("call_id"))
            )
        elif kind == "reasoning":
            thought = _thought(item)
            if thought is not None:
                messages.append(thought)
        else:
            native_only.append(item.at("type"))
    return messages


def _thought(item: Fields) -> Message | None:
    """A reasoning item a bridged model wrote (its text and the provider's signature in
    `encrypted_content`) as the start of an assistant turn; None for one without a signature
    (OpenAI's own reasoning, which no other model reads)."""
    signature = item.opt_str("encrypted_content")
    if signature is None:
        return None
    texts: list[str] = []
    for key, kind in (("content", "reasoning_text"), ("summary", "summary_text")):
        for j, raw in enumerate(item.opt_list(key) or ()):
            part = Fields(raw, item.at(f"{key}[{j}]"))
            if part.req_str("type") == kind:
                texts.append(part.req_str("text"))
        if texts:
            break
    return Message(role="assistant", reasoning="".join(texts), reasoning_signature=signature)


def _args(item: Fields) -> str:
    value = item.data.get("arguments")
    if value is None:
        raise invalid(item.at("arguments"), "field required")
    if not isinstance(value, str):
        raise invalid(item.at("arguments"), "must be a string (JSON text)")
    return value


def _content(item: Fields, native_only: list[str]) -> list[ContentPart]:
    value = item.data.get("content")
    if value is None:
        raise invalid(item.at("content"), "field required")
    if isinstance(value, str):
        return [TextPart(value)]
    return _parts(item, "content", native_only)


def _parts(item: Fields, key: str, native_only: list[str]) -> list[ContentPart]:
    value = item.data.get(key)
    if not isinstance(value, list):
        raise invalid(item.at(key), "must be a string or an array of content parts")
    parts: list[ContentPart] = []
    for j, raw in enumerate(value):
        part = Fields(raw, item.at(f"{key}[{j}]"))
        kind = part.req_str("type")
        if kind in ("input_text", "output_text", "text"):
            parts.append(TextPart(part.req_str("text")))
        elif kind == "refusal":
            parts.append(TextPart(part.req_str("refusal")))
        elif kind == "input_image":
            url = part.opt_str("image_url")
            if url is None:
                part.opt_str("file_id")
                native_only.append(part.at("file_id"))
                continue
            parts.append(ImagePart(url=url, detail=part.opt_str("detail")))
        elif kind == "input_file" or kind == "input_audio":
            native_only.append(part.at("type"))
        else:
            raise invalid(part.at("type"), f"content parts of type '{kind}' are not supported")
    return parts


# ---- tools and formats -----------------------------------------------------------------


def _tools(fields: Fields, native_only: list[str]) -> list[Tool]:
    tools: list[Tool] = []
    for i, raw in enumerate(fields.opt_list("tools") or ()):
        tool = Fields(raw, f"tools[{i}]")
        kind = tool.req_str("type")
        if kind != "function":
            native_only.append(f"tools[{i}] ({kind})")
            continue
        parameters = tool.opt_obj("parameters")
        tool.opt_bool("strict")
        tools.append(
            Tool(
                name=tool.req_str("name"),
                description=tool.opt_str("description"),
                parameters=parameters.data if parameters is not None else {},
            )
        )
    return tools


def _tool_choice(fields: Fields, native_only: list[str]) -> str | None:
    value = fields.data.get("tool_choice")
    if value is None:
        return None
    if isinstance(value, str):
        return fields.req_str("tool_choice", choices=("auto", "none", "required"))
    choice = Fields(value, "tool_choice")
    kind = choice.req_str("type")
    if kind == "function":
        return choice.req_str("name")
    native_only.append(f"tool_choice ({kind})")
    return None


def _text_format(fields: Fields, native_only: list[str]) -> ResponseFormat | None:
    text = fields.opt_obj("text")
    if text is None:
        return None
    verbosity = text.opt_str("verbosity", choices=("low", "medium", "high"))
    if verbosity not in (None, "medium"):
        native_only.append("text.verbosity")
    spec = text.opt_obj("format")
    if spec is None:
        return None
    kind = spec.req_str("type", choices=("text", "json_object", "json_schema"))
    if kind == "json_object":
        return ResponseFormat("json_object")
    if kind == "json_schema":
        schema = spec.req_obj("schema")
        spec.opt_bool("strict")
        return ResponseFormat("json_schema", schema.data, spec.req_str("name"))
    return None
