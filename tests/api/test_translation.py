"""Focused checks of the edge codecs: OpenAI chunks and Anthropic events from canonical
streams, and the translations between the two dialects' requests and answers."""

from __future__ import annotations

import orjson

from oneflow_ai.api.anthropic_messages import EventEncoder, render_message
from oneflow_ai.api.anthropic_request import parse_messages_request
from oneflow_ai.api.openai_chat import ChunkEncoder, render_chat_completion
from oneflow_ai.api.openai_chat_request import parse_chat_request
from oneflow_ai.billing.pricing import PricingEngine
from oneflow_ai.domain.chat import (
    ChatResponse,
    ImagePart,
    StreamFinish,
    StreamStart,
    StreamUsage,
    TextDelta,
    TextPart,
    ToolCall,
    ToolCallDelta,
)
from oneflow_ai.domain.usage import Usage
from oneflow_ai.errors import ProviderUnavailableError

USAGE = Usage(input_tokens=10, output_tokens=5)
#: The token classes of a usage that has none, in OneFlow's extension and Anthropic's usage.
NO_CLASSES = {
    "cached_input_tokens": 0,
    "cache_write_5m_tokens": 0,
    "cache_write_1h_tokens": 0,
    "reasoning_tokens": 0,
}
NO_CACHE = {
    "cache_creation_input_tokens": 0,
    "cache_read_input_tokens": 0,
    "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
}
COST = PricingEngine().price("gpt-4o", USAGE)


def _data(raw: bytes) -> list[object]:
    out: list[object] = []
    for block in raw.decode().split("\n\n"):
        if block:
            assert block.startswith("data: ")
            payload = block.removeprefix("data: ")
            out.append(payload if payload == "[DONE]" else orjson.loads(payload))
    return out


def _events(raw: bytes) -> list[tuple[str, dict[str, object]]]:
    out = []
    for block in raw.decode().split("\n\n"):
        if block:
            name, data = block.split("\n")
            out.append((name.removeprefix("event: "), orjson.loads(data.removeprefix("data: "))))
    return out


def test_openai_chunks_without_a_usage_request() -> None:
    encoder = ChunkEncoder(model="claude-3-haiku-20240307", created=7, include_usage=False)
    out = b"".join(
        encoder.event(e)
        for e in [
            StreamStart("msg_1", "claude-3-haiku-20240307"),
            StreamUsage(input_tokens=10),
            TextDelta("Hi"),
            ToolCallDelta(0, "", "toolu_1", "f"),
            ToolCallDelta(0, '{"a":1}'),
            StreamFinish("tool_calls"),
        ]
    )
    out += encoder.end(USAGE, COST)
    chunks = _data(out)
    assert chunks[-1] == "[DONE]"
    deltas = [c["choices"][0]["delta"] for c in chunks[:-1]]  # type: ignore[index]
    assert deltas == [
        {"role": "assistant", "content": "Hi"},
        {
            "tool_calls": [
                {
                    "index": 0,
                    "id": "toolu_1",
                    "type": "function",
                    "function": {"arguments": "", "name": "f"},
                }
            ]
        },
        {"tool_calls": [{"index": 0, "function": {"arguments": '{"a":1}'}}]},
        {},
    ]
    first, last = chunks[0], chunks[-2]
    assert first["id"] == "msg_1" and first["object"] == "chat.completion.chunk"  # type: ignore[index]
    assert "usage" not in first  # type: ignore[operator]
    assert last["choices"][0]["finish_reason"] == "tool_calls"  # type: ignore[index]
    assert last["oneflow"] == {  # type: ignore[index]
        "usage": {
            "input_tokens": 10,
            "output_tokens": 5,
            **NO_CLASSES,
            "estimated": False,
        },
        "credits": str(COST.credits),
    }


def test_openai_chunks_with_a_usage_request_and_an_empty_answer() -> None:
    encoder = ChunkEncoder(model="gpt-4o", created=7, include_usage=True)
    out = encoder.event(StreamFinish("stop")) + encoder.end(USAGE, COST)
    role, finish, usage, done = _data(out)
    assert role["choices"][0]["delta"] == {"role": "assistant", "content": ""}  # type: ignore[index]
    assert role["usage"] is None and finish["usage"] is None  # type: ignore[index]
    assert usage["choices"] == [] and usage["usage"]["total_tokens"] == 15  # type: ignore[index]
    assert done == "[DONE]"


def test_openai_error_event() -> None:
    encoder = ChunkEncoder(model="gpt-4o", created=7, include_usage=False)
    (event,) = _data(encoder.error(ProviderUnavailableError("gone"), USAGE, COST))
    assert event["error"] == {  # type: ignore[index]
        "message": "gone",
        "type": "server_error",
        "param": None,
        "code": "upstream_unavailable",
    }
    assert event["oneflow"]["credits"] == str(COST.credits)  # type: ignore[index]


