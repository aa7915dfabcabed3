"""Anthropic: the Messages API, plain and streamed (the full `message_start` ... `message_stop`
event sequence), with `x-api-key` and `anthropic-version: 2023-06-01`.

`AnthropicWire` holds the transforms the engine (`engine.py`) runs: canonical requests become
Messages bodies as `anthropic_request.py` describes, answers and stream events become canonical
ones (stop reasons map to OpenAI's finish reasons), and error answers and error events map to
OneFlow's taxonomy. A request that arrived in Anthropic's own dialect is forwarded as written
(with only `model` and `stream` set), and the provider's body is handed back in
`ChatResponse.raw`.
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson

from oneflow_ai.domain.chat import (
    ChatRequest,
    ChatResponse,
    FinishReason,
    StreamEvent,
    StreamFinish,
    StreamStart,
    TextDelta,
    ThinkingDelta,
    ToolCall,
    ToolCallDelta,
    WireBytes,
    WireDialect,
)
from oneflow_ai.errors import (
    ProviderAuthError,
    ProviderBadRequestError,
    ProviderError,
    ProviderRateLimitedError,
    ProviderTimeoutError,
    ProviderUnavailableError,
)
from oneflow_ai.providers.anthropic_json import as_json_answer, forces_tool, json_events
from oneflow_ai.providers.anthropic_request import DEFAULT_MAX_TOKENS, build_messages_body
from oneflow_ai.providers.anthropic_types import MessagesAnswer, StreamData
from oneflow_ai.providers.engine import ChatProvider, forwarded_body, is_forwarded
from oneflow_ai.providers.errors import (
    error_class,
    error_fields,
    json_object,
    provider_error,
    stream_failure,
)
from oneflow_ai.providers.spec import JSON_HEADERS, ProviderSpec
from oneflow_ai.providers.sse import SSEEvent
from oneflow_ai.providers.upstream import UpstreamClient
from oneflow_ai.providers.usage_fields import (
    UnknownUsageFields,
    anthropic_stream_usage,
    anthropic_usage,
)
from oneflow_ai.settings import Settings

__all__ = [
    "API_VERSION",
    "SPEC",
    "AnthropicProvider",
    "AnthropicWire",
    "anthropic_headers",
    "build_messages_body",
]

NAME = "anthropic"
API_VERSION = "2023-06-01"

STOP_REASONS: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

#: The error types of an in-stream `event: error`.
_ERROR_TYPES: dict[str, type[ProviderError]] = {
    "invalid_request_error": ProviderBadRequestError,
    "not_found_error": ProviderBadRequestError,
    "request_too_large": ProviderBadRequestError,
    "authentication_error": ProviderAuthError,
    "permission_error": ProviderAuthError,
    "billing_error": ProviderAuthError,
    "rate_limit_error": ProviderRateLimitedError,
    "api_error": ProviderUnavailableError,
    "overloaded_error": ProviderUnavailableError,
    "timeout_error": ProviderTimeoutError,
}


def anthropic_headers(api_key: str) -> dict[str, str]:
    """Headers of every request to Anthropic."""
    return {"x-api-key": api_key, "anthropic-version": API_VERSION, **JSON_HEADERS}


class AnthropicWire:
    """The Messages API, canonical <-> wire (a `ChatWire`)."""

    __slots__ = ("_default_max_tokens", "name", "usage_fields")
    dialect: WireDialect = "anthropic"
    path = "/v1/messages"

    def __init__(self, name: str = NAME, *, default_max_tokens: int = DEFAULT_MAX_TOKENS):
        self.name = name
        self._default_max_tokens = default_max_tokens
        self.usage_fields = UnknownUsageFields(name)

    def request_path(self, request: ChatRequest) -> str:
        return self.path

    def request_body(
        self, request: ChatRequest, model: str, *, stream: bool
    ) -> Mapping[str, object]:
        forwarded = forwarded_body(request, "anthropic", model)
        if forwarded is None:
            body = build_messages_body(request, model, self._default_max_tokens)
            if stream:
                body["stream"] = True
            return body
        if stream:
            forwarded["stream"] = True
        else:
            forwarded.pop("stream", None)
        return forwarded

    def answer(self, body: bytes, request: ChatRequest, model: str) -> ChatResponse:
        decoded = orjson.loads(body)
        usage = decoded.get("usage") if isinstance(decoded, dict) else None
        if isinstance(usage, dict):
            self.usage_fields.check(model, usage, "anthropic")
        answer = parse_message(decoded, decoded, model)
        return as_json_answer(answer) if _json_tool(request) else answer

    def stream_decoder(self, request: ChatRequest, model: str) -> AnthropicStream:
        return AnthropicStream(
            self.name,
            model,
            as_json=_json_tool(request),
            usage_fields=self.usage_fields,
            forward=is_forwarded(request, self.dialect),
        )

    def map_error(self, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
        """Anthropic's `{"type": "error", "error": {type, message}}` answer, in OneFlow's
        terms."""
        message, kind, _code, _param = error_fields(json_object(body).get("error"))
        cls = error_class(status)
        if kind == "overloaded_error" or status == 529:
            cls = ProviderUnavailableError
        elif kind == "billing_error":
            cls = ProviderAuthError
        return provider_error(cls, self.name, status, headers, message or (kind or ""))


class AnthropicProvider(ChatProvider):
    """Chat on Anthropic's Messages API (implements `ChatCapable`)."""

    def __init__(self, client: UpstreamClient, *, default_max_tokens: int = DEFAULT_MAX_TOKENS):
        super().__init__(client, AnthropicWire(default_max_tokens=default_max_tokens))


