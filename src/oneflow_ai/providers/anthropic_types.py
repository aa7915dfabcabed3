"""The shapes of Anthropic's Messages wire format that the Anthropic transforms read and write.

As Anthropic's API reference documents them (`POST /v1/messages` and its stream events),
trimmed to the fields OneFlow uses. Answers are declared `total=False`: what is missing where
it is needed makes the answer malformed (`engine.read_answer`).
"""

from __future__ import annotations

from typing import Literal, TypedDict

__all__ = [
    "AnswerBlock",
    "AnthropicErrorObject",
    "AnthropicMessageParam",
    "AnthropicToolParam",
    "AnthropicUsageObject",
    "ContentBlock",
    "ImageSource",
    "MessagesAnswer",
    "MessagesBody",
    "StreamData",
    "StreamDelta",
    "ToolChoiceParam",
]


class ImageSource(TypedDict, total=False):
    type: Literal["base64", "url"]
    media_type: str
    data: str
    url: str


class ContentBlock(TypedDict, total=False):
    """A block of a request's turn: text, an image, a tool call or a tool's result."""

    type: Literal["text", "image", "tool_use", "tool_result", "thinking"]
    text: str
    thinking: str
    signature: str
    source: ImageSource
    id: str
    name: str
    input: object
    tool_use_id: str
    content: str


class AnthropicMessageParam(TypedDict):
    role: Literal["user", "assistant"]
    content: list[ContentBlock]


class AnthropicToolParam(TypedDict, total=False):
    name: str
    description: str
    input_schema: dict[str, object]


class ToolChoiceParam(TypedDict, total=False):
    type: Literal["auto", "any", "none", "tool"]
    name: str
    disable_parallel_tool_use: bool


class ThinkingParam(TypedDict):
    type: Literal["enabled"]
    budget_tokens: int


class MessagesBody(TypedDict, total=False):
    """A request body built from a canonical request."""

    model: str
    max_tokens: int
    messages: list[AnthropicMessageParam]
    system: str
    temperature: float
    top_p: float
    stop_sequences: list[str]
    tools: list[AnthropicToolParam]
    tool_choice: ToolChoiceParam
    metadata: dict[str, str]
    thinking: ThinkingParam
    stream: bool


class AnthropicUsageObject(TypedDict, total=False):
    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int | None
    cache_read_input_tokens: int | None


class AnswerBlock(TypedDict, total=False):
    type: str
    text: str
    id: str
    name: str
    input: object


class MessagesAnswer(TypedDict, total=False):
    """A whole answer, or the `message` of a stream's `message_start`."""

    id: str
    model: str
    content: list[AnswerBlock]
    stop_reason: str | None
    usage: AnthropicUsageObject


class AnthropicErrorObject(TypedDict, total=False):
    type: str
    message: str


class StreamDelta(TypedDict, total=False):
    type: str
    text: str
    partial_json: str
    thinking: str
    signature: str
    stop_reason: str | None


class StreamData(TypedDict, total=False):
    """The data of one stream event (which fields it has depends on its `type`)."""

    type: str
    index: int
    message: MessagesAnswer
    content_block: AnswerBlock
    delta: StreamDelta
    usage: AnthropicUsageObject
    error: AnthropicErrorObject
