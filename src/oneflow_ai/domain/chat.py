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
    "REASONING_EFFORTS",
    "TOKEN_CLASSES",
    "ChatRequest",
    "ChatResponse",
    "ContentPart",
    "FinishReason",
    "ImagePart",
    "Message",
    "Reasoning",
    "ReasoningEffort",
    "ResponseFormat",
    "Role",
    "StreamEvent",
    "StreamFinish",
    "StreamStart",
    "StreamUsage",
    "TextDelta",
    "TextPart",
    "ThinkingDelta",
    "Tool",
    "ToolCall",
    "ToolCallDelta",
    "WireBytes",
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


ReasoningEffort = Literal["none", "minimal", "low", "medium", "high", "xhigh"]
REASONING_EFFORTS: tuple[ReasoningEffort, ...] = (
    "none",
    "minimal",
    "low",
    "medium",
    "high",
    "xhigh",
)


@dataclass(frozen=True, slots=True)
class Reasoning:
    """How much a reasoning model may think before it answers: OpenAI's `reasoning_effort`
    (`effort`) or Anthropic's `thinking` token budget (`budget_tokens`), whichever the caller
    gave; the provider of the other dialect gets the documented equivalent (docs/dialects.md).
    `effort="none"` (or Anthropic's `thinking: {"type": "disabled"}` ... which asks for nothing
    and is not carried) turns thinking off where the model allows it."""

    effort: ReasoningEffort | None = None
    budget_tokens: int | None = None

    def as_effort(self) -> ReasoningEffort | None:
        """OpenAI's `reasoning_effort` for this setting (a budget maps to the effort whose
        budget it reaches: below 4,096 tokens low, below 16,384 medium, else high)."""
        if self.effort is not None or self.budget_tokens is None:
            return self.effort
        if self.budget_tokens < _BUDGETS["medium"]:
            return "low"
        return "medium" if self.budget_tokens < _BUDGETS["high"] else "high"

    def as_budget(self) -> int | None:
        """Anthropic's `thinking.budget_tokens` for this setting (None: no thinking)."""
        if self.budget_tokens is not None:
            return self.budget_tokens
        return _BUDGETS.get(self.effort) if self.effort is not None else None


#: The thinking budget (tokens) each OpenAI effort maps to on Claude models (docs/dialects.md);
#: `none` maps to no thinking.
_BUDGETS: dict[str, int] = {
    "minimal": 1024,
    "low": 2048,
    "medium": 4096,
    "high": 16384,
    "xhigh": 32768,
}


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
    reasoning: Reasoning | None = None  # for the models that reason (catalog `reasoning`)
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
class ThinkingDelta:
    """A piece of a Claude model's thinking (its `thinking` block), or, with `signature`, the
    block's signature, or, with `redacted`, a whole `redacted_thinking` block's data. Only the
    Anthropic dialect shows them; a caller sends the block back as it came, so they pass
    through unchanged."""

    text: str = ""
    signature: str | None = None
    redacted: str | None = None


@dataclass(slots=True)
class StreamFinish:
    reason: FinishReason


@dataclass(slots=True)
class StreamUsage:
    """Usage reported by the provider during a stream; later reports supersede earlier ones
    field by field (Anthropic sends input tokens first and output tokens at the end). The
    token classes are parts of the totals, as in :class:`~oneflow_ai.domain.usage.Usage`."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_input_tokens: int | None = None
    cache_write_5m_tokens: int | None = None
    cache_write_1h_tokens: int | None = None
    reasoning_tokens: int | None = None

    @classmethod
    def of(cls, usage: Usage) -> StreamUsage:
        """The whole of ``usage`` as one report."""
        return cls(
            usage.input_tokens,
            usage.output_tokens,
            usage.cached_input_tokens,
            usage.cache_write_5m_tokens,
            usage.cache_write_1h_tokens,
            usage.reasoning_tokens,
        )

    def classes(self) -> dict[str, int]:
        """The token classes this report gives (those it leaves out are not here)."""
        return {name: value for name in TOKEN_CLASSES if (value := getattr(self, name)) is not None}


#: The token classes within a usage's totals (field names of `Usage` and `StreamUsage`).
TOKEN_CLASSES = (
    "cached_input_tokens",
    "cache_write_5m_tokens",
    "cache_write_1h_tokens",
    "reasoning_tokens",
)


@dataclass(slots=True)
class WireEvent:
    """A provider's own stream event (decoded), for a caller of the same dialect, who gets it
    as it came; every other encoder ignores it (the canonical events beside it say the same)."""

    dialect: WireDialect
    data: dict[str, Any]


@dataclass(slots=True)
class WireBytes:
    """One of the provider's stream events as it came, for a caller of the provider's own
    dialect (same-dialect passthrough): its SSE `event` name and its `data`, bytes that are
    never encoded again. `last` marks the events that end the answer (OpenAI's finish and usage
    chunks, Anthropic's `message_delta`): the edge holds them back and completes them with the
    usage and credits. The canonical events decoded from the same event travel beside it (for
    the hooks and for a caller of another dialect, whose encoder ignores this one); hooks never
    see it."""

    dialect: WireDialect
    event: str | None
    data: bytes
    last: bool = False


StreamEvent = (
    StreamStart
    | TextDelta
    | ToolCallDelta
    | StreamFinish
    | StreamUsage
    | ThinkingDelta
    | WireEvent
    | WireBytes
)
