"""Anthropic: the Messages API, plain and streamed (the full `message_start` ... `message_stop`
event sequence), with `x-api-key` and `anthropic-version: 2023-06-01`.

Canonical requests map as Anthropic's API reference describes: system messages become the
`system` field, assistant tool calls `tool_use` blocks, tool results `tool_result` blocks in a
user turn (consecutive turns of one role are merged), `parallel_tool_calls: false` becomes
`disable_parallel_tool_use`, a response format is asked for as `anthropic_json.py` describes,
and stop reasons map to OpenAI's finish reasons. A request that arrived in Anthropic's own
dialect is forwarded as written (with only `model` and `stream` set), and the provider's body
is handed back in `ChatResponse.raw`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson

from oneflow_ai.domain.chat import (
    ChatRequest,
    ChatResponse,
    FinishReason,
    ImagePart,
    Message,
    StreamEvent,
    StreamFinish,
    StreamStart,
    StreamUsage,
    TextDelta,
    TextPart,
    ToolCall,
    ToolCallDelta,
    WireDialect,
)
from oneflow_ai.domain.usage import Usage
from oneflow_ai.errors import (
    ProviderAuthError,
    ProviderBadRequestError,
    ProviderError,
    ProviderRateLimitedError,
    ProviderTimeoutError,
    ProviderUnavailableError,
)
from oneflow_ai.providers.anthropic_json import (
    apply_response_format,
    as_json_answer,
    forces_tool,
    json_events,
)
from oneflow_ai.providers.errors import error_class, json_object, provider_error
from oneflow_ai.providers.spec import ProviderSpec
from oneflow_ai.providers.sse import iter_sse_batches
from oneflow_ai.providers.upstream import UpstreamClient, UpstreamRequest
from oneflow_ai.settings import Settings

__all__ = ["API_VERSION", "SPEC", "AnthropicProvider", "anthropic_headers", "build_messages_body"]

NAME = "anthropic"
API_VERSION = "2023-06-01"
#: `max_tokens` is required by Anthropic; Claude 3 models write at most 4,096 tokens.
DEFAULT_MAX_TOKENS = 4096

STOP_REASONS: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

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
    return {
        "x-api-key": api_key,
        "anthropic-version": API_VERSION,
        "Content-Type": "application/json",
        "Accept": "application/json",
    }


class AnthropicProvider:
    """Chat on Anthropic's Messages API (implements `ChatCapable`)."""

    name: str = NAME
    dialect: WireDialect = "anthropic"

    def __init__(self, client: UpstreamClient, *, default_max_tokens: int = DEFAULT_MAX_TOKENS):
        self._client = client
        self._default_max_tokens = default_max_tokens

    async def aclose(self) -> None:
        await self._client.aclose()

    async def chat(self, request: ChatRequest, model: str) -> ChatResponse:
        body = self._body(request, model, stream=False)
        response = await self._client.send(
            UpstreamRequest("POST", "/v1/messages", map_error, body=orjson.dumps(body), model=model)
        )
        try:
            answer = _parse_message(orjson.loads(response.body), model)
        except (orjson.JSONDecodeError, LookupError, TypeError, AttributeError) as exc:
            raise _malformed(exc, model) from exc
        return as_json_answer(answer) if _json_tool(request) else answer

    async def stream_chat(
        self, request: ChatRequest, model: str
    ) -> AsyncIterator[list[StreamEvent]]:
        body = self._body(request, model, stream=True)
        upstream = UpstreamRequest(
            "POST", "/v1/messages", map_error, body=orjson.dumps(body), model=model
        )
        as_json = _json_tool(request)
        async with self._client.stream(upstream) as response:
            tools: dict[int, int] = {}  # content block index -> tool call index
            stopped = False
            async for batch in iter_sse_batches(response.chunks()):
                events: list[StreamEvent] = []
                for sse in batch:
                    if sse.event is None or sse.event == "ping":
                        continue
                    try:
                        data = orjson.loads(sse.data)
                        kind = data.get("type") or sse.event
                        if kind == "message_stop":
                            stopped = True
                            break
                        if kind == "error":
                            if events:
                                yield events  # what arrived before the error still counts
                            raise stream_error(data.get("error"), model)
                        events.extend(_stream_events(kind, data, tools, model))
                    except (orjson.JSONDecodeError, LookupError, TypeError, AttributeError) as exc:
                        raise _malformed(exc, model) from exc
                if as_json:
                    events = json_events(events)
                if events:
                    yield events
                if stopped:
                    break
            if not stopped:
                raise ProviderUnavailableError(
                    "anthropic: the stream ended before the answer was complete",
                    provider=NAME,
                    model=model,
                )

    def _body(self, request: ChatRequest, model: str, *, stream: bool) -> dict[str, Any]:
        if request.raw is not None and _forwarded(request):
            body = dict(request.raw)
            body["model"] = model
        else:
            body = build_messages_body(request, model, self._default_max_tokens)
        if stream:
            body["stream"] = True
        else:
            body.pop("stream", None)
        return body