def test_anthropic_events_open_and_close_blocks_as_content_alternates() -> None:
    encoder = EventEncoder(model="gpt-4o", input_tokens=99)
    stream = [
        StreamStart("chatcmpl-9", "gpt-4o-2024-08-06"),
        TextDelta("Let me "),
        TextDelta("look."),
        ToolCallDelta(0, "", "call_1", "search"),
        ToolCallDelta(0, '{"q":'),
        ToolCallDelta(0, '"x"}'),
        ToolCallDelta(1, '{"q":"y"}', "call_2", "search"),
        StreamFinish("tool_calls"),
        StreamUsage(10, 5),
    ]
    out = b"".join(encoder.event(e) for e in stream) + encoder.end(USAGE, COST)
    events = _events(out)
    assert [name for name, _ in events] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start = events[0][1]["message"]
    assert start["id"] == "chatcmpl-9" and start["usage"]["input_tokens"] == 99  # type: ignore[index]
    assert [e[1]["index"] for e in events if e[0] == "content_block_start"] == [0, 1, 2]
    assert events[5][1]["content_block"] == {
        "type": "tool_use",
        "id": "call_1",
        "name": "search",
        "input": {},
    }
    assert events[7][1]["delta"] == {"type": "input_json_delta", "partial_json": '"x"}'}
    delta = events[-2][1]
    assert delta["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}
    assert delta["usage"] == {"input_tokens": 10, "output_tokens": 5, **NO_CACHE}
    assert delta["oneflow"]["credits"] == str(COST.credits)  # type: ignore[index]


def test_anthropic_message_start_announces_the_providers_input_count() -> None:
    encoder = EventEncoder(model="claude", input_tokens=99)
    out = encoder.event(StreamUsage(input_tokens=25)) + encoder.event(TextDelta("x"))
    announced = _events(out)[0][1]["message"]["usage"]  # type: ignore[index]
    assert announced == {"input_tokens": 25, "output_tokens": 0, **NO_CACHE}
    # The cache reads and writes announced by the provider are announced too.
    encoder = EventEncoder(model="claude", input_tokens=99)
    report = StreamUsage(input_tokens=25, cached_input_tokens=20, cache_write_1h_tokens=3)
    out = encoder.event(report) + encoder.event(TextDelta("x"))
    assert _events(out)[0][1]["message"]["usage"] == {  # type: ignore[index]
        "input_tokens": 2,
        "output_tokens": 0,
        "cache_creation_input_tokens": 3,
        "cache_read_input_tokens": 20,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 3},
    }


def test_anthropic_request_becomes_canonical_messages() -> None:
    body = {
        "model": "gpt-4o",
        "max_tokens": 50,
        "system": [{"type": "text", "text": "be brief"}],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is this?"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"},
                    },
                ],
            },
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}}],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "t1",
                        "content": [{"type": "text", "text": "42"}],
                    },
                    {"type": "text", "text": "thanks"},
                ],
            },
        ],
        "tools": [{"name": "f", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "any"},
        "metadata": {"user_id": "u"},
    }
    request = parse_messages_request(body)
    roles = [(m.role, m.text, m.tool_call_id) for m in request.messages]
    assert roles == [
        ("system", "be brief", None),
        ("user", "what is this?", None),
        ("assistant", "", None),
        ("tool", "42", "t1"),
        ("user", "thanks", None),
    ]
    assert request.messages[1].content[1] == ImagePart("data:image/png;base64,AAAA")
    assert request.messages[2].tool_calls == [ToolCall("t1", "f", '{"a":1}')]
    assert (request.tool_choice, request.user, request.max_tokens) == ("required", "u", 50)
    assert request.raw is body and request.raw_dialect == "anthropic"


def test_openai_request_keeps_developer_messages_as_system() -> None:
    request, include_usage = parse_chat_request(
        {
            "model": "m",
            "messages": [
                {"role": "developer", "content": "rules"},
                {"role": "user", "content": [{"type": "text", "text": "x"}]},
            ],
            "max_tokens": 5,
            "max_completion_tokens": 7,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    )
    assert request.messages[0].role == "system" and request.messages[0].content == [
        TextPart("rules")
    ]
    assert request.max_tokens == 7 and request.stream and include_usage


def test_answers_translate_between_dialects() -> None:
    gpt = ChatResponse(
        "chatcmpl-1", "gpt-4o", "", "tool_calls", USAGE, [ToolCall("c1", "f", "not json")]
    )
    message = render_message(gpt, USAGE)
    assert message["content"] == [
        {"type": "tool_use", "id": "c1", "name": "f", "input": {"arguments": "not json"}}
    ]
    assert message["stop_reason"] == "tool_use"
    claude = ChatResponse(
        "msg_1", "claude-3-haiku-20240307", "", "tool_calls", USAGE, [ToolCall("t1", "f", "{}")]
    )
    completion = render_chat_completion(claude, USAGE, created=1)
    choice = completion["choices"][0]
    assert choice["message"]["content"] is None and choice["finish_reason"] == "tool_calls"
    assert choice["message"]["tool_calls"][0]["function"] == {"name": "f", "arguments": "{}"}
    assert completion["usage"] == {
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "total_tokens": 15,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }
