"""OpenAI: Chat Completions (plain and streamed) and Images (DALL·E 2 and 3).

Wire format as OpenAI's API reference documents it (see /v1/chat/completions and
/v1/images/generations). Streams always ask for `stream_options.include_usage`, so the
answer's usage arrives as the last chunk whatever the caller asked for. A request that arrived
in OpenAI's own dialect is forwarded as the caller wrote it (provider-specific fields included)
with only `model` and the stream options replaced, and the provider's body is handed back in
`ChatResponse.raw`.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson

from oneflow_ai.domain.chat import (
    ChatRequest,
    ChatResponse,
    FinishReason,
    ImagePart,
    Message,
    ResponseFormat,
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
from oneflow_ai.domain.media import GeneratedImage, ImageRequest, ImageResponse
from oneflow_ai.domain.usage import Usage
from oneflow_ai.errors import (
    ContentFilteredError,
    ProviderAuthError,
    ProviderBadRequestError,
    ProviderError,
    ProviderRateLimitedError,
    ProviderUnavailableError,
)
from oneflow_ai.providers.errors import error_class, json_object, provider_error
from oneflow_ai.providers.spec import ProviderSpec
from oneflow_ai.providers.sse import iter_sse_batches
from oneflow_ai.providers.upstream import UpstreamClient, UpstreamRequest
from oneflow_ai.settings import Settings

__all__ = ["SPEC", "OpenAIProvider", "openai_headers"]

NAME = "openai"

_FINISH: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}


def openai_headers(api_key: str) -> dict[str, str]:
    """Headers of every request to OpenAI."""
    return {
        "Authorization": f"Bearer {api_key}",
        "Content-Type": "application/json",
        "Accept": "application/json",
    }


class OpenAIProvider:
    """Chat and images on OpenAI's API (implements `ChatCapable` and `ImageCapable`)."""

    name: str = NAME
    dialect: WireDialect = "openai"

    def __init__(self, client: UpstreamClient) -> None:
        self._client = client

    async def aclose(self) -> None:
        await self._client.aclose()

    # ---- chat --------------------------------------------------------------------------

    async def chat(self, request: ChatRequest, model: str) -> ChatResponse:
        body = self._chat_body(request, model, stream=False)
        response = await self._client.send(
            UpstreamRequest(
                "POST", "/chat/completions", map_error, body=orjson.dumps(body), model=model
            )
        )
        try:
            return _parse_chat(orjson.loads(response.body), model)
        except (orjson.JSONDecodeError, LookupError, TypeError, AttributeError) as exc:
            raise _malformed(exc, model) from exc

    async def stream_chat(
        self, request: ChatRequest, model: str
    ) -> AsyncIterator[list[StreamEvent]]:
        body = self._chat_body(request, model, stream=True)
        upstream = UpstreamRequest(
            "POST", "/chat/completions", map_error, body=orjson.dumps(body), model=model
        )
        async with self._client.stream(upstream) as response:
            started = finished = done = False
            async for batch in iter_sse_batches(response.chunks()):
                events: list[StreamEvent] = []
                for sse in batch:
                    if sse.data == b"[DONE]":
                        done = True
                        break
                    try:
                        chunk = orjson.loads(sse.data)
                        error = chunk.get("error")
                        if error:
                            if events:
                                yield events  # what arrived before the error still counts
                            raise stream_error(error, model)
                        if not started:
                            started = True
                            events.append(
                                StreamStart(str(chunk.get("id") or ""), chunk.get("model") or model)
                            )
                        for event in _chunk_events(chunk):
                            if isinstance(event, StreamFinish):
                                finished = True
                            events.append(event)
                    except (orjson.JSONDecodeError, LookupError, TypeError, AttributeError) as exc:
                        raise _malformed(exc, model) from exc
                if events:
                    yield events
                if done:
                    break
            if not (done or finished):
                raise ProviderUnavailableError(
                    "openai: the stream ended before the answer was complete",
                    provider=NAME,
                    model=model,
                )

    def _chat_body(self, request: ChatRequest, model: str, *, stream: bool) -> dict[str, Any]:
        if request.raw is not None and request.raw_dialect == "openai":
            body = dict(request.raw)
            body["model"] = model
        else:
            body = build_chat_body(request, model)
        if stream:
            body["stream"] = True
            options = body.get("stream_options")
            body["stream_options"] = {
                **(options if isinstance(options, dict) else {}),
                "include_usage": True,
            }
        else:
            body.pop("stream", None)
            body.pop("stream_options", None)
        return body

    # ---- images ------------------------------------------------------------------------

    async def generate_image(self, request: ImageRequest, model: str) -> ImageResponse:
        body: dict[str, Any] = {
            "model": model,
            "prompt": request.prompt,
            "n": request.n,
            "response_format": request.response_format,
        }
        for name in ("size", "quality", "style", "user"):
            value = getattr(request, name)
            if value is not None:
                body[name] = value
        response = await self._client.send(
            UpstreamRequest(
                "POST", "/images/generations", map_error, body=orjson.dumps(body), model=model
            )
        )
        try:
            data = orjson.loads(response.body)
            images = [
                GeneratedImage(
                    url=item.get("url"),
                    b64_json=item.get("b64_json"),
                    revised_prompt=item.get("revised_prompt"),
                )
                for item in data["data"]
            ]
            created = int(data.get("created") or time.time())
        except (orjson.JSONDecodeError, LookupError, TypeError, AttributeError) as exc:
            raise _malformed(exc, model) from exc
        usage = Usage(images=len(images), image_size=request.size, image_quality=request.quality)
        return ImageResponse(created=created, images=images, usage=usage, model=model)


