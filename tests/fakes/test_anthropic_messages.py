"""The fake Anthropic Messages endpoint, driven by the official `anthropic` SDK."""

from __future__ import annotations

import json

import anthropic
import httpx
import pytest

from oneflow_fakes import FakeProviders

OPUS = "claude-3-opus-20240229"
HAIKU = "claude-3-haiku-20240307"
USER = [{"role": "user", "content": "Tell me about otters please"}]
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Weather at a place",
    "input_schema": {
        "type": "object",
        "properties": {"location": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["location"],
    },
}


def test_answer_echoes_the_prompt_with_usage(anthropic_client: anthropic.Anthropic) -> None:
    raw = anthropic_client.messages.with_raw_response.create(
        model=OPUS, max_tokens=200, messages=USER, system="be brief"
    )
    message = raw.parse()
    assert raw.headers["request-id"].startswith("req_")
    assert message.id.startswith("msg_01")
    assert message.model == OPUS
    assert message.stop_reason == "end_turn" and message.stop_sequence is None
    assert len(message.content) == 1
    block = message.content[0]
    assert block.type == "text"
    assert block.text.startswith("Echo: Tell me about otters please")
    assert len(block.text.split()) == 16
    assert message.usage.input_tokens > 5
    assert message.usage.output_tokens >= 16
    assert message.usage.cache_read_input_tokens == 0


def test_max_tokens_and_stop_sequences(anthropic_client: anthropic.Anthropic) -> None:
    cut = anthropic_client.messages.create(model=HAIKU, max_tokens=3, messages=USER)
    assert cut.stop_reason == "max_tokens"
    assert cut.usage.output_tokens == 3
    stopped = anthropic_client.messages.create(
        model=HAIKU, max_tokens=100, messages=USER, stop_sequences=["otters"]
    )
    assert stopped.stop_reason == "stop_sequence"
    assert stopped.stop_sequence == "otters"
    assert stopped.content[0].type == "text"
    assert stopped.content[0].text == "Echo: Tell me about "


def test_stream_event_sequence(http: httpx.Client, fake: FakeProviders) -> None:
    """The exact events, each with its `event:` line, in the documented order."""
    with http.stream(
        "POST",
        f"{fake.base_urls['anthropic']}/v1/messages",
        json={"model": OPUS, "max_tokens": 100, "messages": USER, "stream": True},
        headers={"x-api-key": "sk-ant-test", "anthropic-version": "2023-06-01"},
    ) as response:
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert response.headers["request-id"].startswith("req_")
        text = response.read().decode()
    events = [e for e in text.split("\n\n") if e]
    names, payloads = [], []
    for event in events:
        name_line, data_line = event.split("\n")
        assert name_line.startswith("event: ") and data_line.startswith("data: ")
        names.append(name_line.removeprefix("event: "))
        payloads.append(json.loads(data_line.removeprefix("data: ")))
    assert [p["type"] for p in payloads] == names
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert set(names[3:-3]) == {"content_block_delta"}
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    start = payloads[0]["message"]
    assert start["usage"]["input_tokens"] > 0 and start["usage"]["output_tokens"] == 1
    assert start["content"] == [] and start["stop_reason"] is None
    delta = payloads[-2]
    assert delta["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    text_out = "".join(p["delta"]["text"] for p in payloads[3:-3])
    assert text_out.startswith("Echo: Tell me about otters please")
    assert delta["usage"]["output_tokens"] >= 16


def test_stream_helper_final_message(anthropic_client: anthropic.Anthropic) -> None:
    whole = anthropic_client.messages.create(model=HAIKU, max_tokens=100, messages=USER)
    with anthropic_client.messages.stream(model=HAIKU, max_tokens=100, messages=USER) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert whole.content[0].type == "text"
    assert text == whole.content[0].text
    assert final.usage.input_tokens == whole.usage.input_tokens
    assert final.usage.output_tokens == whole.usage.output_tokens
    assert final.stop_reason == "end_turn"


def test_tool_use(anthropic_client: anthropic.Anthropic) -> None:
    message = anthropic_client.messages.create(
        model=OPUS,
        max_tokens=300,
        messages=[{"role": "user", "content": "Please call get_weather for Paris"}],
        tools=[WEATHER_TOOL],
    )
    assert message.stop_reason == "tool_use"
    text, use = message.content
    assert text.type == "text" and "get_weather" in text.text
    assert use.type == "tool_use" and use.id.startswith("toolu_01")
    assert use.name == "get_weather"
    assert use.input == {"location": "example location"}


def test_tool_use_streamed(anthropic_client: anthropic.Anthropic) -> None:
    with anthropic_client.messages.stream(
        model=OPUS,
        max_tokens=300,
        messages=[
            {"role": "user", "content": 'call get_weather with {"location": "Paris", "days": 3}'}
        ],
        tools=[WEATHER_TOOL],
    ) as stream:
        events = [event.type for event in stream]
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    use = final.content[-1]
    assert use.type == "tool_use"
    assert use.input == {"location": "Paris", "days": 3}
    assert events.count("input_json") > 3  # the arguments arrived in pieces


def test_tool_choice(anthropic_client: anthropic.Anthropic) -> None:
    forced = anthropic_client.messages.create(
        model=OPUS,
        max_tokens=300,
        messages=USER,
        tools=[WEATHER_TOOL],
        tool_choice={"type": "tool", "name": "get_weather"},
    )
    assert forced.stop_reason == "tool_use"
    none = anthropic_client.messages.create(
        model=OPUS,
        max_tokens=300,
        messages=[{"role": "user", "content": "call get_weather"}],
        tools=[WEATHER_TOOL],
        tool_choice={"type": "none"},
    )
    assert none.stop_reason == "end_turn"


def test_tool_result_gets_a_text_answer(anthropic_client: anthropic.Anthropic) -> None:
    message = anthropic_client.messages.create(
        model=OPUS,
        max_tokens=300,
        tools=[WEATHER_TOOL],
        messages=[
            {"role": "user", "content": "call get_weather"},
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "15 degrees"}
                ],
            },
        ],
    )
    assert message.stop_reason == "end_turn"
    assert message.content[0].type == "text"
    assert message.content[0].text.startswith("Echo: 15 degrees")


