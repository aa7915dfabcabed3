"""Canonical request -> Anthropic Messages body (for a request that arrived in another dialect;
one in Anthropic's own is forwarded as written, `anthropic.AnthropicWire.request_body`).

As Anthropic's API reference describes: system messages become the `system` field, assistant
tool calls `tool_use` blocks, tool results `tool_result` blocks in a user turn (consecutive
turns of one role are merged), `parallel_tool_calls: false` becomes
`disable_parallel_tool_use`, and a response format is asked for as `anthropic_json.py`
describes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import orjson

from oneflow_ai.domain.chat import ChatRequest, ImagePart, Message, TextPart, Tool
from oneflow_ai.errors import BadRequestError
from oneflow_ai.providers.anthropic_json import apply_response_format
from oneflow_ai.providers.anthropic_types import (
    AnthropicMessageParam,
    AnthropicToolParam,
    ContentBlock,
    ImageSource,
    MessagesBody,
    ToolChoiceParam,
)

__all__ = ["DEFAULT_MAX_TOKENS", "build_messages_body", "image_source"]

#: `max_tokens` is required by Anthropic; Claude 3 models write at most 4,096 tokens.
DEFAULT_MAX_TOKENS = 4096
#: Without a `max_tokens` of the caller's, thinking leaves at least this much for the answer.
MIN_ANSWER_TOKENS = 1024


def build_messages_body(
    request: ChatRequest, model: str, default_max_tokens: int = DEFAULT_MAX_TOKENS
) -> MessagesBody:
    """The Messages body of a canonical request."""
    budget = request.reasoning.as_budget() if request.reasoning is not None else None
    if budget is not None and request.max_tokens is None:
        default_max_tokens = max(default_max_tokens, budget + MIN_ANSWER_TOKENS)
    body: MessagesBody = {
        "model": model,
        "max_tokens": request.max_tokens or default_max_tokens,
        "messages": _turns(request.messages),
    }
    _add_sampling(request, body)
    _add_tools(request, body)
    _add_thinking(request, body)
    apply_response_format(request, body)
    if request.user is not None:
        body["metadata"] = {"user_id": request.user}
    return body


def _turns(messages: Iterable[Message]) -> list[AnthropicMessageParam]:
    """The conversation as alternating turns: system messages left out (they are the `system`
    field), consecutive messages of one role merged into one turn."""
    turns: list[AnthropicMessageParam] = []
    for message in messages:
        if message.role == "system":
            continue
        blocks = _blocks(message)
        if not blocks:
            continue
        role: Literal["user", "assistant"] = "assistant" if message.role == "assistant" else "user"
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return turns


#: Anthropic's smallest thinking budget.
MIN_THINKING_BUDGET = 1024


def _add_thinking(request: ChatRequest, body: MessagesBody) -> None:
    """Extended thinking for an OpenAI `reasoning_effort` (the budget docs/dialects.md maps it
    to), kept below `max_tokens` as Anthropic requires; an answer too short for the smallest
    budget (1,024 tokens) is asked for without thinking. Anthropic takes no `temperature` but
    1 with thinking: a caller's temperature is left out then."""
    budget = request.reasoning.as_budget() if request.reasoning is not None else None
    if budget is None:
        return
    budget = min(budget, body["max_tokens"] - 1)
    if budget < MIN_THINKING_BUDGET:
        if request.raw_dialect == "responses":  # refused, never dropped
            raise BadRequestError(
                f"Claude thinks with at least {MIN_THINKING_BUDGET} tokens: a reasoning effort "
                f"needs max_output_tokens above {MIN_THINKING_BUDGET}",
                param="reasoning.effort",
            )
        return
    choice = body.get("tool_choice")
    if choice is not None and choice["type"] in ("any", "tool"):
        raise BadRequestError(
            "Claude cannot be made to call a tool while it thinks (reasoning effort)",
            param="tool_choice",
        )
    body["thinking"] = {"type": "enabled", "budget_tokens": budget}
    body.pop("temperature", None)
    body.pop("top_p", None)


def _add_sampling(request: ChatRequest, body: MessagesBody) -> None:
    """The system prompt and the sampling settings."""
    system = request.system_text
    if system:
        body["system"] = system
    if request.temperature is not None:
        body["temperature"] = min(request.temperature, 1.0)  # Anthropic's range is 0..1
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.stop:
        body["stop_sequences"] = request.stop


def _add_tools(request: ChatRequest, body: MessagesBody) -> None:
    """The caller's tools and the choice among them."""
    if request.tools:
        body["tools"] = [_tool(tool) for tool in request.tools]
    choice = request.tool_choice
    if choice is not None and (request.tools or choice == "none"):
        body["tool_choice"] = _tool_choice(choice)
    if request.parallel_tool_calls is False and request.tools:
        tool_choice = body.setdefault("tool_choice", {"type": "auto"})
        if tool_choice["type"] != "none":
            tool_choice["disable_parallel_tool_use"] = True


def _tool(tool: Tool) -> AnthropicToolParam:
    param: AnthropicToolParam = {"name": tool.name}
    if tool.description:
        param["description"] = tool.description
    param["input_schema"] = tool.parameters or {"type": "object", "properties": {}}
    return param


def _tool_choice(choice: str) -> ToolChoiceParam:
    """OpenAI's `auto`/`none`/`required` or a tool's name, as Anthropic's choice."""
    if choice == "auto":
        return {"type": "auto"}
    if choice == "none":
        return {"type": "none"}
    if choice == "required":
        return {"type": "any"}
    return {"type": "tool", "name": choice}


def _blocks(message: Message) -> list[ContentBlock]:
    if message.role == "tool":
        return [
            {
                "type": "tool_result",
                "tool_use_id": message.tool_call_id or "",
                "content": message.text,
            }
        ]
    blocks: list[ContentBlock] = []
    if message.reasoning_signature is not None:  # Claude's own thinking, handed back as it was
        blocks.append(
            {
                "type": "thinking",
                "thinking": message.reasoning,
                "signature": message.reasoning_signature,
            }
        )
    for part in message.content:
        if isinstance(part, TextPart):
            if part.text:
                blocks.append({"type": "text", "text": part.text})
        elif isinstance(part, ImagePart):
            blocks.append({"type": "image", "source": image_source(part.url)})
    for call in message.tool_calls:
        blocks.append(
            {"type": "tool_use", "id": call.id, "name": call.name, "input": _input(call.arguments)}
        )
    return blocks


def image_source(url: str) -> ImageSource:
    """An Anthropic image source for a `data:` URL (base64) or an `https:` URL."""
    if url.startswith("data:") and ";base64," in url:
        head, data = url[5:].split(";base64,", 1)
        return {"type": "base64", "media_type": head or "image/png", "data": data}
    return {"type": "url", "url": url}


def _input(arguments: str) -> object:
    """Tool arguments (JSON text) as the object Anthropic's `input` holds."""
    if not arguments.strip():
        return {}
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return {"arguments": arguments}
    return value if isinstance(value, dict) else {"value": value}
