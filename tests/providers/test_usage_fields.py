"""Provider usage objects read into token classes, unknown fields logged once per model."""

from __future__ import annotations

import orjson
from structlog.testing import capture_logs

from oneflow_ai.domain.chat import ChatRequest, Message, StreamUsage, TextPart
from oneflow_ai.domain.usage import Usage
from oneflow_ai.providers.anthropic import AnthropicWire
from oneflow_ai.providers.openai import OpenAIWire
from oneflow_ai.providers.sse import SSEEvent
from oneflow_ai.providers.usage_fields import anthropic_usage, openai_usage

REQUEST = ChatRequest(model="m", messages=[Message("user", [TextPart("hi")])])


def test_openai_cached_and_reasoning_tokens() -> None:
    usage = openai_usage(
        {
            "prompt_tokens": 1000,
            "completion_tokens": 300,
            "prompt_tokens_details": {"cached_tokens": 640},
            "completion_tokens_details": {"reasoning_tokens": 256},
        }
    )
    assert usage == Usage(
        input_tokens=1000, output_tokens=300, cached_input_tokens=640, reasoning_tokens=256
    )
    assert usage.uncached_input_tokens == 360


def test_anthropic_cache_reads_and_writes_by_lifetime() -> None:
    usage = anthropic_usage(
        {
            "input_tokens": 50,
            "output_tokens": 20,
            "cache_read_input_tokens": 1000,
            "cache_creation_input_tokens": 300,
            "cache_creation": {"ephemeral_5m_input_tokens": 100, "ephemeral_1h_input_tokens": 200},
        }
    )
    assert usage == Usage(
        input_tokens=1350,
        output_tokens=20,
        cached_input_tokens=1000,
        cache_write_5m_tokens=100,
        cache_write_1h_tokens=200,
    )
    # Without the split a write is a 5-minute write (the API's default lifetime).
    plain = anthropic_usage({"input_tokens": 5, "cache_creation_input_tokens": 40})
    assert (plain.cache_write_5m_tokens, plain.cache_write_1h_tokens) == (40, 0)


def test_odd_reports_are_cut_to_their_totals_not_refused() -> None:
    usage = openai_usage(
        {
            "prompt_tokens": 10,
            "completion_tokens": "many",
            "prompt_tokens_details": {"cached_tokens": 99},
            "completion_tokens_details": {"reasoning_tokens": 5},
        }
    )
    assert usage == Usage(input_tokens=10, output_tokens=0, cached_input_tokens=10)


def _openai_body(extra: dict[str, object]) -> bytes:
    return orjson.dumps(
        {
            "id": "c",
            "model": "gpt-4.1",
            "choices": [{"index": 0, "message": {"content": "x"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, **extra},
        }
    )


def test_unknown_usage_fields_are_billed_around_and_logged_once_per_model() -> None:
    wire = OpenAIWire()
    with capture_logs() as logs:
        for model in ("gpt-4.1", "gpt-4.1", "gpt-5"):
            answer = wire.answer(_openai_body({"surprise_tokens": 7}), REQUEST, model)
            assert answer.usage == Usage(input_tokens=3, output_tokens=1)
        wire.answer(_openai_body({}), REQUEST, "o3")
    unknown = [e for e in logs if e["event"] == "usage_fields_unknown"]
    assert [(e["model"], e["fields"]) for e in unknown] == [
        ("gpt-4.1", ["surprise_tokens"]),
        ("gpt-5", ["surprise_tokens"]),
    ]
    assert unknown[0]["provider"] == "openai"


def test_streams_report_the_classes() -> None:
    chunk = {
        "id": "c",
        "model": "o3",
        "choices": [],
        "usage": {
            "prompt_tokens": 100,
            "completion_tokens": 50,
            "prompt_tokens_details": {"cached_tokens": 64},
            "completion_tokens_details": {"reasoning_tokens": 30},
        },
    }
    out: list[object] = []
    OpenAIWire().stream_decoder(REQUEST, "o3").decode(SSEEvent(None, orjson.dumps(chunk)), out)  # type: ignore[arg-type]
    assert out[-1] == StreamUsage(100, 50, 64, 0, 0, 30)

    start = {
        "type": "message_start",
        "message": {
            "id": "m",
            "model": "claude-sonnet-4-5-20250929",
            "usage": {
                "input_tokens": 10,
                "output_tokens": 1,
                "cache_read_input_tokens": 500,
                "cache_creation_input_tokens": 40,
                "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 40},
            },
        },
    }
    events: list[object] = []
    decoder = AnthropicWire().stream_decoder(REQUEST, "claude-sonnet-4-5")
    decoder.decode(SSEEvent("message_start", orjson.dumps(start)), events)  # type: ignore[arg-type]
    # The opening report gives the prompt side only; the output comes with message_delta.
    assert events[-1] == StreamUsage(550, None, 500, 0, 40, None)