# ---- canonical -> Anthropic ------------------------------------------------------------


def _forwarded(request: ChatRequest) -> bool:
    """Whether the caller's own Messages body is sent (else one built from the request)."""
    return request.raw is not None and request.raw_dialect == "anthropic"


def _json_tool(request: ChatRequest) -> bool:
    return not _forwarded(request) and forces_tool(request)


def build_messages_body(
    request: ChatRequest, model: str, default_max_tokens: int = DEFAULT_MAX_TOKENS
) -> dict[str, Any]:
    """The Messages body of a canonical request."""
    turns: list[dict[str, Any]] = []
    for message in request.messages:
        if message.role == "system":
            continue
        role = "assistant" if message.role == "assistant" else "user"
        blocks = _blocks(message)
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": request.max_tokens or default_max_tokens,
        "messages": turns,
    }
    system = request.system_text
    if system:
        body["system"] = system
    if request.temperature is not None:
        body["temperature"] = min(request.temperature, 1.0)  # Anthropic's range is 0..1
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.stop:
        body["stop_sequences"] = request.stop
    if request.tools:
        body["tools"] = [
            {
                "name": tool.name,
                **({"description": tool.description} if tool.description else {}),
                "input_schema": tool.parameters or {"type": "object", "properties": {}},
            }
            for tool in request.tools
        ]
    choice = request.tool_choice
    if choice is not None and (request.tools or choice == "none"):
        body["tool_choice"] = (
            {"type": "auto"}
            if choice == "auto"
            else {"type": "none"}
            if choice == "none"
            else {"type": "any"}
            if choice == "required"
            else {"type": "tool", "name": choice}
        )
    if request.parallel_tool_calls is False and request.tools:
        tool_choice = body.setdefault("tool_choice", {"type": "auto"})
        if tool_choice["type"] != "none":
            tool_choice["disable_parallel_tool_use"] = True
    apply_response_format(request, body)
    if request.user is not None:
        body["metadata"] = {"user_id": request.user}
    return body


def _blocks(message: Message) -> list[dict[str, Any]]:
    if message.role == "tool":
        return [
            {
                "type": "tool_result",
                "tool_use_id": message.tool_call_id or "",
                "content": message.text,
            }
        ]
    blocks: list[dict[str, Any]] = []
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


def image_source(url: str) -> dict[str, str]:
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


# ---- Anthropic -> canonical ------------------------------------------------------------


def stop_reason(value: object) -> FinishReason:
    return STOP_REASONS.get(value, "stop") if isinstance(value, str) else "stop"


def input_tokens(usage: Mapping[str, Any]) -> int:
    """All input tokens, cached ones included (what OpenAI calls prompt tokens)."""
    return (
        int(usage.get("input_tokens") or 0)
        + int(usage.get("cache_creation_input_tokens") or 0)
        + int(usage.get("cache_read_input_tokens") or 0)
    )


