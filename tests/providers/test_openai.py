"""The OpenAI adapter over the in-process transport: wire format both ways and error mapping."""

from __future__ import annotations

import gc
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest

from oneflow_ai.domain.chat import (
    ChatRequest,
    ImagePart,
    Message,
    StreamFinish,
    StreamStart,
    StreamUsage,
    TextDelta,
    TextPart,
    Tool,
    ToolCall,
    ToolCallDelta,
)
from oneflow_ai.domain.media import ImageRequest
from oneflow_ai.domain.usage import Usage
from oneflow_ai.errors import (
    ContentFilteredError,
    ProviderAuthError,
    ProviderBadRequestError,
    ProviderRateLimitedError,
    ProviderUnavailableError,
)
from oneflow_ai.providers.base import ChatCapable, ImageCapable
from oneflow_ai.providers.openai import OpenAIProvider, openai_headers
from tests.support.transport import MockTransport, Script, sse

COMPLETION = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "gpt-4o-2024-08-06",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hi!", "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12},
    "system_fingerprint": "fp_1",
}


@pytest.fixture
def upstream() -> Script:
    return Script()


@pytest.fixture
async def provider(upstream: Script) -> AsyncIterator[OpenAIProvider]:
    client = MockTransport(
        upstream,
        provider="openai",
        base_url="http://openai.test/v1",
        headers=openai_headers("sk-upstream-secret"),
    )
    adapter = OpenAIProvider(client)
    yield adapter
    await adapter.aclose()


def _request(**overrides: object) -> ChatRequest:
    values: dict[str, object] = {
        "model": "gpt-4o",
        "messages": [
            Message("system", [TextPart("be brief")]),
            Message("user", [TextPart("look"), ImagePart("data:image/png;base64,AAAA", "low")]),
            Message("assistant", [], tool_calls=[ToolCall("call_1", "f", '{"x":1}')]),
            Message("tool", [TextPart("42")], tool_call_id="call_1"),
        ],
        "max_tokens": 10,
        "temperature": 0.5,
        "stop": ["\n"],
        "tools": [Tool("f", "d", {"type": "object", "properties": {"x": {"type": "integer"}}})],
        "tool_choice": "f",
        "user": "u-1",
    }
    values.update(overrides)
    return ChatRequest(**values)  # type: ignore[arg-type]


async def test_canonical_request_is_written_as_chat_completions(
    upstream: Script, provider: OpenAIProvider
) -> None:
    assert isinstance(provider, ChatCapable) and isinstance(provider, ImageCapable)
    upstream.reply(COMPLETION)
    response = await provider.chat(_request(), "gpt-4o")
    sent = upstream.requests[0]
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == "Bearer sk-upstream-secret"
    assert sent.json() == {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "be brief"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "look"},
                    {
                        "type": "image_url",
                        "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"},
                    },
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "f", "arguments": '{"x":1}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "42"},
        ],
        "max_tokens": 10,
        "temperature": 0.5,
        "stop": ["\n"],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "f",
                    "description": "d",
                    "parameters": {"type": "object", "properties": {"x": {"type": "integer"}}},
                },
            }
        ],
        "tool_choice": {"type": "function", "function": {"name": "f"}},
        "user": "u-1",
    }
    assert (response.text, response.finish_reason, response.model) == (
        "Hi!",
        "stop",
        "gpt-4o-2024-08-06",
    )
    assert response.usage == Usage(input_tokens=9, output_tokens=3)
    assert response.raw == COMPLETION and response.raw_dialect == "openai"


