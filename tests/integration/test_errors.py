"""Provider failures as the caller sees them, for every provider, in the caller's dialect.

Faults are injected in the fake providers; the gateway maps each provider's error answer onto
OneFlow's taxonomy and renders it in the caller's dialect, with `Retry-After` kept.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import anthropic
import httpx
import openai
import pytest

from tests.integration.conftest import KEY, Gateway

# provider -> a request through the OpenAI-dialect edge that reaches it
OPENAI_EDGE_CALLS: dict[str, tuple[str, dict[str, object]]] = {
    "openai": (
        "/v1/chat/completions",
        {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]},
    ),
    "anthropic": (
        "/v1/chat/completions",
        {"model": "claude-3-haiku", "messages": [{"role": "user", "content": "hi"}]},
    ),
    "stability": ("/v1/images/generations", {"model": "sd3.5-large", "prompt": "a tree"}),
    "elevenlabs": (
        "/v1/audio/speech",
        {"model": "eleven_multilingual_v2", "input": "hi", "voice": "alloy"},
    ),
}
PROVIDERS = list(OPENAI_EDGE_CALLS)

# (fault, our status, OpenAI error type, OpenAI error code, retry-after header)
CASES = {
    "401": ({"status": 401}, 502, "server_error", "upstream_authentication", None),
    "429": ({"status": 429, "retry_after": 2}, 429, "rate_limit_error", None, "2"),
    "500": ({"status": 500}, 503, "server_error", "upstream_unavailable", None),
    "529": ({"status": 529}, 503, "server_error", "upstream_unavailable", None),
    "timeout": ({"timeout": True}, 504, "server_error", "upstream_timeout", None),
}


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("case", list(CASES))
def test_provider_failure_in_the_openai_dialect(gateway: Gateway, provider: str, case: str) -> None:
    fault, status, kind, code, retry_after = CASES[case]
    gateway.fakes.add_fault(provider=provider, **fault)
    path, body = OPENAI_EDGE_CALLS[provider]
    response = gateway.post(path, body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["type"] == kind
    if code is not None:
        assert error["code"] == code
    assert set(error) == {"message", "type", "param", "code"}
    assert response.headers.get("retry-after") == retry_after
    if case == "401":  # about our key, not the caller's: nothing about it is shown
        assert "sk-" not in error["message"]
    (record,) = gateway.sink.wait_for(1)
    assert record.outcome == "error" and record.provider == provider


SDK_ERRORS: dict[str, type[openai.APIStatusError]] = {
    "401": openai.InternalServerError,
    "429": openai.RateLimitError,
    "500": openai.InternalServerError,
    "529": openai.InternalServerError,
    "timeout": openai.InternalServerError,
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_openai_sdk_raises_its_own_exceptions(gateway: Gateway, case: str) -> None:
    fault, status, *_ = CASES[case]
    gateway.fakes.add_fault(provider="anthropic", **fault)
    with pytest.raises(SDK_ERRORS[case]) as caught:
        gateway.openai().chat.completions.create(
            model="claude-3-haiku", messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.status_code == status


ANTHROPIC_TYPES = {
    "401": (502, "api_error", anthropic.InternalServerError),
    "429": (429, "rate_limit_error", anthropic.RateLimitError),
    "500": (503, "overloaded_error", anthropic.InternalServerError),
    "529": (503, "overloaded_error", anthropic.InternalServerError),
    "timeout": (504, "timeout_error", anthropic.InternalServerError),
}


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
@pytest.mark.parametrize("case", list(CASES))
def test_provider_failure_in_the_anthropic_dialect(
    gateway: Gateway, provider: str, case: str
) -> None:
    fault = CASES[case][0]
    status, kind, exception = ANTHROPIC_TYPES[case]
    gateway.fakes.add_fault(provider=provider, **fault)
    model = "gpt-4o" if provider == "openai" else "claude-3-haiku"
    with pytest.raises(exception) as caught:
        gateway.anthropic().messages.create(
            model=model, max_tokens=20, messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.status_code == status
    assert caught.value.body["error"]["type"] == kind  # type: ignore[index]
    if case == "429":
        assert caught.value.response.headers["retry-after"] == "2"


def _openai_stream(gateway: Gateway, model: str) -> Callable[[], list[str]]:
    def run() -> list[str]:
        received = []
        for chunk in gateway.openai().chat.completions.create(
            model=model, messages=[{"role": "user", "content": "tell me a story"}], stream=True
        ):
            if chunk.choices and chunk.choices[0].delta.content:
                received.append(chunk.choices[0].delta.content)
        return received

    return run


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
@pytest.mark.parametrize("fault", ["drop_after_chunks", "error_after_chunks"])
def test_a_stream_broken_upstream_ends_with_an_openai_error_event(
    gateway: Gateway, provider: str, fault: str
) -> None:
    gateway.fakes.add_fault(provider=provider, **{fault: 3})
    model = "gpt-4o" if provider == "openai" else "claude-3-haiku"
    with pytest.raises(openai.APIError) as caught:
        _openai_stream(gateway, model)()
    assert not isinstance(caught.value, openai.APIStatusError)  # an in-stream error event
    assert caught.value.type == "server_error"
    body = caught.value.body
    assert isinstance(body, dict) and body["code"] == "upstream_unavailable"
    (record,) = gateway.sink.wait_for(1)
    assert record.outcome == "cut_off" and record.usage.output_tokens > 0
    if provider == "openai":  # OpenAI reports usage only at the end: OneFlow counted it
        assert record.usage.estimated and record.cost.estimated


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_a_stream_broken_upstream_ends_with_an_anthropic_error_event(
    gateway: Gateway, provider: str
) -> None:
    gateway.fakes.add_fault(provider=provider, drop_after_chunks=2)
    model = "gpt-4o" if provider == "openai" else "claude-3-haiku"
    received = []
    with (
        pytest.raises(anthropic.APIStatusError) as caught,
        gateway.anthropic().messages.stream(
            model=model, max_tokens=100, messages=[{"role": "user", "content": "a story"}]
        ) as stream,
    ):
        received.extend(stream.text_stream)
    assert received  # content arrived before the break
    assert caught.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]
    oneflow = caught.value.body["oneflow"]  # type: ignore[index]
    assert oneflow["usage"]["estimated"] is True
    (record,) = gateway.sink.wait_for(1)
    assert record.outcome == "cut_off"
    assert oneflow["usage"]["output_tokens"] == record.usage.output_tokens


def test_raw_sse_bytes_of_a_cut_stream_are_well_formed(gateway: Gateway) -> None:
    gateway.fakes.add_fault(provider="anthropic", drop_after_chunks=2)
    response = gateway.post(
        "/v1/messages",
        {
            "model": "claude-3-haiku",
            "max_tokens": 50,
            "stream": True,
            "messages": [{"role": "user", "content": "x"}],
        },
    )
    events = [e for e in response.text.split("\n\n") if e]
    assert all(e.startswith("event: ") and "\ndata: {" in e for e in events)
    assert events[0].startswith("event: message_start")
    assert events[-1].startswith("event: error")


def test_failure_before_the_first_content_is_an_http_error(gateway: Gateway) -> None:
    # A stream whose provider fails before any content: nothing was sent yet, so the caller
    # gets an ordinary error answer (and could be served by a fallback).
    gateway.fakes.add_fault(provider="openai", drop_after_chunks=0)
    response = gateway.post(
        "/v1/chat/completions",
        {"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "x"}]},
    )
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/json"


def test_client_disconnect_cancels_the_provider_request(gateway: Gateway) -> None:
    gateway.fakes.add_fault(provider="anthropic", chunk_delay_ms=100, reply_words=200)
    with httpx.stream(
        "POST",
        f"{gateway.url}/v1/chat/completions",
        json={
            "model": "claude-3-haiku",
            "stream": True,
            "messages": [{"role": "user", "content": "x"}],
        },
        headers={"Authorization": f"Bearer {KEY}"},
    ) as response:
        for line in response.iter_lines():
            if '"content"' in line:
                break
    (record,) = gateway.sink.wait_for(1)
    assert record.outcome == "cancelled"
    for _ in range(100):
        (call,) = gateway.fakes.calls("anthropic")
        if call.outcome != "pending":
            break
        time.sleep(0.05)
    assert call.outcome == "client_closed"