def _parse_message(body: dict[str, Any], model: str) -> ChatResponse:
    text: list[str] = []
    calls: list[ToolCall] = []
    for block in body["content"]:
        if block.get("type") == "text":
            text.append(block.get("text") or "")
        elif block.get("type") == "tool_use":
            arguments = orjson.dumps(block.get("input") or {}).decode()
            calls.append(ToolCall(id=block["id"], name=block["name"], arguments=arguments))
    usage = body.get("usage")
    return ChatResponse(
        id=str(body.get("id") or ""),
        model=body.get("model") or model,
        text="".join(text),
        finish_reason=stop_reason(body.get("stop_reason")),
        usage=(
            Usage(
                input_tokens=input_tokens(usage), output_tokens=int(usage.get("output_tokens") or 0)
            )
            if isinstance(usage, dict)
            else None
        ),
        tool_calls=calls,
        raw=body,
        raw_dialect="anthropic",
    )


def _stream_events(
    kind: str, data: dict[str, Any], tools: dict[int, int], model: str
) -> list[StreamEvent]:
    if kind == "content_block_delta":
        delta = data["delta"]
        if delta.get("type") == "text_delta" and delta.get("text"):
            return [TextDelta(delta["text"])]
        if delta.get("type") == "input_json_delta" and delta.get("partial_json"):
            return [ToolCallDelta(tools[data["index"]], delta["partial_json"])]
        return []
    if kind == "content_block_start":
        block = data["content_block"]
        if block.get("type") == "tool_use":
            tools[data["index"]] = len(tools)
            return [ToolCallDelta(tools[data["index"]], "", block["id"], block["name"])]
        if block.get("type") == "text" and block.get("text"):
            return [TextDelta(block["text"])]
        return []
    if kind == "message_start":
        message = data["message"]
        events: list[StreamEvent] = [
            StreamStart(str(message.get("id") or ""), message.get("model") or model)
        ]
        usage = message.get("usage")
        if isinstance(usage, dict) and "input_tokens" in usage:
            # Only the input count is final here; output_tokens comes with message_delta.
            events.append(StreamUsage(input_tokens=input_tokens(usage)))
        return events
    if kind == "message_delta":
        events = []
        reason = (data.get("delta") or {}).get("stop_reason")
        if reason:
            events.append(StreamFinish(stop_reason(reason)))
        usage = data.get("usage")
        if isinstance(usage, dict):
            events.append(
                StreamUsage(
                    input_tokens=input_tokens(usage) if "input_tokens" in usage else None,
                    output_tokens=usage.get("output_tokens"),
                )
            )
        return events
    return []  # content_block_stop and event types this adapter does not use


# ---- errors ----------------------------------------------------------------------------


def _fields(error: object) -> tuple[str, str | None]:
    if not isinstance(error, dict):
        return "", None
    message, kind = error.get("message"), error.get("type")
    return (str(message) if message else "", str(kind) if kind else None)


def map_error(status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
    """Anthropic's `{"type": "error", "error": {type, message}}` answer, in OneFlow's terms."""
    message, kind = _fields(json_object(body).get("error"))
    cls = error_class(status)
    if kind == "overloaded_error" or status == 529:
        cls = ProviderUnavailableError
    elif kind == "billing_error":
        cls = ProviderAuthError
    return provider_error(cls, NAME, status, headers, message or (kind or ""))


def stream_error(error: object, model: str) -> ProviderError:
    """An `event: error` inside a stream (e.g. `overloaded_error`)."""
    message, kind = _fields(error)
    cls = _ERROR_TYPES.get(kind or "", ProviderUnavailableError)
    return cls(
        f"{NAME}: {message or kind or 'error during the stream'}", provider=NAME, model=model
    )


def _malformed(exc: Exception, model: str) -> ProviderError:
    return ProviderError(
        f"{NAME}: malformed answer ({type(exc).__name__}: {exc})", provider=NAME, model=model
    )


def _build(client: UpstreamClient, settings: Settings) -> AnthropicProvider:
    return AnthropicProvider(client)


SPEC = ProviderSpec(name=NAME, headers=anthropic_headers, build=_build)
