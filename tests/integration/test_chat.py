"""Chat through both dialects, for a GPT and a Claude model, plain and streamed.

Each SDK talks to the gateway as it would to its own provider; the gateway translates when the
model's provider speaks the other dialect. Usage reaches the usage interface every time.
"""

from __future__ import annotations

from decimal import Decimal

import anthropic
import httpx
import pytest

from oneflow_ai.billing.pricing import PricingEngine
from oneflow_ai.domain.usage import Usage
from tests.integration.conftest import KEY, Gateway

MODELS = [("gpt-4o", "openai"), ("claude-3-haiku-20240307", "anthropic")]
PROMPT = "Tell me about the gateway"


def _credits(model: str, usage: Usage) -> Decimal:
    return PricingEngine().price(model, usage).credits


@pytest.mark.parametrize(("model", "provider"), MODELS)
def test_openai_dialect_plain(gateway: Gateway, model: str, provider: str) -> None:
    raw = gateway.openai().chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": PROMPT}], max_tokens=100
    )
    completion = raw.parse()
    assert completion.choices[0].message.content
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.completion_tokens > 0
    usage = Usage(
        input_tokens=completion.usage.prompt_tokens,
        output_tokens=completion.usage.completion_tokens,
    )
    assert raw.headers["x-oneflow-model"] == model
    assert raw.headers["x-oneflow-provider"] == provider
    assert Decimal(raw.headers["x-oneflow-credits"]) == _credits(model, usage)
    (call,) = gateway.fakes.calls(provider)
    assert call.outcome == "ok"
    (record,) = gateway.sink.wait_for(1)
    assert (record.model, record.provider, record.usage) == (model, provider, usage)
    assert record.usage.estimated is False


@pytest.mark.parametrize(("model", "provider"), MODELS)
@pytest.mark.parametrize("include_usage", [True, False])
def test_openai_dialect_streamed(
    gateway: Gateway, model: str, provider: str, include_usage: bool
) -> None:
    stream = gateway.openai().chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": PROMPT}],
        max_tokens=100,
        stream=True,
        stream_options={"include_usage": include_usage},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(text.split()) > 3
    (record,) = gateway.sink.wait_for(1)
    assert record.stream and record.outcome == "ok" and record.provider == provider
    assert not record.usage.estimated  # the provider's own counts, Claude's included
    last = chunks[-1]
    extra = last.model_extra or {}
    if include_usage:
        assert last.choices == [] and last.usage is not None
        assert last.usage.prompt_tokens == record.usage.input_tokens
        assert last.usage.completion_tokens == record.usage.output_tokens
    else:
        assert last.usage is None and last.choices[0].finish_reason == "stop"
        assert extra["oneflow"]["usage"]["output_tokens"] == record.usage.output_tokens
    assert Decimal(extra["oneflow"]["credits"]) == record.cost.credits


@pytest.mark.parametrize(("model", "provider"), MODELS)
def test_anthropic_dialect_plain(gateway: Gateway, model: str, provider: str) -> None:
    raw = gateway.anthropic().messages.with_raw_response.create(
        model=model,
        max_tokens=100,
        system="You are terse.",
        messages=[{"role": "user", "content": PROMPT}],
    )
    message = raw.parse()
    assert message.content[0].type == "text" and message.content[0].text
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens > 0
    assert raw.headers["x-oneflow-model"] == model
    assert raw.headers["x-oneflow-provider"] == provider
    (record,) = gateway.sink.wait_for(1)
    assert record.usage.output_tokens == message.usage.output_tokens
    assert Decimal(raw.headers["x-oneflow-credits"]) == record.cost.credits
    sent = gateway.fakes.calls(provider)[0].body
    assert isinstance(sent, dict)
    if provider == "openai":  # translated: the system prompt became a system message
        assert sent["messages"][0] == {"role": "system", "content": "You are terse."}
    else:  # forwarded as written
        assert sent["system"] == "You are terse."


@pytest.mark.parametrize(("model", "provider"), MODELS)
def test_anthropic_dialect_streamed(gateway: Gateway, model: str, provider: str) -> None:
    with gateway.anthropic().messages.stream(
        model=model, max_tokens=100, messages=[{"role": "user", "content": PROMPT}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert len(text.split()) > 3 and final.content[0].text == text  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn"
    (record,) = gateway.sink.wait_for(1)
    assert not record.usage.estimated
    assert final.usage.output_tokens == record.usage.output_tokens
    assert final.usage.input_tokens == record.usage.input_tokens


def test_anthropic_stream_event_sequence_and_usage_extension(gateway: Gateway) -> None:
    with gateway.anthropic().messages.create(
        model="gpt-4o",
        max_tokens=50,
        messages=[{"role": "user", "content": PROMPT}],
        stream=True,
    ) as stream:
        events = list(stream)
    kinds = [e.type for e in events]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
    assert kinds[1] == "content_block_start" and "content_block_stop" in kinds
    delta = events[-2]
    (record,) = gateway.sink.wait_for(1)
    assert delta.usage.output_tokens == record.usage.output_tokens  # type: ignore[union-attr]
    assert Decimal(delta.model_extra["oneflow"]["credits"]) == record.cost.credits  # type: ignore[index]


WEATHER_TOOL_OPENAI = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"location": {"type": "string"}},
            "required": ["location"],
        },
    },
}
WEATHER_TOOL_ANTHROPIC = {
    "name": "get_weather",
    "description": "Weather in a city",
    "input_schema": WEATHER_TOOL_OPENAI["function"]["parameters"],  # type: ignore[index]
}
ASK = 'call get_weather with {"location": "Paris"}'


