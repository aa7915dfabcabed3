"""The Anthropic adapter over the in-process transport: headers, translation, events, errors."""

from __future__ import annotations

from collections.abc import AsyncIterator

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
from oneflow_ai.domain.usage import Usage
from oneflow_ai.errors import (
    ProviderAuthError,
    ProviderBadRequestError,
    ProviderRateLimitedError,
    ProviderUnavailableError,
)
from oneflow_ai.providers.anthropic import AnthropicProvider, anthropic_headers
from tests.support.transport import MockTransport, Script, sse

MESSAGE = {
    "id": "msg_01",
    "type": "message",
    "role": "assistant",
    "content": [
        {"type": "text", "text": "Let me check."},
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"location": "SF"}},
    ],
    "model": "claude-3-opus-20240229",
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {"input_tokens": 12, "output_tokens": 6, "cache_read_input_tokens": 3},
}


@pytest.fixture
def upstream() -> Script:
    return Script()


@pytest.fixture
async def provider(upstream: Script) -> AsyncIterator[AnthropicProvider]:
    client = MockTransport(
        upstream,
        provider="anthropic",
        base_url="http://anthropic.test",
        headers=anthropic_headers("sk-ant-secret"),
    )
    adapter = AnthropicProvider(client)
    yield adapter
    await adapter.aclose()


def _request(**overrides: object) -> ChatRequest:
    values: dict[str, object] = {
        "model": "claude-3-opus-20240229",
        "messages": [
            Message("system", [TextPart("be brief")]),
            Message("system", [TextPart("be kind")]),
            Message("user", [TextPart("hi"), ImagePart("data:image/png;base64,AAAA")]),
            Message(
                "assistant",
                [],
                tool_calls=[ToolCall("toolu_1", "get_weather", '{"location":"SF"}')],
            ),
            Message("tool", [TextPart("15 degrees")], tool_call_id="toolu_1"),
            Message("user", [TextPart("and tomorrow?")]),
        ],
        "temperature": 1.5,
        "stop": ["\n\nHuman:"],
        "tools": [
            Tool(
                "get_weather",
                "Get weather",
                {"type": "object", "properties": {"location": {"type": "string"}}},
            )
        ],
        "tool_choice": "required",
        "user": "user-123",
    }
    values.update(overrides)
    return ChatRequest(**values)  # type: ignore[arg-type]


async def test_canonical_request_becomes_a_messages_body(
    upstream: Script, provider: AnthropicProvider
) -> None:
    upstream.reply(MESSAGE)
    response = await provider.chat(_request(), "claude-3-opus-20240229")
    sent = upstream.requests[0]
    assert sent.path == "/v1/messages"
    assert sent.headers["x-api-key"] == "sk-ant-secret"
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in sent.headers
    assert sent.json() == {
        "model": "claude-3-opus-20240229",
        "max_tokens": 4096,  # required by Anthropic: the Claude 3 maximum when none is asked
        "system": "be brief\n\nbe kind",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "hi"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"},
                    },
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {
                        "type": "tool_use",
                        "id": "toolu_1",
                        "name": "get_weather",
                        "input": {"location": "SF"},
                    }
                ],
            },
            {
                "role": "user",  # the tool result and the next question share one user turn
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "15 degrees"},
                    {"type": "text", "text": "and tomorrow?"},
                ],
            },
        ],
        "temperature": 1.0,  # OpenAI allows up to 2, Anthropic up to 1
        "stop_sequences": ["\n\nHuman:"],
        "tools": [
            {
                "name": "get_weather",
                "description": "Get weather",
                "input_schema": {"type": "object", "properties": {"location": {"type": "string"}}},
            }
        ],
        "tool_choice": {"type": "any"},
        "metadata": {"user_id": "user-123"},
    }
    assert response.text == "Let me check."
    assert response.tool_calls == [ToolCall("toolu_1", "get_weather", '{"location":"SF"}')]
    assert response.finish_reason == "tool_calls"
    # the cache reads are part of the input, in their own class
    assert response.usage == Usage(input_tokens=15, output_tokens=6, cached_input_tokens=3)
    assert response.raw == MESSAGE and response.raw_dialect == "anthropic"


async def test_same_dialect_body_is_forwarded(
    upstream: Script, provider: AnthropicProvider
) -> None:
    raw = {
        "model": "claude-3-haiku",
        "max_tokens": 5,
        "messages": [{"role": "user", "content": "x"}],
        "top_k": 40,
    }
    upstream.reply(MESSAGE)
    await provider.chat(_request(raw=raw, raw_dialect="anthropic"), "claude-3-haiku-20240307")
    assert upstream.requests[0].json() == {**raw, "model": "claude-3-haiku-20240307"}