def _json_tool(request: ChatRequest) -> bool:
    """Whether the answer comes as the `json_answer` tool's input (`anthropic_json.py`): only
    for a body built here, never for the caller's own Messages body."""
    forwarded = request.raw is not None and request.raw_dialect == "anthropic"
    return not forwarded and forces_tool(request)


# ---- Anthropic -> canonical ------------------------------------------------------------


def stop_reason(value: object) -> FinishReason:
    return STOP_REASONS.get(value, "stop") if isinstance(value, str) else "stop"


def parse_message(body: MessagesAnswer, raw: dict[str, object], model: str) -> ChatResponse:
    """The canonical answer of a Messages answer (`raw`: the same body, kept as it came)."""
    text: list[str] = []
    thinking: list[str] = []
    signature: str | None = None
    calls: list[ToolCall] = []
    for block in body["content"]:
        if block.get("type") == "text":
            text.append(block.get("text") or "")
        elif block.get("type") == "thinking":
            thinking.append(str(block.get("thinking") or ""))
            signature = str(block.get("signature") or "") or signature
        elif block.get("type") == "tool_use":
            arguments = orjson.dumps(block.get("input") or {}).decode()
            calls.append(ToolCall(id=block["id"], name=block["name"], arguments=arguments))
    usage = body.get("usage")
    return ChatResponse(
        id=str(body.get("id") or ""),
        model=body.get("model") or model,
        text="".join(text),
        finish_reason=stop_reason(body.get("stop_reason")),
        usage=(anthropic_usage(usage) if isinstance(usage, dict) else None),
        tool_calls=calls,
        raw=raw,
        raw_dialect="anthropic",
        reasoning="".join(thinking),
        reasoning_signature=signature,
    )


