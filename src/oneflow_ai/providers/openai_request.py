"""Canonical request -> OpenAI Chat Completions body (for a request that arrived in another
dialect; one in OpenAI's own is forwarded as written, `openai.OpenAIWire.request_body`)."""

from __future__ import annotations

from oneflow_ai.domain.chat import ChatRequest, ImagePart, Message, ResponseFormat, TextPart, Tool
from oneflow_ai.providers.openai_types import (
    ChatCompletionBody,
    ContentPartParam,
    ImageURL,
    NamedToolChoice,
    OpenAIMessageParam,
    OpenAIToolParam,
    ResponseFormatParam,
)

__all__ = ["build_chat_body"]

_CHOICES = ("auto", "none", "required")


def build_chat_body(request: ChatRequest, model: str) -> ChatCompletionBody:
    """The Chat Completions body of a canonical request."""
    body: ChatCompletionBody = {
        "model": model,
        # an assistant turn of thinking alone (another model's) has nothing to say here
        "messages": [
            _message(m)
            for m in request.messages
            if m.content or m.tool_calls or m.role != "assistant"
        ],
    }
    if request.reasoning is not None:
        # A reasoning model (the gateway leaves `reasoning` only for those): it takes
        # `max_completion_tokens`, not `max_tokens`, and the effort when one was asked.
        if request.max_tokens is not None:
            body["max_completion_tokens"] = request.max_tokens
        effort = request.reasoning.as_effort()
        if effort is not None:
            body["reasoning_effort"] = effort
    elif request.max_tokens is not None:
        body["max_tokens"] = request.max_tokens
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.stop:
        body["stop"] = request.stop
    if request.tools:
        body["tools"] = [_tool(tool) for tool in request.tools]
    if request.tool_choice is not None:
        body["tool_choice"] = _tool_choice(request.tool_choice)
    if request.parallel_tool_calls is False and request.tools:
        body["parallel_tool_calls"] = False
    if request.response_format is not None:
        body["response_format"] = _response_format(request.response_format)
    if request.user is not None:
        body["user"] = request.user
    return body


def _tool(tool: Tool) -> OpenAIToolParam:
    function: OpenAIToolParam = {"type": "function", "function": {"name": tool.name}}
    if tool.description:
        function["function"]["description"] = tool.description
    function["function"]["parameters"] = tool.parameters or {"type": "object", "properties": {}}
    return function


def _tool_choice(choice: str) -> str | NamedToolChoice:
    if choice in _CHOICES:
        return choice
    return {"type": "function", "function": {"name": choice}}


def _response_format(wanted: ResponseFormat) -> ResponseFormatParam:
    if wanted.kind == "json_object":
        return {"type": "json_object"}
    spec: ResponseFormatParam = {
        "type": "json_schema",
        "json_schema": {"name": wanted.name or "answer"},
    }
    if wanted.schema is not None:
        spec["json_schema"]["schema"] = wanted.schema
    return spec


def _message(message: Message) -> OpenAIMessageParam:
    out: OpenAIMessageParam = {"role": message.role}
    if message.role == "tool":
        out["tool_call_id"] = message.tool_call_id or ""
        out["content"] = message.text
        return out
    parts = message.content
    if all(isinstance(part, TextPart) for part in parts):
        text = message.text
        out["content"] = text if (text or message.role != "assistant") else None
    else:
        out["content"] = [_part(part) for part in parts]
    if message.name:
        out["name"] = message.name
    if message.tool_calls:
        out["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in message.tool_calls
        ]
    return out


def _part(part: TextPart | ImagePart) -> ContentPartParam:
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text}
    image: ImageURL = {"url": part.url}
    if part.detail:
        image["detail"] = part.detail
    return {"type": "image_url", "image_url": image}