def _stream(*events: tuple[str, dict[str, object]]) -> list[bytes]:
    out: list[bytes] = []
    for name, data in events:
        out += sse(data, event=name)
    return out


FULL_STREAM = _stream(
    (
        "message_start",
        {
            "type": "message_start",
            "message": {
                "id": "msg_s",
                "type": "message",
                "role": "assistant",
                "content": [],
                "model": "claude-3-haiku-20240307",
                "stop_reason": None,
                "usage": {"input_tokens": 25, "output_tokens": 1},
            },
        },
    ),
    (
        "content_block_start",
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    ),
    ("ping", {"type": "ping"}),
    (
        "content_block_delta",
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": "Hello"},
        },
    ),
    ("content_block_stop", {"type": "content_block_stop", "index": 0}),
    (
        "content_block_start",
        {
            "type": "content_block_start",
            "index": 1,
            "content_block": {"type": "tool_use", "id": "toolu_9", "name": "f", "input": {}},
        },
    ),
    (
        "content_block_delta",
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": ""},
        },
    ),
    (
        "content_block_delta",
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": '{"a": 1}'},
        },
    ),
    ("content_block_stop", {"type": "content_block_stop", "index": 1}),
    (
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use", "stop_sequence": None},
            "usage": {"output_tokens": 15},
        },
    ),
    ("message_stop", {"type": "message_stop"}),
)


async def test_full_event_stream_becomes_canonical_events(
    upstream: Script, provider: AnthropicProvider
) -> None:
    upstream.reply_stream(FULL_STREAM)
    events = [
        e
        async for batch in provider.stream_chat(_request(stream=True), "claude-3-haiku-20240307")
        for e in batch
    ]
    assert events == [
        StreamStart("msg_s", "claude-3-haiku-20240307"),
        StreamUsage(
            input_tokens=25, cached_input_tokens=0, cache_write_5m_tokens=0, cache_write_1h_tokens=0
        ),
        TextDelta("Hello"),
        ToolCallDelta(0, "", "toolu_9", "f"),
        ToolCallDelta(0, '{"a": 1}'),
        StreamFinish("tool_calls"),
        StreamUsage(None, 15),
    ]
    assert upstream.requests[0].json()["stream"] is True


async def test_in_stream_overloaded_error_and_a_stream_without_message_stop(
    upstream: Script, provider: AnthropicProvider
) -> None:
    upstream.reply_stream(
        FULL_STREAM[:4]
        + sse(
            {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
            event="error",
        )
    )
    with pytest.raises(ProviderUnavailableError, match="Overloaded"):
        _ = [
            e
            async for batch in provider.stream_chat(
                _request(stream=True), "claude-3-haiku-20240307"
            )
            for e in batch
        ]
    upstream.reply_stream(FULL_STREAM[:-1])
    with pytest.raises(ProviderUnavailableError, match="ended before"):
        _ = [
            e
            async for batch in provider.stream_chat(
                _request(stream=True), "claude-3-haiku-20240307"
            )
            for e in batch
        ]


@pytest.mark.parametrize(
    ("status", "kind", "expected", "headers", "retry_after"),
    [
        (401, "authentication_error", ProviderAuthError, {}, None),
        (400, "invalid_request_error", ProviderBadRequestError, {}, None),
        (429, "rate_limit_error", ProviderRateLimitedError, {"retry-after": "7"}, 7.0),
        (500, "api_error", ProviderUnavailableError, {}, None),
        (529, "overloaded_error", ProviderUnavailableError, {"retry-after": "1"}, 1.0),
    ],
)
async def test_error_answers_map_to_the_taxonomy(
    upstream: Script,
    provider: AnthropicProvider,
    status: int,
    kind: str,
    expected: type[Exception],
    headers: dict[str, str],
    retry_after: float | None,
) -> None:
    upstream.reply(
        {"type": "error", "error": {"type": kind, "message": f"{kind} happened"}},
        status=status,
        headers=headers,
    )
    with pytest.raises(expected) as caught:
        await provider.chat(_request(), "claude-3-haiku-20240307")
    assert type(caught.value) is expected
    assert caught.value.retry_after == retry_after  # type: ignore[attr-defined]