# ---- canonical -> OpenAI ---------------------------------------------------------------


def build_chat_body(request: ChatRequest, model: str) -> dict[str, Any]:
    """The Chat Completions body of a canonical request."""
    body: dict[str, Any] = {
        "model": model,
        "messages": [_message(m) for m in request.messages],
    }
    if request.max_tokens is not None:
        body["max_tokens"] = request.max_tokens
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.stop:
        body["stop"] = request.stop
    if request.tools:
        body["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": tool.name,
                    **({"description": tool.description} if tool.description else {}),
                    "parameters": tool.parameters or {"type": "object", "properties": {}},
                },
            }
            for tool in request.tools
        ]
    if request.tool_choice is not None:
        if request.tool_choice in ("auto", "none", "required"):
            body["tool_choice"] = request.tool_choice
        else:
            body["tool_choice"] = {"type": "function", "function": {"name": request.tool_choice}}
    if request.parallel_tool_calls is False and request.tools:
        body["parallel_tool_calls"] = False
    if request.response_format is not None:
        body["response_format"] = _response_format(request.response_format)
    if request.user is not None:
        body["user"] = request.user
    return body


def _response_format(wanted: ResponseFormat) -> dict[str, Any]:
    if wanted.kind == "json_object":
        return {"type": "json_object"}
    spec: dict[str, Any] = {"name": wanted.name or "answer"}
    if wanted.schema is not None:
        spec["schema"] = wanted.schema
    return {"type": "json_schema", "json_schema": spec}


def _message(message: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message.role}
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


def _part(part: TextPart | ImagePart) -> dict[str, Any]:
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text}
    image: dict[str, Any] = {"url": part.url}
    if part.detail:
        image["detail"] = part.detail
    return {"type": "image_url", "image_url": image}


# ---- OpenAI -> canonical ---------------------------------------------------------------


def finish_reason(value: object) -> FinishReason:
    return _FINISH.get(value, "stop") if isinstance(value, str) else "stop"


