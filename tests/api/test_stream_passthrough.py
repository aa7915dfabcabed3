"""Same-dialect streams pass through: the provider's events reach the caller as they were sent
(fields OneFlow's canonical model does not know included), completed at the end with usage and
credits. A scripted OpenAI and Anthropic behind the gateway (the in-process transport)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal

import anthropic
import httpx
import openai
import orjson
import pytest

from oneflow_ai.app import create_app
from oneflow_ai.billing.pricing import PricingEngine
from oneflow_ai.domain.usage import Usage
from oneflow_ai.settings import DEFAULT_MASTER_KEY, Settings
from tests.support.server import LiveServer, live_server
from tests.support.transport import Script, mock_transports, sse

HEADERS = {"Authorization": f"Bearer {DEFAULT_MASTER_KEY}"}


@dataclass
class Gateway:
    server: LiveServer
    upstream: Script

    def stream(self, path: str, body: dict[str, object]) -> bytes:
        response = httpx.post(f"{self.server.url}{path}", json=body, headers=HEADERS)
        assert response.status_code == 200, response.text
        return response.content


@pytest.fixture
def gateway(make_settings: Callable[..., Settings]) -> Iterator[Gateway]:
    upstream = Script()
    settings = make_settings(
        openai_api_key="sk-upstream",
        openai_base_url="http://openai.test/v1",
        anthropic_api_key="sk-ant-upstream",
        anthropic_base_url="http://anthropic.test",
        fake_providers="off",
        upstream_max_retries=0,
    )
    app = create_app(settings, configure_logs=False, transport=mock_transports(upstream))
    with live_server(app) as server:
        yield Gateway(server, upstream)


# ---- OpenAI ------------------------------------------------------------------------------

_ENVELOPE = {
    "id": "chatcmpl-up",
    "object": "chat.completion.chunk",
    "created": 7,
    "model": "gpt-4o-2024-08-06",
    "service_tier": "default",
    "system_fingerprint": "fp_up",
}


def _logprobs(token: str) -> dict[str, object]:
    return {"content": [{"token": token, "logprob": -0.25, "bytes": None, "top_logprobs": []}]}


def _chunk(delta: dict[str, object], finish: str | None = None, **extra: object) -> bytes:
    choice = {"index": 0, "delta": delta, "logprobs": _logprobs("x"), "finish_reason": finish}
    return orjson.dumps({**_ENVELOPE, "choices": [choice], "usage": None, **extra})


_USAGE = {
    "prompt_tokens": 12,
    "completion_tokens": 3,
    "total_tokens": 15,
    "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
}
OPENAI_CHUNKS = [
    _chunk({"role": "assistant", "content": "", "refusal": None}, obfuscation="ab"),
    _chunk({"content": "Hel"}),
    _chunk({"content": "lo"}),
    _chunk({}, "stop"),
    orjson.dumps({**_ENVELOPE, "choices": [], "usage": _USAGE}),
]


def _data_lines(body: bytes) -> list[bytes]:
    events = [event for event in body.split(b"\n\n") if event]
    assert events[-1] == b"data: [DONE]"
    return [event.removeprefix(b"data: ") for event in events[:-1]]


def _openai_body(**extra: object) -> dict[str, object]:
    return {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "Hi"}],
        "stream": True,
        "logprobs": True,
        **extra,
    }


def test_openai_stream_with_usage_is_the_providers_bytes(gateway: Gateway) -> None:
    gateway.upstream.reply_stream(sse(*OPENAI_CHUNKS, "[DONE]"))
    body = gateway.stream(
        "/v1/chat/completions", _openai_body(stream_options={"include_usage": True})
    )
    *forwarded, last = _data_lines(body)
    assert forwarded == OPENAI_CHUNKS[:-1]  # byte for byte
    final = orjson.loads(last)
    credits = Decimal(final.pop("oneflow")["credits"])
    assert final == orjson.loads(OPENAI_CHUNKS[-1])  # the provider's usage chunk, plus credits
    expected = PricingEngine().price("gpt-4o", Usage(input_tokens=12, output_tokens=3))
    assert credits == expected.credits
    sent = gateway.upstream.requests[0].json()
    assert sent["logprobs"] is True and sent["stream_options"] == {"include_usage": True}


def test_openai_stream_without_usage_keeps_unknown_fields(gateway: Gateway) -> None:
    gateway.upstream.reply_stream(sse(*OPENAI_CHUNKS, "[DONE]"))
    chunks = [
        orjson.loads(line)
        for line in _data_lines(gateway.stream("/v1/chat/completions", _openai_body()))
    ]
    assert all("usage" not in chunk for chunk in chunks)  # the caller did not ask for it
    assert [c["choices"][0]["delta"].get("content") for c in chunks] == ["", "Hel", "lo", None]
    assert all(c["choices"][0]["logprobs"] == _logprobs("x") for c in chunks)
    assert all(c["system_fingerprint"] == "fp_up" for c in chunks)
    assert chunks[0]["obfuscation"] == "ab"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["oneflow"]["usage"]["output_tokens"] == 3


def test_openai_sdk_reads_the_passed_through_stream(gateway: Gateway) -> None:
    gateway.upstream.reply_stream(sse(*OPENAI_CHUNKS, "[DONE]"))
    client = openai.OpenAI(
        base_url=f"{gateway.server.url}/v1", api_key=DEFAULT_MASTER_KEY, max_retries=0
    )
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o",
            messages=[{"role": "user", "content": "Hi"}],
            stream=True,
            logprobs=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello"
    first = chunks[0]
    assert first.id == "chatcmpl-up" and first.system_fingerprint == "fp_up"
    assert first.service_tier == "default"
    assert first.choices[0].logprobs is not None
    assert first.choices[0].logprobs.content is not None
    assert first.choices[0].logprobs.content[0].logprob == -0.25
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3


# ---- Anthropic ---------------------------------------------------------------------------


def _event(name: str, data: dict[str, object]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


_MESSAGE = {
    "id": "msg_up",
    "type": "message",
    "role": "assistant",
    "model": "claude-3-haiku-20240307",
    "content": [],
    "stop_reason": None,
    "stop_sequence": None,
    "usage": {"input_tokens": 20, "output_tokens": 1, "service_tier": "standard"},
    "container": None,
}
_CITATION = {
    "type": "char_location",
    "cited_text": "Sea",
    "document_index": 0,
    "document_title": None,
    "start_char_index": 0,
    "end_char_index": 3,
}
ANTHROPIC_EVENTS = [
    _event("message_start", {"type": "message_start", "message": _MESSAGE}),
    _event(
        "content_block_start",
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "text", "text": "", "citations": []},
        },
    ),
    _event("ping", {"type": "ping"}),
    _event(
        "content_block_delta",
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Sea"}},
    ),
    _event(
        "content_block_delta",
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "citations_delta", "citation": _CITATION},
        },
    ),
    _event("content_block_stop", {"type": "content_block_stop", "index": 0}),
]
_DELTA = {
    "type": "message_delta",
    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
    "usage": {"output_tokens": 5},
}


def _anthropic_stream() -> list[bytes]:
    end = [_event("message_delta", _DELTA), _event("message_stop", {"type": "message_stop"})]
    return [*ANTHROPIC_EVENTS, *end]


def _anthropic_body() -> dict[str, object]:
    return {
        "model": "claude-3-haiku-20240307",
        "max_tokens": 50,
        "messages": [{"role": "user", "content": "Hi"}],
        "stream": True,
    }


def test_anthropic_stream_is_the_providers_bytes(gateway: Gateway) -> None:
    gateway.upstream.reply_stream(_anthropic_stream())
    body = gateway.stream("/v1/messages", _anthropic_body())
    size = sum(len(event) for event in ANTHROPIC_EVENTS)
    assert body[:size] == b"".join(ANTHROPIC_EVENTS)  # citations, service tier: byte for byte
    delta, stop = [event for event in body[size:].split(b"\n\n") if event]
    assert delta.startswith(b"event: message_delta\ndata: ")
    final = orjson.loads(delta.split(b"data: ", 1)[1])
    credits = Decimal(final.pop("oneflow")["credits"])
    assert final == _DELTA
    expected = PricingEngine().price(
        "claude-3-haiku-20240307", Usage(input_tokens=20, output_tokens=5)
    )
    assert credits == expected.credits
    assert stop == b'event: message_stop\ndata: {"type":"message_stop"}'


def test_anthropic_sdk_reads_the_passed_through_stream(gateway: Gateway) -> None:
    gateway.upstream.reply_stream(_anthropic_stream())
    client = anthropic.Anthropic(
        base_url=gateway.server.url, api_key=DEFAULT_MASTER_KEY, max_retries=0
    )
    with client.messages.stream(
        model="claude-3-haiku-20240307",
        max_tokens=50,
        messages=[{"role": "user", "content": "Hi"}],
    ) as stream:
        message = stream.get_final_message()
    assert message.id == "msg_up"
    (block,) = message.content
    assert block.type == "text" and block.text == "Sea"
    assert block.citations is not None and block.citations[0].cited_text == "Sea"
    assert message.usage.output_tokens == 5 and message.stop_reason == "end_turn"