def test_x_api_key_and_version_headers(http: httpx.Client, fake: FakeProviders) -> None:
    url = f"{fake.base_urls['anthropic']}/v1/messages"
    body = {"model": OPUS, "max_tokens": 10, "messages": USER}
    ok = http.post(url, json=body, headers={"x-api-key": "k", "anthropic-version": "2023-06-01"})
    assert ok.status_code == 200 and ok.json()["type"] == "message"
    no_version = http.post(url, json=body, headers={"x-api-key": "k"})
    assert no_version.status_code == 400
    assert no_version.json()["error"] == {
        "type": "invalid_request_error",
        "message": "anthropic-version: header is required",
    }
    no_key = http.post(url, json=body, headers={"anthropic-version": "2023-06-01"})
    assert no_key.status_code == 401
    assert no_key.json()["error"]["type"] == "authentication_error"
    assert no_key.json()["request_id"] == no_key.headers["request-id"]


def test_a_fixed_key_refuses_others() -> None:
    with FakeProviders(api_key="sk-ant-right") as fake:
        client = anthropic.Anthropic(base_url=fake.base_urls["anthropic"], api_key="sk-ant-wrong")
        with pytest.raises(anthropic.AuthenticationError) as caught:
            client.messages.create(model=OPUS, max_tokens=10, messages=USER)
        assert caught.value.type == "authentication_error"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"model": "claude-9"}, anthropic.NotFoundError, "model: claude-9"),
        (
            {"max_tokens": 5000},
            anthropic.BadRequestError,
            f"max_tokens: 5000 > 4096, which is the maximum allowed number of output tokens "
            f"for {OPUS}",
        ),
    ],
)
def test_invalid_requests(
    anthropic_client: anthropic.Anthropic,
    kwargs: dict[str, object],
    error: type[anthropic.APIStatusError],
    message: str,
) -> None:
    arguments: dict[str, object] = {"model": OPUS, "max_tokens": 10, "messages": USER, **kwargs}
    with pytest.raises(error) as caught:
        anthropic_client.messages.create(**arguments)  # type: ignore[call-overload]
    assert caught.value.body["error"]["message"] == message  # type: ignore[index]
    assert caught.value.request_id and caught.value.request_id.startswith("req_")


def test_missing_max_tokens(http: httpx.Client, fake: FakeProviders) -> None:
    response = http.post(
        f"{fake.base_urls['anthropic']}/v1/messages",
        json={"model": OPUS, "messages": USER},
        headers={"x-api-key": "k", "anthropic-version": "2023-06-01"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "max_tokens: Field required"


async def test_async_client(fake: FakeProviders) -> None:
    client = anthropic.AsyncAnthropic(base_url=fake.base_urls["anthropic"], api_key="k")
    async with (
        client,
        client.messages.stream(model=HAIKU, max_tokens=50, messages=USER) as stream,
    ):
        text = "".join([t async for t in stream.text_stream])
    assert text.startswith("Echo: Tell me about otters")