def _parse_chat(body: dict[str, Any], model: str) -> ChatResponse:
    choice = body["choices"][0]
    message = choice["message"]
    content = message.get("content")
    if isinstance(content, list):
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    tool_calls = [
        ToolCall(
            id=call["id"],
            name=call["function"]["name"],
            arguments=call["function"].get("arguments") or "",
        )
        for call in message.get("tool_calls") or ()
    ]
    return ChatResponse(
        id=str(body.get("id") or ""),
        model=body.get("model") or model,
        text=content or "",
        finish_reason=finish_reason(choice.get("finish_reason")),
        usage=_usage(body.get("usage")),
        tool_calls=tool_calls,
        raw=body,
        raw_dialect="openai",
    )


def _usage(value: object) -> Usage | None:
    if not isinstance(value, dict):
        return None
    return Usage(
        input_tokens=int(value.get("prompt_tokens") or 0),
        output_tokens=int(value.get("completion_tokens") or 0),
    )


def _chunk_events(chunk: dict[str, Any]) -> list[StreamEvent]:
    events: list[StreamEvent] = []
    for choice in chunk.get("choices") or ():
        if choice.get("index", 0) != 0:
            continue
        delta = choice.get("delta") or {}
        content = delta.get("content")
        if content:
            events.append(TextDelta(content))
        for call in delta.get("tool_calls") or ():
            function = call.get("function") or {}
            events.append(
                ToolCallDelta(
                    index=int(call.get("index") or 0),
                    arguments=function.get("arguments") or "",
                    id=call.get("id"),
                    name=function.get("name"),
                )
            )
        reason = choice.get("finish_reason")
        if reason:
            events.append(StreamFinish(finish_reason(reason)))
    usage = chunk.get("usage")
    if isinstance(usage, dict):
        events.append(
            StreamUsage(
                input_tokens=usage.get("prompt_tokens"),
                output_tokens=usage.get("completion_tokens"),
            )
        )
    return events


# ---- errors ----------------------------------------------------------------------------

_TYPE_CLASSES: dict[str, type[ProviderError]] = {
    "invalid_request_error": ProviderBadRequestError,
    "rate_limit_error": ProviderRateLimitedError,
    "tokens": ProviderRateLimitedError,
    "requests": ProviderRateLimitedError,
    "server_error": ProviderUnavailableError,
    "insufficient_quota": ProviderAuthError,
}


def _fields(error: object) -> tuple[str, str | None, str | None, str | None]:
    if not isinstance(error, dict):
        return "", None, None, None
    message, kind, code, param = (error.get(k) for k in ("message", "type", "code", "param"))
    return (
        str(message) if message else "",
        str(kind) if kind else None,
        str(code) if code else None,
        str(param) if param else None,
    )


def map_error(status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
    """OpenAI's `{"error": {message, type, param, code}}` answer, in OneFlow's taxonomy."""
    message, kind, code, param = _fields(json_object(body).get("error"))
    cls = error_class(status)
    if code in ("content_policy_violation", "content_filter"):
        cls = ContentFilteredError
    elif "insufficient_quota" in (code, kind):
        cls = ProviderAuthError  # our account cannot pay: another provider may
    return provider_error(cls, NAME, status, headers, message, code=code, param=param)


def stream_error(error: object, model: str) -> ProviderError:
    """An `{"error": ...}` event inside a stream."""
    message, kind, code, param = _fields(error)
    cls = _TYPE_CLASSES.get(kind or "", ProviderUnavailableError)
    return cls(
        f"{NAME}: {message or 'error during the stream'}",
        provider=NAME,
        model=model,
        code=code,
        param=param,
    )


def _malformed(exc: Exception, model: str) -> ProviderError:
    return ProviderError(
        f"{NAME}: malformed answer ({type(exc).__name__}: {exc})", provider=NAME, model=model
    )


def _build(client: UpstreamClient, settings: Settings) -> OpenAIProvider:
    return OpenAIProvider(client)


SPEC = ProviderSpec(name=NAME, headers=openai_headers, build=_build)
