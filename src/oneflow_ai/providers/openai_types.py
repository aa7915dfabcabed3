"""The shapes of OpenAI's Chat Completions wire format that the OpenAI transforms read and write.

As OpenAI's API reference documents them (`POST /v1/chat/completions`), trimmed to the fields
OneFlow uses. Answers are declared `total=False`: a provider may leave any field out, and what
is missing where it is needed makes the answer malformed (`engine.read_answer`).
"""

from __future__ import annotations

from typing import Literal, TypedDict

__all__ = [
    "AnswerMessage",
    "ChatCompletionBody",
    "ChatCompletionChunk",
    "Choice",
    "ChunkChoice",
    "ContentPartParam",
    "Delta",
    "FunctionCall",
    "ImageURL",
    "OpenAIChatCompletion",
    "OpenAIErrorObject",
    "OpenAIMessageParam",
    "OpenAIToolParam",
    "OpenAIUsageObject",
    "ToolCallObject",
]


class FunctionCall(TypedDict, total=False):
    name: str
    arguments: str


class ToolCallObject(TypedDict, total=False):
    """A tool call in a request's assistant message, an answer, or (with `index`) a delta."""

    id: str
    index: int
    type: Literal["function"]
    function: FunctionCall


class ImageURL(TypedDict, total=False):
    url: str
    detail: str


class ContentPartParam(TypedDict, total=False):
    type: Literal["text", "image_url"]
    text: str
    image_url: ImageURL


class OpenAIMessageParam(TypedDict, total=False):
    role: str
    content: str | list[ContentPartParam] | None
    name: str
    tool_calls: list[ToolCallObject]
    tool_call_id: str


class FunctionParam(TypedDict, total=False):
    name: str
    description: str
    parameters: dict[str, object]  # a JSON Schema, as the caller wrote it


class OpenAIToolParam(TypedDict):
    type: Literal["function"]
    function: FunctionParam


class NamedToolChoice(TypedDict):
    type: Literal["function"]
    function: dict[str, str]


class JSONSchemaFormat(TypedDict, total=False):
    name: str
    schema: dict[str, object]


class ResponseFormatParam(TypedDict, total=False):
    type: Literal["json_object", "json_schema"]
    json_schema: JSONSchemaFormat


class ChatCompletionBody(TypedDict, total=False):
    """A request body built from a canonical request."""

    model: str
    messages: list[OpenAIMessageParam]
    max_tokens: int
    max_completion_tokens: int
    temperature: float
    top_p: float
    stop: list[str]
    tools: list[OpenAIToolParam]
    tool_choice: str | NamedToolChoice
    parallel_tool_calls: bool
    response_format: ResponseFormatParam
    user: str
    reasoning_effort: str
    stream: bool
    stream_options: dict[str, object]


class OpenAIUsageObject(TypedDict, total=False):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class OpenAIErrorObject(TypedDict, total=False):
    message: str
    type: str
    code: str | None
    param: str | None


class AnswerMessage(TypedDict, total=False):
    role: str
    content: str | list[ContentPartParam] | None
    tool_calls: list[ToolCallObject] | None


class Choice(TypedDict, total=False):
    index: int
    message: AnswerMessage
    finish_reason: str | None


class OpenAIChatCompletion(TypedDict, total=False):
    id: str
    model: str
    choices: list[Choice]
    usage: OpenAIUsageObject | None


class Delta(TypedDict, total=False):
    role: str
    content: str | None
    tool_calls: list[ToolCallObject] | None


class ChunkChoice(TypedDict, total=False):
    index: int
    delta: Delta | None
    finish_reason: str | None


class ChatCompletionChunk(TypedDict, total=False):
    id: str
    model: str
    choices: list[ChunkChoice] | None
    usage: OpenAIUsageObject | None
    error: OpenAIErrorObject | None
