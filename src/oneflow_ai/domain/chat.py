"""Provider-neutral chat: the request, the answer, and the events of a stream.

Both edge dialects (OpenAI Chat Completions, Anthropic Messages) parse into these, and every
provider adapter speaks them. Names follow OpenAI's where the two differ (finish reasons,
`system` messages inline), since most of the field speaks that dialect; the Anthropic side maps
to and from them.

`ChatRequest.raw` keeps the caller's original body when a provider speaks the caller's own
dialect, so the adapter can forward it losslessly (provider-specific fields included) instead
of rebuilding it; `ChatResponse.raw` does the same on the way back. The fields of that body the
canonical request does not carry are named in `ChatRequest.dialect_only`: a provider of the
other dialect cannot honour them (docs/dialects.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from oneflow_ai.domain.usage import Usage

__all__ = [
    "ChatRequest",
    "ChatResponse",
    "ContentPart",
    "FinishReason",
    "ImagePart",
    "Message",
    "ReasoningDelta",
    "ResponseFormat",
    "Role",
    "StreamEvent",
    "StreamFinish",
    "StreamStart",
    "StreamUsage",
    "TextDelta",
    "TextPart",
    "Tool",
    "ToolCall",
    "ToolCallDelta",
    "WireDialect",
    "WireEvent",
]

Role = Literal["system", "user", "assistant", "tool"]
FinishReason = Literal["stop", "length", "tool_calls", "content_filter"]
WireDialect = Literal["openai", "anthropic", "responses"]
"""`responses`: OpenAI's Responses API (`/v1/responses`), a dialect of the edge and of OpenAI."""


@dataclass(slots=True)
class TextPart:
    text: str


@dataclass(slots=True)
class ImagePart:
    """An image input: an `https://` URL or a `data:<media type>;base64,...` URL."""

    url: str
    detail: str | None = None


ContentPart = TextPart | ImagePart


@dataclass(slots=True)
class ToolCall:
    """A function call the model asked for; `arguments` is the JSON text of its arguments."""

    id: str
    name: str
    arguments: str


@dataclass(slots=True)
class Message:
    role: Role
    content: list[ContentPart] = field(default_factory=list)
    name: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)  # assistant turns
    tool_call_id: str | None = None  # tool results
    # An assistant turn's visible thinking, and the provider's signature of it (Claude needs
    # both back, unchanged, to continue a turn that thought before calling a tool).
    reasoning: str = ""
    reasoning_signature: str | None = None

    @property
    def text(self) -> str:
        """The message's text parts joined (images are not text)."""
        return "".join(part.text for part in self.content if isinstance(part, TextPart))


@dataclass(slots=True)
class Tool:
    name: str
    description: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)  # JSON Schema


@dataclass(frozen=True, slots=True)
class ResponseFormat:
    """The answer must be a JSON object (`json_object`), one matching `schema`
    (`json_schema`, with the schema's `name`)."""

    kind: Literal["json_object", "json_schema"]
    schema: dict[str, Any] | None = None
    name: str | None = None


@dataclass(slots=True)
class ChatRequest:
    model: str
    messages: list[Message]
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] = field(default_factory=list)
    stream: bool = False
    tools: list[Tool] = field(default_factory=list)
    # "auto" | "none" | "required" | a tool name to force
    tool_choice: str | None = None
    user: str | None = None
    response_format: ResponseFormat | None = None
    parallel_tool_calls: bool | None = None  # False: at most one tool call per answer
    # How hard a reasoning model thinks: "low" | "medium" | "high" (None: the model's default)
    reasoning_effort: str | None = None
    # The caller's body as received, the dialect it is in, and the fields of it this request
    # does not carry (see the module docstring; for the Responses dialect, the fields only
    # OpenAI's own Responses API honours: any other model refuses the request).
    raw: dict[str, Any] | None = None
    raw_dialect: WireDialect | None = None
    dialect_only: tuple[str, ...] = ()

    @property
    def system_text(self) -> str:
        return "\n\n".join(m.text for m in self.messages if m.role == "system")


@dataclass(slots=True)
class ChatResponse:
    id: str
    model: str
    text: str
    finish_reason: FinishReason
    usage: Usage | None  # as the provider reported it; None when it reported none
    tool_calls: list[ToolCall] = field(default_factory=list)
    # The provider's body as received, and the dialect it is in.
    raw: dict[str, Any] | None = None
    raw_dialect: WireDialect | None = None
    reasoning: str = ""  # the model's visible thinking (Claude's thinking blocks), if any
    reasoning_signature: str | None = None  # the provider's signature of that thinking


# ---- stream events ---------------------------------------------------------------------


@dataclass(slots=True)
class StreamStart:
    """The answer's id and the model that writes it (the provider's opening event)."""

    id: str
    model: str


@dataclass(slots=True)
class TextDelta:
    text: str


@dataclass(slots=True)
class ToolCallDelta:
    """A piece of a tool call; `id` and `name` come with the first piece of call `index`."""

    index: int
    arguments: str = ""
    id: str | None = None
    name: str | None = None


@dataclass(slots=True)
class StreamFinish:
    reason: FinishReason


@dataclass(slots=True)
class StreamUsage:
    """Usage reported by the provider during a stream; later reports supersede earlier ones
    field by field (Anthropic sends input tokens first and output tokens at the end)."""

    input_tokens: int | None = None
    output_tokens: int | None = None


@dataclass(slots=True)
class ReasoningDelta:
    """A piece of the model's visible thinking (Claude's `thinking_delta`), or the
    provider's signature of it (`signature_delta`)."""

    text: str
    signature: str | None = None


@dataclass(slots=True)
class WireEvent:
    """A provider's own stream event (decoded), for a caller of the same dialect, who gets it
    as it came; every other encoder ignores it (the canonical events beside it say the same)."""

    dialect: WireDialect
    data: dict[str, Any]


StreamEvent = (
    StreamStart
    | TextDelta
    | ToolCallDelta
    | StreamFinish
    | StreamUsage
    | ReasoningDelta
    | WireEvent
)