@pytest.mark.parametrize("model", ["gpt-4o", "claude-3-haiku-20240307"])
def test_tool_round_trip_in_the_openai_dialect(gateway: Gateway, model: str) -> None:
    client = gateway.openai()
    first = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": ASK}], tools=[WEATHER_TOOL_OPENAI]
    )
    (call,) = first.choices[0].message.tool_calls or []
    assert first.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    assert call.function.arguments.replace(" ", "") == '{"location":"Paris"}'  # type: ignore[union-attr]
    second = client.chat.completions.create(
        model=model,
        tools=[WEATHER_TOOL_OPENAI],
        messages=[
            {"role": "user", "content": ASK},
            first.choices[0].message.model_dump(exclude_none=True),  # type: ignore[misc]
            {"role": "tool", "tool_call_id": call.id, "content": "18 degrees"},
        ],
    )
    assert second.choices[0].finish_reason == "stop" and second.choices[0].message.content


@pytest.mark.parametrize("model", ["gpt-4o", "claude-3-haiku-20240307"])
def test_streamed_tool_call_in_the_anthropic_dialect(gateway: Gateway, model: str) -> None:
    with gateway.anthropic().messages.stream(
        model=model,
        max_tokens=200,
        tools=[WEATHER_TOOL_ANTHROPIC],  # type: ignore[list-item]
        messages=[{"role": "user", "content": ASK}],
    ) as stream:
        final = stream.get_final_message()
    tool_uses = [block for block in final.content if block.type == "tool_use"]
    assert [(b.name, b.input) for b in tool_uses] == [("get_weather", {"location": "Paris"})]  # type: ignore[union-attr]
    assert final.stop_reason == "tool_use"
    reply = gateway.anthropic().messages.create(
        model=model,
        max_tokens=100,
        tools=[WEATHER_TOOL_ANTHROPIC],  # type: ignore[list-item]
        messages=[
            {"role": "user", "content": ASK},
            {"role": "assistant", "content": final.content},  # type: ignore[typeddict-item]
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": tool_uses[0].id, "content": "18 C"}  # type: ignore[union-attr]
                ],
            },
        ],
    )
    assert reply.stop_reason == "end_turn"


def test_anthropic_edge_accepts_x_api_key_and_any_version(gateway: Gateway) -> None:
    response = gateway.post(
        "/v1/messages",
        {
            "model": "claude-3-haiku",
            "max_tokens": 20,
            "messages": [{"role": "user", "content": "hi"}],
        },
    )
    assert response.status_code == 200
    response = httpx.post(
        f"{gateway.url}/v1/messages",
        json={
            "model": "claude-3-haiku",
            "max_tokens": 20,
            "messages": [{"role": "user", "content": "hi"}],
        },
        headers={"x-api-key": KEY, "anthropic-version": "2099-01-01"},
    )
    assert response.status_code == 200 and response.json()["type"] == "message"
    with pytest.raises(anthropic.AuthenticationError) as caught:
        anthropic.Anthropic(base_url=gateway.url, api_key="wrong", max_retries=0).messages.create(
            model="claude-3-haiku", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    assert caught.value.body["type"] == "error"  # type: ignore[index]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": "claude-3-haiku", "messages": [{"role": "user", "content": "x"}]}, "max_tokens"),
        ({"model": "claude-3-haiku", "max_tokens": 5, "messages": []}, "messages"),
        (
            {
                "model": "claude-3-haiku",
                "max_tokens": 5,
                "messages": [{"role": "system", "content": "x"}],
            },
            "messages[0].role",
        ),
        (
            {
                "model": "claude-3-haiku",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": [{"type": "video"}]}],
            },
            "messages[0].content[0].type",
        ),
        (
            {
                "model": "claude-3-haiku",
                "max_tokens": 5,
                "temperature": 1.5,
                "messages": [{"role": "user", "content": "x"}],
            },
            "temperature",
        ),
    ],
)
def test_malformed_messages_body_is_an_anthropic_400_naming_the_field(
    gateway: Gateway, body: dict[str, object], param: str
) -> None:
    response = gateway.post("/v1/messages", body)
    assert response.status_code == 400
    error = response.json()
    assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
    assert f"'{param}'" in error["error"]["message"]
    assert gateway.fakes.call_count() == 0


def test_the_anthropic_sdk_sees_a_bad_request_error(gateway: Gateway) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        gateway.anthropic().messages.create(
            model="claude-3-haiku",
            max_tokens=5,
            messages=[{"role": "user", "content": "x"}],
            extra_body={"temperature": 1.5},
        )
    assert "'temperature'" in caught.value.message
