"""OpenAI's own Responses API under the OpenAI adapter: a request in the Responses dialect goes
to `/responses` as prepared, its answer and typed stream events become canonical ones, and
error events map to OneFlow's taxonomy; an OpenAI-compatible API bridges it instead."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
import pytest

from oneflow_ai.domain.chat import (
    ChatRequest,
    Message,
    StreamEvent,
    StreamFinish,
    StreamStart,
    StreamUsage,
    TextDelta,
    TextPart,
    ThinkingDelta,
    ToolCallDelta,
    WireEvent,
)
from oneflow_ai.errors import ProviderBadRequestError, ProviderRateLimitedError
from oneflow_ai.providers.engine import ChatProvider
from oneflow_ai.providers.openai import OpenAIProvider, OpenAIWire, openai_headers
from tests.support.transport import MockTransport, Script

BODY = {"model": "gpt-4o", "input": [{"role": "user", "content": "Hi"}], "store": False}


def _request(stream: bool = False) -> ChatRequest:
    return ChatRequest(
        model="gpt-4o",
        messages=[Message("user", [TextPart("Hi")])],
        stream=stream,
        raw=dict(BODY),
        raw_dialect="responses",
    )


def _response(output: list[dict[str, object]], status: str = "completed") -> dict[str, object]:
    return {
        "id": "resp_up",
        "object": "response",
        "status": status,
        "model": "gpt-4o-2024-08-06",
        "output": output,
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "usage": {"input_tokens": 7, "output_tokens": 5, "total_tokens": 12},
    }


def _event(kind: str, **fields: object) -> bytes:
    data = orjson.dumps({"type": kind, "sequence_number": 0, **fields})
    return b"event: " + kind.encode() + b"\ndata: " + data + b"\n\n"


@pytest.fixture
def upstream() -> Script:
    return Script()


def _client(upstream: Script) -> MockTransport:
    return MockTransport(
        upstream,
        provider="openai",
        base_url="http://openai.test/v1",
        headers=openai_headers("sk-upstream"),
    )


@pytest.fixture
async def provider(upstream: Script) -> AsyncIterator[OpenAIProvider]:
    adapter = OpenAIProvider(_client(upstream))
    yield adapter
    await adapter.aclose()


async def test_a_response_is_sent_to_responses_and_read(
    upstream: Script, provider: OpenAIProvider
) -> None:
    output = [
        {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "hm"}]},
        {
            "type": "message",
            "id": "msg_1",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Hello", "annotations": []}],
        },
        {
            "type": "function_call",
            "id": "fc_1",
            "call_id": "call_1",
            "name": "f",
            "arguments": "{}",
        },
    ]
    upstream.reply(_response(output))
    answer = await provider.chat(_request(), "gpt-4o")
    sent = upstream.requests[0]
    assert sent.path == "/v1/responses" and sent.json() == BODY
    assert (answer.text, answer.reasoning, answer.finish_reason) == ("Hello", "hm", "tool_calls")
    assert [(c.id, c.name) for c in answer.tool_calls] == [("call_1", "f")]
    assert answer.usage is not None and answer.usage.output_tokens == 5
    assert answer.raw_dialect == "responses" and answer.raw is not None


async def test_an_incomplete_response_was_cut_at_its_length(
    upstream: Script, provider: OpenAIProvider
) -> None:
    upstream.reply(_response([], status="incomplete"))
    assert (await provider.chat(_request(), "gpt-4o")).finish_reason == "length"


async def test_a_streamed_response_becomes_canonical_events(
    upstream: Script, provider: OpenAIProvider
) -> None:
    created = {"id": "resp_up", "model": "gpt-4o-2024-08-06"}
    call = {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "f"}
    upstream.reply_stream(
        [
            _event("response.created", response=created),
            _event("response.reasoning_summary_text.delta", delta="hm", output_index=0),
            _event("response.output_text.delta", delta="Hel", output_index=1),
            _event("response.output_text.delta", delta="lo", output_index=1),
            _event("response.output_item.added", output_index=2, item=call),
            _event("response.function_call_arguments.delta", output_index=2, delta="{}"),
            _event("response.completed", response=_response([])),
        ]
    )
    events: list[StreamEvent] = []
    async for batch in provider.stream_chat(_request(stream=True), "gpt-4o"):
        events.extend(batch)
    assert upstream.requests[0].json() == {**BODY, "stream": True}
    # Each event as it came, for a caller of the same dialect, then what it means.
    wire = [event.data["type"] for event in events if isinstance(event, WireEvent)]
    assert wire == [
        "response.created",
        "response.reasoning_summary_text.delta",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.completed",
    ]
    assert isinstance(events[0], WireEvent) and isinstance(events[1], StreamStart)
    assert [event for event in events if not isinstance(event, WireEvent)] == [
        StreamStart("resp_up", "gpt-4o-2024-08-06"),
        ThinkingDelta("hm"),
        TextDelta("Hel"),
        TextDelta("lo"),
        ToolCallDelta(0, "", "call_1", "f"),
        ToolCallDelta(0, "{}"),
        StreamFinish("tool_calls"),
        StreamUsage(7, 5),
    ]


@pytest.mark.parametrize(
    ("event", "error"),
    [
        (
            _event("error", code="rate_limit_exceeded", message="slow down", param=None),
            ProviderRateLimitedError,
        ),
        (
            _event(
                "response.failed",
                response={"error": {"code": "invalid_prompt", "message": "no"}},
            ),
            ProviderBadRequestError,
        ),
    ],
)
async def test_a_failure_in_the_stream_is_a_provider_error(
    upstream: Script, provider: OpenAIProvider, event: bytes, error: type[Exception]
) -> None:
    upstream.reply_stream([_event("response.created", response={"id": "r", "model": "m"}), event])
    with pytest.raises(error):
        async for _batch in provider.stream_chat(_request(stream=True), "gpt-4o"):
            pass


async def test_an_openai_compatible_api_bridges_a_response(upstream: Script) -> None:
    adapter = ChatProvider(_client(upstream), OpenAIWire("groq"))
    upstream.reply(
        {
            "id": "c",
            "object": "chat.completion",
            "model": "llama",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "Hi"},
                    "finish_reason": "stop",
                }
            ],
        }
    )
    answer = await adapter.chat(_request(), "llama")
    assert upstream.requests[0].path == "/v1/chat/completions"
    assert upstream.requests[0].json()["messages"] == [{"role": "user", "content": "Hi"}]
    assert answer.text == "Hi"
    await adapter.aclose()