async def test_same_dialect_body_is_forwarded_with_model_replaced(
    upstream: Script, provider: OpenAIProvider
) -> None:
    raw = {
        "model": "auto",
        "messages": [{"role": "user", "content": "hi"}],
        "logit_bias": {"50256": -100},
        "stream": False,
        "stream_options": None,
    }
    upstream.reply(COMPLETION)
    await provider.chat(_request(raw=raw, raw_dialect="openai"), "gpt-3.5-turbo")
    assert upstream.requests[0].json() == {
        "model": "gpt-3.5-turbo",
        "messages": [{"role": "user", "content": "hi"}],
        "logit_bias": {"50256": -100},
    }
    # The streamed form always asks for usage, keeping the caller's other stream options.
    upstream.reply_stream(sse({"id": "c", "model": "m", "choices": [], "usage": None}, "[DONE]"))
    streamed = {**raw, "stream": True, "stream_options": {"include_obfuscation": False}}
    request = _request(raw=streamed, raw_dialect="openai")
    _ = [event async for batch in provider.stream_chat(request, "gpt-4o") for event in batch]
    body = upstream.requests[1].json()
    assert body["stream"] is True
    assert body["stream_options"] == {"include_obfuscation": False, "include_usage": True}


async def test_tool_call_answer_is_parsed(upstream: Script, provider: OpenAIProvider) -> None:
    answer = {
        **COMPLETION,
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_9",
                            "type": "function",
                            "function": {"name": "get", "arguments": "{}"},
                        }
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ],
    }
    upstream.reply(answer)
    response = await provider.chat(_request(), "gpt-4o")
    assert response.text == "" and response.finish_reason == "tool_calls"
    assert response.tool_calls == [ToolCall("call_9", "get", "{}")]


async def test_stream_events_text_tools_finish_and_usage(
    upstream: Script, provider: OpenAIProvider
) -> None:
    base = {
        "id": "chatcmpl-7",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4o-x",
    }

    def chunk(delta: dict[str, object], finish: str | None = None) -> dict[str, object]:
        return {
            **base,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            "usage": None,
        }

    upstream.reply_stream(
        sse(
            chunk({"role": "assistant", "content": ""}),
            chunk({"content": "Hel"}),
            chunk({"content": "lo"}),
            chunk(
                {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "call_a",
                            "type": "function",
                            "function": {"name": "f", "arguments": ""},
                        }
                    ]
                }
            ),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"x"'}}]}),
            chunk({}, "tool_calls"),
            {**base, "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 7}},
            "[DONE]",
        )
    )
    events = [
        event
        async for batch in provider.stream_chat(_request(stream=True), "gpt-4o")
        for event in batch
    ]
    assert events == [
        StreamStart("chatcmpl-7", "gpt-4o-x"),
        TextDelta("Hel"),
        TextDelta("lo"),
        ToolCallDelta(0, "", "call_a", "f"),
        ToolCallDelta(0, '{"x"'),
        StreamFinish("tool_calls"),
        StreamUsage(5, 7, 0, 0, 0, 0),
    ]


async def test_stream_error_event_and_early_end_raise(
    upstream: Script, provider: OpenAIProvider
) -> None:
    base = {"id": "c", "model": "m", "choices": [{"index": 0, "delta": {"content": "x"}}]}
    upstream.reply_stream(sse(base, {"error": {"message": "boom", "type": "server_error"}}))
    received = []
    with pytest.raises(ProviderUnavailableError, match="boom"):
        async for batch in provider.stream_chat(_request(stream=True), "gpt-4o"):
            received.extend(batch)
    assert received == [StreamStart("c", "m"), TextDelta("x")]

    upstream.reply_stream(sse(base))  # ends cleanly but without a finish or [DONE]
    with pytest.raises(ProviderUnavailableError, match="ended before"):
        _ = [
            event
            async for batch in provider.stream_chat(_request(stream=True), "gpt-4o")
            for event in batch
        ]


