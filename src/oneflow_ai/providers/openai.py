"""OpenAI: Chat Completions (plain and streamed), Images (DALL·E 2 and 3), Embeddings
(`openai_embeddings.py`) and speech to text (`openai_transcription.py`).

Wire format as OpenAI's API reference documents it (see /v1/chat/completions and
/v1/images/generations). `OpenAIWire` holds the Chat Completions transforms the engine
(`engine.py`) runs; any OpenAI-compatible API is served by the same wire under its own name
(`compatible.py`). Streams always ask for `stream_options.include_usage`, so the answer's usage
arrives as the last chunk whatever the caller asked for. A request that arrived in OpenAI's
own dialect is forwarded as the caller wrote it (provider-specific fields included) with only
`model` and the stream options replaced, and the provider's body is handed back in
`ChatResponse.raw`.
"""

from __future__ import annotations

import time
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
    ToolCall,
    ToolCallDelta,
    WireBytes,
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
from oneflow_ai.providers.engine import ChatProvider, forwarded_body, is_forwarded, read_answer
from oneflow_ai.providers.errors import (
    error_class,
    error_fields,
    json_object,
    provider_error,
    stream_failure,
)
from oneflow_ai.providers.openai_embeddings import EmbeddingsMixin
from oneflow_ai.providers.openai_request import build_chat_body
from oneflow_ai.providers.openai_responses import PATH as RESPONSES_PATH
from oneflow_ai.providers.openai_responses import (
    ResponsesStream,
    is_native,
    parse_response,
    responses_body,
)
from oneflow_ai.providers.openai_transcription import TranscriptionMixin
from oneflow_ai.providers.openai_types import (
    ChatCompletionChunk,
    ChunkChoice,
    OpenAIChatCompletion,
    OpenAIUsageObject,
)
from oneflow_ai.providers.spec import JSON_HEADERS, ProviderSpec
from oneflow_ai.providers.sse import SSEEvent
from oneflow_ai.providers.upstream import UpstreamClient, UpstreamRequest
from oneflow_ai.providers.usage_fields import (
    UnknownUsageFields,
    openai_stream_usage,
    openai_usage,
)
from oneflow_ai.settings import Settings

__all__ = ["SPEC", "OpenAIProvider", "OpenAIWire", "build_chat_body", "openai_headers"]

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
    return {"Authorization": f"Bearer {api_key}", **JSON_HEADERS}


class OpenAIWire:
    """Chat Completions, canonical <-> wire (a `ChatWire`), under the provider's `name`.

    With `native_responses` (OpenAI itself, not an OpenAI-compatible API), a request that
    arrived in the Responses dialect goes to OpenAI's `/responses` (`openai_responses.py`);
    otherwise it is bridged onto Chat Completions like any other."""

    __slots__ = ("name", "native_responses", "usage_fields")
    dialect: WireDialect = "openai"
    path = "/chat/completions"

    def __init__(self, name: str = NAME, *, native_responses: bool = False) -> None:
        self.name = name
        self.usage_fields = UnknownUsageFields(name)
        self.native_responses = native_responses

    def _native(self, request: ChatRequest) -> bool:
        return self.native_responses and is_native(request)

    def request_path(self, request: ChatRequest) -> str:
        return RESPONSES_PATH if self._native(request) else self.path

    def request_body(
        self, request: ChatRequest, model: str, *, stream: bool
    ) -> Mapping[str, object]:
        if self._native(request):
            return responses_body(request, model, stream=stream)
        forwarded = forwarded_body(request, "openai", model)
        if forwarded is None:
            body = build_chat_body(request, model)
            if stream:
                body["stream"] = True
                body["stream_options"] = {"include_usage": True}
            return body
        if stream:
            options = forwarded.get("stream_options")
            forwarded["stream"] = True
            forwarded["stream_options"] = {
                **(options if isinstance(options, dict) else {}),
                "include_usage": True,
            }
        else:
            forwarded.pop("stream", None)
            forwarded.pop("stream_options", None)
        return forwarded

    def answer(self, body: bytes, request: ChatRequest, model: str) -> ChatResponse:
        decoded = orjson.loads(body)
        if self._native(request):
            return parse_response(decoded, model)
        usage = decoded.get("usage") if isinstance(decoded, dict) else None
        if isinstance(usage, dict):
            self.usage_fields.check(model, usage, "openai")
        return parse_chat(decoded, decoded, model)

    def stream_decoder(self, request: ChatRequest, model: str) -> OpenAIStream | ResponsesStream:
        if self._native(request):
            return ResponsesStream(self.name, model)
        forward = is_forwarded(request, self.dialect)
        return OpenAIStream(self.name, model, self.usage_fields, forward=forward)

    def map_error(self, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
        """OpenAI's `{"error": {message, type, param, code}}` answer, in OneFlow's taxonomy."""
        message, kind, code, param = error_fields(json_object(body).get("error"))
        cls = error_class(status)
        if code in ("content_policy_violation", "content_filter"):
            cls = ContentFilteredError
        elif "insufficient_quota" in (code, kind):
            cls = ProviderAuthError  # our account cannot pay: another provider may
        return provider_error(cls, self.name, status, headers, message, code=code, param=param)


class OpenAIProvider(EmbeddingsMixin, TranscriptionMixin, ChatProvider):
    """Chat, images, embeddings and transcription on OpenAI's API (implements `ChatCapable`,
    `ImageCapable`, `EmbeddingCapable` and `TranscriptionCapable`)."""

    def __init__(self, client: UpstreamClient, *, name: str = NAME) -> None:
        super().__init__(client, OpenAIWire(name, native_responses=True))

    async def generate_image(self, request: ImageRequest, model: str) -> ImageResponse:
        body: dict[str, object] = {
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
                "POST", "/images/generations", self._map_error, body=orjson.dumps(body), model=model
            )
        )
        images, created = read_answer(self.name, model, response.body, _images)
        usage = Usage(images=len(images), image_size=request.size, image_quality=request.quality)
        return ImageResponse(created=created, images=images, usage=usage, model=model)


def _images(body: bytes) -> tuple[list[GeneratedImage], int]:
    data = orjson.loads(body)
    images = [
        GeneratedImage(
            url=item.get("url"),
            b64_json=item.get("b64_json"),
            revised_prompt=item.get("revised_prompt"),
        )
        for item in data["data"]
    ]
    return images, int(data.get("created") or time.time())


# ---- OpenAI -> canonical ---------------------------------------------------------------


def finish_reason(value: object) -> FinishReason:
    return _FINISH.get(value, "stop") if isinstance(value, str) else "stop"


def parse_chat(body: OpenAIChatCompletion, raw: dict[str, object], model: str) -> ChatResponse:
    """The canonical answer of a completion (`raw`: the same body, kept as it came)."""
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
        raw=raw,
        raw_dialect="openai",
    )


def _usage(value: OpenAIUsageObject | None) -> Usage | None:
    if not isinstance(value, dict):
        return None
    return openai_usage(value)


class OpenAIStream:
    """A streamed completion's chunks as canonical events (a `StreamDecoder`): the answer is
    whole once a choice finished or `[DONE]` arrived. With `forward` (the caller speaks this
    dialect), each chunk also comes as it arrived (`WireBytes`), the finish chunk and those
    after it (the usage chunk) marked `last`."""

    __slots__ = ("_forward", "_model", "_name", "_started", "_usage_fields", "done", "finished")

    def __init__(
        self,
        name: str,
        model: str,
        usage_fields: UnknownUsageFields | None = None,
        *,
        forward: bool = False,
    ) -> None:
        self._name = name
        self._model = model
        self._usage_fields = usage_fields
        self._forward = forward
        self._started = False
        self.done = False
        self.finished = False

    @property
    def complete(self) -> bool:
        return self.done or self.finished

    def decode(self, event: SSEEvent, out: list[StreamEvent]) -> bool:
        data = event.data
        if data == b"[DONE]":
            self.done = True
            return True
        chunk: ChatCompletionChunk = orjson.loads(data)
        error = chunk.get("error")
        if error:
            raise stream_failure(self._name, self._model, error, _TYPE_CLASSES)
        if not self._started:
            self._started = True
            out.append(StreamStart(str(chunk.get("id") or ""), chunk.get("model") or self._model))
        choices = chunk.get("choices")
        if choices and _choice_events(choices, out):
            self.finished = True
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            if self._usage_fields is not None:
                self._usage_fields.check(self._model, usage, "openai")
            out.append(openai_stream_usage(usage))
        if self._forward:
            out.append(WireBytes("openai", None, data, self.finished))
        return False


def _choice_events(choices: list[ChunkChoice], out: list[StreamEvent]) -> bool:
    """Append the events of a chunk's answer choice (index 0) to `out`; whether it finished."""
    finished = False
    for choice in choices:
        if choice.get("index", 0) != 0:
            continue
        delta = choice.get("delta")
        if delta:
            content = delta.get("content")
            if content:
                out.append(TextDelta(content))
            for call in delta.get("tool_calls") or ():
                function = call.get("function") or {}
                out.append(
                    ToolCallDelta(
                        index=int(call.get("index") or 0),
                        arguments=function.get("arguments") or "",
                        id=call.get("id"),
                        name=function.get("name"),
                    )
                )
        reason = choice.get("finish_reason")
        if reason:
            out.append(StreamFinish(finish_reason(reason)))
            finished = True
    return finished


#: The error types of an in-stream `{"error": ...}` event.
_TYPE_CLASSES: dict[str, type[ProviderError]] = {
    "invalid_request_error": ProviderBadRequestError,
    "rate_limit_error": ProviderRateLimitedError,
    "tokens": ProviderRateLimitedError,
    "requests": ProviderRateLimitedError,
    "server_error": ProviderUnavailableError,
    "insufficient_quota": ProviderAuthError,
}


def _build(client: UpstreamClient, settings: Settings) -> OpenAIProvider:
    return OpenAIProvider(client)


SPEC = ProviderSpec(name=NAME, headers=openai_headers, build=_build)
