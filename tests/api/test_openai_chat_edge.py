"""The OpenAI dialect end to end: the official SDK in front, a scripted OpenAI behind (the
in-process transport under the gateway's own breakers and retries)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal

import httpx
import openai
import orjson
import pytest

from oneflow_ai.app import create_app
from oneflow_ai.billing.pricing import PricingEngine
from oneflow_ai.billing.tokenizer import TokenCounter
from oneflow_ai.domain.usage import Usage
from oneflow_ai.settings import DEFAULT_MASTER_KEY, Settings
from tests.support.recording import RecordingSink
from tests.support.server import LiveServer, live_server
from tests.support.transport import Script, mock_transports, sse

COMPLETION = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "gpt-4o-2024-08-06",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hello there", "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 1500, "completion_tokens": 500, "total_tokens": 2000},
    "x_vendor_field": {"kept": True},
}


@dataclass
class Gateway:
    server: LiveServer
    upstream: Script
    sink: RecordingSink

    @property
    def client(self) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=f"{self.server.url}/v1", api_key=DEFAULT_MASTER_KEY, max_retries=0
        )

    def post(self, path: str, body: object, **headers: str) -> httpx.Response:
        return httpx.post(
            f"{self.server.url}{path}",
            json=body,
            headers={"Authorization": f"Bearer {DEFAULT_MASTER_KEY}", **headers},
        )


@pytest.fixture
def gateway(make_settings: Callable[..., Settings]) -> Iterator[Gateway]:
    upstream = Script()
    settings = make_settings(
        openai_api_key="sk-upstream",
        openai_base_url="http://openai.test/v1",
        fake_providers="off",
        upstream_max_retries=0,  # each scripted reply answers one call: no retries here
    )
    app = create_app(settings, configure_logs=False, transport=mock_transports(upstream))
    with live_server(app) as server:
        sink = RecordingSink()
        app.state.services.pipeline.hooks.insert(0, sink)
        yield Gateway(server, upstream, sink)


def test_chat_completion_through_the_sdk(gateway: Gateway) -> None:
    gateway.upstream.reply(COMPLETION)
    raw = gateway.client.chat.completions.with_raw_response.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "Hi"}],
        extra_body={"logit_bias": {"50256": -100}},
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == "Hello there"
    assert completion.usage is not None and completion.usage.total_tokens == 2000
    # The provider speaks the caller's dialect: its body comes back whole, vendor fields too.
    assert completion.model_extra == {"x_vendor_field": {"kept": True}}
    # ... and the caller's body went up whole, with the model the catalog names.
    sent = gateway.upstream.requests[0].json()
    assert sent == {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "Hi"}],
        "logit_bias": {"50256": -100},
    }
    assert gateway.upstream.requests[0].headers["authorization"] == "Bearer sk-upstream"
    expected = PricingEngine().price("gpt-4o", Usage(input_tokens=1500, output_tokens=500))
    assert raw.headers["x-oneflow-model"] == "gpt-4o"
    assert raw.headers["x-oneflow-provider"] == "openai"
    assert Decimal(raw.headers["x-oneflow-credits"]) == expected.credits == Decimal("0.875")
    (record,) = gateway.sink.wait_for(1)
    assert (record.model, record.provider, record.outcome, record.operation) == (
        "gpt-4o",
        "openai",
        "ok",
        "chat",
    )
    assert record.usage == Usage(input_tokens=1500, output_tokens=500)
    assert record.cost == expected and record.stream is False
    assert record.request_id == raw.headers["x-request-id"]


def test_alias_resolves_to_the_catalog_model(gateway: Gateway) -> None:
    gateway.upstream.reply(COMPLETION)
    response = gateway.post(
        "/v1/chat/completions",
        {"model": "gpt-4o-2024-08-06", "messages": [{"role": "user", "content": "Hi"}]},
    )
    assert response.status_code == 200
    assert response.headers["x-oneflow-model"] == "gpt-4o"
    assert gateway.upstream.requests[0].json()["model"] == "gpt-4o"


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        # Only OpenAI is configured here; of its text models gpt-3.5-turbo costs least ...
        ("cost_optimized", "gpt-3.5-turbo"),
        # ... and `auto` is the balanced strategy: cost, latency and quality weighed equally.
        ("auto", "gpt-4o"),
    ],
)
def test_routing_alias_picks_the_strategys_model(
    gateway: Gateway, model: str, expected: str
) -> None:
    gateway.upstream.reply(COMPLETION)
    response = gateway.post(
        "/v1/chat/completions", {"model": model, "messages": [{"role": "user", "content": "Hi"}]}
    )
    assert response.status_code == 200, response.text
    assert response.headers["x-oneflow-model"] == expected
    assert response.headers["x-oneflow-fallbacks"] == "0"
    assert gateway.upstream.requests[0].json()["model"] == expected


def test_strategy_header_is_validated(gateway: Gateway) -> None:
    response = gateway.post(
        "/v1/chat/completions",
        {"model": "auto", "messages": [{"role": "user", "content": "Hi"}]},
        **{"X-OneFlow-Strategy": "fastest"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "X-OneFlow-Strategy"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": "gpt-4o"}, "messages"),
        ({"model": "gpt-4o", "messages": []}, "messages"),
        ({"model": "gpt-4o", "messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        ({"model": "gpt-4o", "messages": [{"role": "user"}]}, "messages[0].content"),
        ({"model": "gpt-4o", "messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        (
            {
                "model": "gpt-4o",
                "messages": [{"role": "user", "content": "x"}],
                "temperature": "hot",
            },
            "temperature",
        ),
        (
            {"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0},
            "max_tokens",
        ),
        (
            {"model": "gpt-4o", "messages": [{"role": "tool", "content": "x"}]},
            "messages[0].tool_call_id",
        ),
        (
            {"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}], "tools": [{}]},
            "tools[0].type",
        ),
        ({"model": "gpt-9", "messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": "dall-e-3", "messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}], "n": 2}, "n"),
    ],
)
def test_malformed_body_is_a_400_naming_the_field(
    gateway: Gateway, body: dict[str, object], param: str
) -> None:
    response = gateway.post("/v1/chat/completions", body)
    assert response.status_code == (404 if body.get("model") == "gpt-9" else 400), response.text
    error = response.json()["error"]
    assert error["param"] == param
    assert param in error["message"] or body.get("model") in ("gpt-9", "dall-e-3")
    assert gateway.upstream.requests == []


def test_not_json_and_sdk_bad_request(gateway: Gateway) -> None:
    response = httpx.post(
        f"{gateway.server.url}/v1/chat/completions",
        content=b"{not json",
        headers={"Authorization": f"Bearer {DEFAULT_MASTER_KEY}"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    with pytest.raises(openai.BadRequestError) as caught:
        gateway.client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "x"}], temperature=7
        )
    assert caught.value.param == "temperature"


def test_missing_or_wrong_key_is_401(gateway: Gateway) -> None:
    response = httpx.post(f"{gateway.server.url}/v1/chat/completions", json={})
    assert response.status_code == 401
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(
            base_url=f"{gateway.server.url}/v1", api_key="sk-wrong", max_retries=0
        ).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])


def test_models_list_parses_in_the_sdk(gateway: Gateway) -> None:
    models = {model.id: model for model in gateway.client.models.list()}
    assert models["gpt-4o"].owned_by == "openai"
    assert "auto" in models and "cost_optimized" in models
    # Anthropic is not configured in this gateway, so its models are not offered.
    assert "claude-3-haiku-20240307" not in models


# ---- streaming -------------------------------------------------------------------------

_BASE = {"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-x"}


def _chunk(delta: dict[str, object], finish: str | None = None) -> dict[str, object]:
    return {**_BASE, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def _text_stream(*words: str, usage: bool = True) -> list[bytes]:
    events: list[object] = [_chunk({"role": "assistant", "content": ""})]
    events += [_chunk({"content": w}) for w in words]
    events.append(_chunk({}, "stop"))
    if usage:
        events.append(
            {**_BASE, "choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 4}}
        )
    events.append("[DONE]")
    return sse(*events)


def test_stream_with_include_usage_ends_with_a_usage_chunk(gateway: Gateway) -> None:
    gateway.upstream.reply_stream(_text_stream("Hel", "lo", " world"))
    stream = gateway.client.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "Hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello world"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (11, 4)
    expected = PricingEngine().price("gpt-4o", Usage(input_tokens=11, output_tokens=4))
    assert last.model_extra is not None
    assert Decimal(last.model_extra["oneflow"]["credits"]) == expected.credits
    assert gateway.upstream.requests[0].json()["stream_options"] == {"include_usage": True}
    (record,) = gateway.sink.wait_for(1)
    assert record.stream and record.outcome == "ok" and record.cost == expected
    assert record.first_content_ms is not None


def _sse_chunks(response: httpx.Response) -> list[dict[str, object]]:
    lines = [line for line in response.text.split("\n\n") if line]
    assert lines[-1] == "data: [DONE]"
    return [orjson.loads(line.removeprefix("data: ")) for line in lines[:-1]]


def test_stream_without_include_usage_carries_usage_in_the_last_chunk(gateway: Gateway) -> None:
    gateway.upstream.reply_stream(_text_stream("Hi"))
    response = gateway.post(
        "/v1/chat/completions",
        {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}], "stream": True},
    )
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-oneflow-model"] == "gpt-4o"
    assert response.headers["x-oneflow-provider"] == "openai"
    assert "x-oneflow-credits" not in response.headers  # known only at the end: in the stream
    chunks = _sse_chunks(response)
    assert all("usage" not in c for c in chunks)  # the caller did not ask for a usage chunk
    # The provider's chunks as it sent them (same dialect: passed through).
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}  # type: ignore[index]
    assert chunks[1]["choices"][0]["delta"] == {"content": "Hi"}  # type: ignore[index]
    final = chunks[-1]
    assert final["choices"][0]["finish_reason"] == "stop"  # type: ignore[index]
    assert final["oneflow"]["usage"] == {  # type: ignore[index]
        "input_tokens": 11,
        "output_tokens": 4,
        "cached_input_tokens": 0,
        "cache_write_5m_tokens": 0,
        "cache_write_1h_tokens": 0,
        "reasoning_tokens": 0,
        "estimated": False,
    }


def test_streamed_tool_call_through_the_sdk_helper(gateway: Gateway) -> None:
    call = {
        "index": 0,
        "id": "call_w",
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    gateway.upstream.reply_stream(
        sse(
            _chunk({"role": "assistant", "content": None, "tool_calls": [call]}),
            _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"loc'}}]}),
            _chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'ation": "Paris"}'}}]}),
            _chunk({}, "tool_calls"),
            {**_BASE, "choices": [], "usage": {"prompt_tokens": 30, "completion_tokens": 9}},
            "[DONE]",
        )
    )
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {"type": "object", "properties": {"location": {"type": "string"}}},
            },
        }
    ]
    with gateway.client.chat.completions.stream(
        model="gpt-4o",
        messages=[{"role": "user", "content": "Weather?"}],
        tools=tools,
        stream_options={"include_usage": True},
    ) as stream:
        final = stream.get_final_completion()
    (tool_call,) = final.choices[0].message.tool_calls or []
    assert tool_call.function.name == "get_weather"  # type: ignore[union-attr]
    assert tool_call.function.arguments == '{"location": "Paris"}'  # type: ignore[union-attr]
    assert final.choices[0].finish_reason == "tool_calls"
    assert final.usage is not None and final.usage.completion_tokens == 9


def test_upstream_failure_before_content_is_an_ordinary_error_answer(gateway: Gateway) -> None:
    gateway.upstream.reply(
        {
            "error": {
                "message": "Rate limit reached",
                "type": "requests",
                "code": "rate_limit_exceeded",
            }
        },
        status=429,
        headers={"retry-after": "3"},
    )
    with pytest.raises(openai.RateLimitError) as caught:
        gateway.client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "Hi"}], stream=True
        )
    assert caught.value.response.headers["retry-after"] == "3"
    assert caught.value.code == "rate_limit_exceeded"
    (record,) = gateway.sink.wait_for(1)
    assert record.outcome == "error" and record.error_kind == "rate_limited"


def test_stream_cut_off_upstream_ends_with_an_error_event_and_estimated_usage(
    gateway: Gateway,
) -> None:
    gateway.upstream.reply_stream(_text_stream("Hello", " wor", "ld"), cut_after=3)
    received = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in gateway.client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "Hi"}], stream=True
        ):
            received.append(chunk.choices[0].delta.content)
    assert received == ["", "Hello", " wor"]  # the provider's chunks, its role chunk first
    assert caught.value.type == "server_error"
    body = caught.value.body
    assert isinstance(body, dict) and body["code"] == "upstream_unavailable"
    (record,) = gateway.sink.wait_for(1)
    assert record.outcome == "cut_off" and record.usage.estimated and record.cost.estimated
    # Counted by OneFlow with GPT-4o's own encoding (o200k_base) and OpenAI's message framing.
    counter = TokenCounter()
    assert record.usage.output_tokens == counter.count_text("gpt-4o", "Hello wor").tokens
    messages = [{"role": "user", "content": "Hi"}]
    assert record.usage.input_tokens == counter.count_messages("gpt-4o", messages).tokens == 8


def test_client_disconnect_cancels_the_upstream_request(gateway: Gateway) -> None:
    events = _text_stream(*["word "] * 50)
    gateway.upstream.reply_stream(events, chunk_delay=0.1)
    with httpx.stream(
        "POST",
        f"{gateway.server.url}/v1/chat/completions",
        json={"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}], "stream": True},
        headers={"Authorization": f"Bearer {DEFAULT_MASTER_KEY}"},
    ) as response:
        for line in response.iter_lines():
            if "word" in line:
                break
    assert gateway.upstream.requests[0].disconnected.wait(5)
    (record,) = gateway.sink.wait_for(1)
    assert record.outcome == "cancelled" and record.usage.estimated