@pytest.mark.parametrize(
    ("status", "error", "headers", "expected", "retry_after"),
    [
        (
            401,
            {
                "message": "Incorrect API key provided: sk-upst***",
                "type": "invalid_request_error",
                "code": "invalid_api_key",
            },
            {},
            ProviderAuthError,
            None,
        ),
        (
            429,
            {"message": "Rate limit reached", "type": "tokens", "code": "rate_limit_exceeded"},
            {"retry-after-ms": "250", "retry-after": "9"},
            ProviderRateLimitedError,
            0.25,
        ),
        (
            429,
            {
                "message": "You exceeded your current quota",
                "type": "insufficient_quota",
                "code": "insufficient_quota",
            },
            {},
            ProviderAuthError,
            None,
        ),
        (
            400,
            {
                "message": "Your request was rejected",
                "type": "invalid_request_error",
                "code": "content_policy_violation",
            },
            {},
            ContentFilteredError,
            None,
        ),
        (
            404,
            {
                "message": "The model `gpt-9` does not exist",
                "type": "invalid_request_error",
                "code": "model_not_found",
            },
            {},
            ProviderBadRequestError,
            None,
        ),
        (
            500,
            {"message": "The server had an error", "type": "server_error"},
            {"retry-after": "2"},
            ProviderUnavailableError,
            2.0,
        ),
        (503, None, {}, ProviderUnavailableError, None),
    ],
)
async def test_error_answers_map_to_the_taxonomy(
    upstream: Script,
    provider: OpenAIProvider,
    status: int,
    error: dict[str, str] | None,
    headers: dict[str, str],
    expected: type[Exception],
    retry_after: float | None,
) -> None:
    if error is None:
        upstream.reply(raw=b"<html>Service Unavailable</html>", status=status, headers=headers)
    else:
        upstream.reply({"error": {"param": None, **error}}, status=status, headers=headers)
    with pytest.raises(expected) as caught:
        await provider.chat(_request(), "gpt-4o")
    exc = caught.value
    assert type(exc) is expected
    assert exc.upstream_status == status and exc.retry_after == retry_after  # type: ignore[attr-defined]
    assert "sk-upst" not in exc.message  # our key never reaches the caller


async def test_image_generation(upstream: Script, provider: OpenAIProvider) -> None:
    upstream.reply(
        {
            "created": 1713833628,
            "data": [{"url": "https://img/1.png", "revised_prompt": "an otter"}],
        }
    )
    request = ImageRequest(
        model="dall-e-3", prompt="otter", size="1024x1792", quality="hd", style="natural"
    )
    response = await provider.generate_image(request, "dall-e-3")
    assert upstream.requests[0].path == "/v1/images/generations"
    assert upstream.requests[0].json() == {
        "model": "dall-e-3",
        "prompt": "otter",
        "n": 1,
        "response_format": "url",
        "size": "1024x1792",
        "quality": "hd",
        "style": "natural",
    }
    assert response.created == 1713833628
    assert [(i.url, i.revised_prompt) for i in response.images] == [
        ("https://img/1.png", "an otter")
    ]
    assert response.usage == Usage(images=1, image_size="1024x1792", image_quality="hd")


async def test_a_stream_ended_by_its_provider_closes_its_readers_itself(
    upstream: Script, provider: OpenAIProvider
) -> None:
    """The readers of a stream that ends at `[DONE]`, before its body does, are closed by the
    engine: none is left to the event loop's finalizer (a task and a wake-up of the loop)."""
    base = {"id": "c", "model": "m"}
    done = {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    upstream.reply_stream([*sse(base, done, "[DONE]"), b": after the end\n\n"])
    firstiter, finalizer = sys.get_asyncgen_hooks()
    abandoned: list[str] = []

    def record(generator: Any) -> None:
        abandoned.append(generator.__qualname__)
        if finalizer is not None:
            finalizer(generator)

    sys.set_asyncgen_hooks(firstiter, record)
    try:
        events = [
            event
            async for batch in provider.stream_chat(_request(stream=True), "gpt-4o")
            for event in batch
        ]
        gc.collect()
    finally:
        sys.set_asyncgen_hooks(firstiter, finalizer)
    assert events[-1] == StreamFinish("stop")
    assert abandoned == []
