"""The access line of a model call, as a person reads it: the model asked for and the one that
answered, provider, tokens, credits and fallbacks; a fallback is logged only when there was one.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any

import pytest
from structlog.testing import capture_logs

from tests.integration.conftest import Gateway
from tests.support.access_lines import access_lines
from tests.support.audio import wav

HI = [{"role": "user", "content": "hi"}]
Logs = list[MutableMapping[str, Any]]


@pytest.fixture
def logs() -> Iterator[Logs]:
    with capture_logs() as captured:
        yield captured


def _access_line(logs: Logs, path: str) -> MutableMapping[str, Any]:
    (line,) = access_lines(logs, path)
    return line


def _about_fallbacks(logs: Logs) -> Logs:
    return [e for e in logs if "fallback" in e["event"] or e["log_level"] == "warning"]


def test_a_chat_answer(gateway: Gateway, logs: Logs) -> None:
    raw = gateway.openai().chat.completions.with_raw_response.create(
        model="gpt-4o", messages=HI, max_tokens=20
    )
    usage = raw.parse().usage
    assert usage is not None
    line = _access_line(logs, "/v1/chat/completions")
    assert line["status"] == 200 and line["log_level"] == "info"
    assert {k: line[k] for k in ("model_requested", "model", "provider", "fallbacks")} == {
        "model_requested": "gpt-4o",
        "model": "gpt-4o",
        "provider": "openai",
        "fallbacks": 0,
    }
    assert (line["input_tokens"], line["output_tokens"]) == (
        usage.prompt_tokens,
        usage.completion_tokens,
    )
    assert line["credits"] == raw.headers["x-oneflow-credits"]
    assert line["route"] == "model: gpt-4o requested"
    assert "error" not in line and _about_fallbacks(logs) == []


def test_a_stream_in_the_anthropic_dialect(gateway: Gateway, logs: Logs) -> None:
    with gateway.anthropic().messages.stream(
        model="claude-3-haiku", max_tokens=20, messages=HI
    ) as stream:
        message = stream.get_final_message()
    line = _access_line(logs, "/v1/messages")
    assert (line["model_requested"], line["model"], line["provider"]) == (
        "claude-3-haiku",
        "claude-3-haiku-20240307",
        "anthropic",
    )
    assert (line["input_tokens"], line["output_tokens"]) == (
        message.usage.input_tokens,
        message.usage.output_tokens,
    )
    (record,) = gateway.sink.wait_for(1)
    assert line["credits"] == str(record.cost.credits) and line["fallbacks"] == 0
    assert _about_fallbacks(logs) == []


def test_a_failure_without_a_fallback_logs_no_fallback(gateway: Gateway, logs: Logs) -> None:
    gateway.fakes.add_fault(provider="openai", status=503)
    response = gateway.post("/v1/chat/completions", {"model": "gpt-4o", "messages": HI})
    assert response.status_code == 503
    line = _access_line(logs, "/v1/chat/completions")
    assert (line["status"], line["model"], line["error"], line["fallbacks"]) == (
        503,
        "gpt-4o",
        "overloaded",
        0,
    )
    assert _about_fallbacks(logs) == []


def test_a_fallback_is_logged_once_per_model_passed(gateway: Gateway, logs: Logs) -> None:
    planned = gateway.post("/api/v1/request", {"prompt": "hi", "strategy": "cost_optimized"})
    gateway.fakes.add_fault(provider=planned.json()["provider"], status=503)
    response = gateway.post("/v1/chat/completions", {"model": "cost_optimized", "messages": HI})
    assert response.status_code == 200
    fallbacks = int(response.headers["x-oneflow-fallbacks"])
    line = _access_line(logs, "/v1/chat/completions")
    assert fallbacks >= 1 and line["fallbacks"] == fallbacks
    assert line["model_requested"] == "cost_optimized"
    assert line["model"] == response.headers["x-oneflow-model"]
    assert line["route"] == response.headers["x-oneflow-route"]
    moves = [e for e in logs if e["event"] == "fallback"]
    assert len(moves) == fallbacks and moves[-1]["next_model"] == line["model"]
    assert {e["error"] for e in moves} == {"overloaded"}


def test_images_and_speech(gateway: Gateway, logs: Logs) -> None:
    gateway.openai().images.generate(model="dall-e-2", prompt="a fox", n=2, size="256x256")
    gateway.openai().audio.speech.create(
        model="eleven_multilingual_v2", input="hello", voice="alloy"
    )
    image = _access_line(logs, "/v1/images/generations")
    speech = _access_line(logs, "/v1/audio/speech")
    assert (image["model"], image["images"], image["credits"]) == ("dall-e-2", 2, "3.200000")
    assert (speech["provider"], speech["characters"]) == ("elevenlabs", 5)


def test_embeddings_and_transcriptions(gateway: Gateway, logs: Logs) -> None:
    embedded = gateway.openai().embeddings.create(model="text-embedding-3-small", input="hi")
    line = _access_line(logs, "/v1/embeddings")
    assert (line["model"], line["input_tokens"]) == (
        "text-embedding-3-small",
        embedded.usage.prompt_tokens,
    )
    assert "output_tokens" not in line
    gateway.openai().audio.transcriptions.create(model="whisper-1", file=("a.wav", wav(2.2)))
    line = _access_line(logs, "/v1/audio/transcriptions")
    assert (line["model"], line["audio_seconds"], line["credits"]) == ("whisper-1", 3, "0.030000")