class AnthropicStream:
    """A streamed message's events as canonical events (a `StreamDecoder`): the answer is
    whole at `message_stop`. With the `json_answer` tool, its input becomes the text. With
    `forward` (the caller speaks this dialect), each event before `message_stop` also comes as
    it arrived (`WireBytes`), `message_delta` marked `last`."""

    __slots__ = ("_as_json", "_forward", "_model", "_name", "_tools", "_usage_fields", "stopped")

    def __init__(
        self,
        name: str,
        model: str,
        *,
        as_json: bool,
        usage_fields: UnknownUsageFields | None = None,
        forward: bool = False,
    ) -> None:
        self._name = name
        self._model = model
        self._usage_fields = usage_fields
        self._as_json = as_json
        self._forward = forward
        self._tools: dict[int, int] = {}  # content block index -> tool call index
        self.stopped = False

    @property
    def complete(self) -> bool:
        return self.stopped

    def decode(self, event: SSEEvent, out: list[StreamEvent]) -> bool:
        if event.event is None:
            return False
        if event.event == "ping":
            if self._forward:
                out.append(WireBytes("anthropic", "ping", event.data))
            return False
        data: StreamData = orjson.loads(event.data)
        kind = data.get("type") or event.event
        if kind == "message_stop":
            self.stopped = True
            return True
        if kind == "error":
            raise stream_failure(self._name, self._model, data.get("error"), _ERROR_TYPES)
        if self._usage_fields is not None:
            usage = (data.get("message") or {}).get("usage") or data.get("usage")
            if isinstance(usage, dict):
                self._usage_fields.check(self._model, usage, "anthropic")
        events = _stream_events(kind, data, self._tools, self._model)
        out.extend(json_events(events) if self._as_json else events)
        if self._forward:
            out.append(WireBytes("anthropic", event.event, event.data, kind == "message_delta"))
        return False


def _stream_events(
    kind: str, data: StreamData, tools: dict[int, int], model: str
) -> list[StreamEvent]:
    if kind == "content_block_delta":
        delta = data["delta"]
        if delta.get("type") == "text_delta" and delta.get("text"):
            return [TextDelta(delta["text"])]
        if delta.get("type") == "input_json_delta" and delta.get("partial_json"):
            return [ToolCallDelta(tools[data["index"]], delta["partial_json"])]
        if delta.get("type") == "thinking_delta":
            return [ThinkingDelta(str(delta.get("thinking") or ""))]
        if delta.get("type") == "signature_delta":
            return [ThinkingDelta(signature=str(delta.get("signature") or ""))]
        return []
    if kind == "content_block_start":
        block = data["content_block"]
        if block.get("type") == "tool_use":
            tools[data["index"]] = len(tools)
            return [ToolCallDelta(tools[data["index"]], "", block["id"], block["name"])]
        if block.get("type") == "text" and block.get("text"):
            return [TextDelta(block["text"])]
        if block.get("type") == "thinking":
            return [ThinkingDelta(str(block.get("thinking") or ""))]
        if block.get("type") == "redacted_thinking":
            return [ThinkingDelta(redacted=str(block.get("data") or ""))]
        return []
    if kind == "message_start":
        return _message_start(data["message"], model)
    if kind == "message_delta":
        return _message_delta(data)
    return []  # content_block_stop and event types this adapter does not use


def _message_start(message: MessagesAnswer, model: str) -> list[StreamEvent]:
    events: list[StreamEvent] = [
        StreamStart(str(message.get("id") or ""), message.get("model") or model)
    ]
    usage = message.get("usage")
    if isinstance(usage, dict) and "input_tokens" in usage:
        # Only the input side is final here; output_tokens comes with message_delta.
        report = anthropic_stream_usage(usage)
        report.output_tokens = None
        events.append(report)
    return events


def _message_delta(data: StreamData) -> list[StreamEvent]:
    events: list[StreamEvent] = []
    reason = (data.get("delta") or {}).get("stop_reason")
    if reason:
        events.append(StreamFinish(stop_reason(reason)))
    usage = data.get("usage")
    if isinstance(usage, dict):
        events.append(anthropic_stream_usage(usage))
    return events


def _build(client: UpstreamClient, settings: Settings) -> AnthropicProvider:
    return AnthropicProvider(client)


SPEC = ProviderSpec(name=NAME, headers=anthropic_headers, build=_build)
