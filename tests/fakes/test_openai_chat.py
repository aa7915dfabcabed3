"""The fake OpenAI Chat Completions endpoint, driven by the official `openai` SDK."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from oneflow_fakes import FakeProviders

USER = [{"role": "user", "content": "Tell me about otters please"}]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather at a place",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["location", "unit"],
        },
    },
}


def test_answer_echoes_the_prompt_with_usage(openai_client: openai.OpenAI) -> None:
    raw = openai_client.chat.completions.with_raw_response.create(model="gpt-4o", messages=USER)
    reply = raw.parse()
    assert raw.headers["x-request-id"].startswith("req_")
    assert reply.id.startswith("chatcmpl-")
    assert reply.object == "chat.completion"
    assert reply.model == "gpt-4o-2024-08-06"  # an alias answers with its snapshot
    choice = reply.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.role == "assistant"
    assert choice.message.content is not None
    assert choice.message.content.startswith("Echo: Tell me about otters please")
    assert len(choice.message.content.split()) == 16
    usage = reply.usage
    assert usage is not None
    assert usage.prompt_tokens > 5 and usage.completion_tokens >= 16
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_same_prompt_same_answer(openai_client: openai.OpenAI) -> None:
    first = openai_client.chat.completions.create(model="gpt-4", messages=USER)
    second = openai_client.chat.completions.create(model="gpt-4", messages=USER)
    assert first.choices[0].message.content == second.choices[0].message.content
    assert first.usage == second.usage
    assert first.id != second.id


def test_max_tokens_cuts_the_answer(openai_client: openai.OpenAI) -> None:
    reply = openai_client.chat.completions.create(
        model="gpt-3.5-turbo", messages=USER, max_tokens=4
    )
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage is not None and reply.usage.completion_tokens == 4
    full = openai_client.chat.completions.create(model="gpt-3.5-turbo", messages=USER)
    content = reply.choices[0].message.content
    assert content and full.choices[0].message.content
    assert full.choices[0].message.content.startswith(content)
    # max_completion_tokens wins over max_tokens
    newer = openai_client.chat.completions.create(
        model="gpt-3.5-turbo", messages=USER, max_tokens=100, max_completion_tokens=3
    )
    assert newer.usage is not None and newer.usage.completion_tokens == 3


def test_stop_sequence_ends_the_answer(openai_client: openai.OpenAI) -> None:
    reply = openai_client.chat.completions.create(model="gpt-4o", messages=USER, stop=["otters"])
    assert reply.choices[0].message.content == "Echo: Tell me about "
    assert reply.choices[0].finish_reason == "stop"


def test_reply_length_is_chosen_per_request(openai_client: openai.OpenAI) -> None:
    reply = openai_client.chat.completions.create(
        model="gpt-4o", messages=USER, extra_headers={"x-fake-reply-words": "40"}
    )
    assert len((reply.choices[0].message.content or "").split()) == 40


def test_several_choices(openai_client: openai.OpenAI) -> None:
    one = openai_client.chat.completions.create(model="gpt-4o", messages=USER)
    two = openai_client.chat.completions.create(model="gpt-4o", messages=USER, n=2)
    assert [c.index for c in two.choices] == [0, 1]
    assert two.usage is not None and one.usage is not None
    assert two.usage.completion_tokens == 2 * one.usage.completion_tokens


def test_stream_with_usage(openai_client: openai.OpenAI) -> None:
    whole = openai_client.chat.completions.create(model="gpt-4o-mini", messages=USER)
    chunks = list(
        openai_client.chat.completions.create(
            model="gpt-4o-mini",
            messages=USER,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert len({c.id for c in chunks}) == 1
    assert {c.model for c in chunks} == {"gpt-4o-mini-2024-07-18"}
    first, *content, finish, usage = chunks
    assert first.choices[0].delta.role == "assistant" and first.choices[0].delta.content == ""
    assert "".join(c.choices[0].delta.content or "" for c in content) == (
        whole.choices[0].message.content
    )
    assert len(content) == 16  # one word per chunk
    assert finish.choices[0].finish_reason == "stop" and finish.usage is None
    assert usage.choices == []
    assert usage.usage == whole.usage


def test_stream_helper_gathers_the_final_completion(openai_client: openai.OpenAI) -> None:
    with openai_client.chat.completions.stream(
        model="gpt-4o", messages=USER, stream_options={"include_usage": True}
    ) as stream:
        final = stream.get_final_completion()
    assert (final.choices[0].message.content or "").startswith("Echo: Tell me")
    assert final.usage is not None and final.usage.completion_tokens > 0


def test_stream_wire_format(http: httpx.Client, fake: FakeProviders) -> None:
    """The exact bytes: `data: <json>` events, no usage key unless asked, `[DONE]` last."""
    body = {"model": "gpt-4o", "messages": USER, "stream": True, "max_tokens": 3}
    with http.stream(
        "POST",
        f"{fake.base_urls['openai']}/chat/completions",
        json=body,
        headers={"Authorization": "Bearer sk-test"},
    ) as response:
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        text = response.read().decode()
    events = text.split("\n\n")
    assert events[-1] == "" and events[-2] == "data: [DONE]"
    payloads = [json.loads(e.removeprefix("data: ")) for e in events[:-2]]
    assert all(e.startswith("data: {") for e in events[:-2])
    assert all("usage" not in p for p in payloads)
    assert payloads[-1]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "length",
    }


def test_tool_call_when_asked(openai_client: openai.OpenAI) -> None:
    reply = openai_client.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "Please call get_weather for Paris"}],
        tools=[WEATHER_TOOL],
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    calls = choice.message.tool_calls or []
    assert len(calls) == 1 and calls[0].id.startswith("call_")
    function = calls[0].function  # type: ignore[union-attr]
    assert function.name == "get_weather"
    assert json.loads(function.arguments) == {"location": "example location", "unit": "celsius"}


def test_tool_call_with_explicit_arguments_streamed(openai_client: openai.OpenAI) -> None:
    messages = [
        {
            "role": "user",
            "content": 'call get_weather with {"location": "Paris", "unit": "celsius"}',
        }
    ]
    with openai_client.chat.completions.stream(
        model="gpt-4o", messages=messages, tools=[WEATHER_TOOL]
    ) as stream:
        final = stream.get_final_completion()
    call = (final.choices[0].message.tool_calls or [])[0]
    assert final.choices[0].finish_reason == "tool_calls"
    assert json.loads(call.function.arguments) == {"location": "Paris", "unit": "celsius"}  # type: ignore[union-attr]
    # The arguments arrived in several chunks.
    chunks = list(
        openai_client.chat.completions.create(
            model="gpt-4o", messages=messages, tools=[WEATHER_TOOL], stream=True
        )
    )
    first = chunks[0].choices[0].delta
    assert first.role == "assistant" and first.tool_calls
    assert first.tool_calls[0].function and first.tool_calls[0].function.arguments == ""
    argument_chunks = [c for c in chunks[1:] if c.choices and c.choices[0].delta.tool_calls]
    assert len(argument_chunks) > 3


def test_tool_choice_forces_or_forbids_a_call(openai_client: openai.OpenAI) -> None:
    forced = openai_client.chat.completions.create(
        model="gpt-4o",
        messages=USER,
        tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    assert forced.choices[0].finish_reason == "tool_calls"
    forbidden = openai_client.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "call get_weather"}],
        tools=[WEATHER_TOOL],
        tool_choice="none",
    )
    assert forbidden.choices[0].finish_reason == "stop"


def test_tool_result_gets_a_text_answer(openai_client: openai.OpenAI) -> None:
    messages = [
        {"role": "user", "content": "call get_weather"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": "{}"},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "15 degrees and sunny"},
    ]
    reply = openai_client.chat.completions.create(
        model="gpt-4o", messages=messages, tools=[WEATHER_TOOL]
    )
    assert reply.choices[0].finish_reason == "stop"
    assert (reply.choices[0].message.content or "").startswith("Echo: 15 degrees and sunny")


@pytest.mark.parametrize(
    ("kwargs", "error", "code"),
    [
        ({"model": "gpt-9"}, openai.NotFoundError, "model_not_found"),
        ({"model": "gpt-4o", "max_tokens": 100_000}, openai.BadRequestError, "invalid_value"),
        ({"model": "gpt-4o", "messages": []}, openai.BadRequestError, "empty_array"),
    ],
)
def test_invalid_requests(
    openai_client: openai.OpenAI, kwargs: dict[str, object], error: type[Exception], code: str
) -> None:
    arguments: dict[str, object] = {"messages": USER, **kwargs}
    with pytest.raises(error) as caught:
        openai_client.chat.completions.create(**arguments)  # type: ignore[call-overload]
    assert caught.value.code == code  # type: ignore[attr-defined]


def test_context_length_is_enforced(openai_client: openai.OpenAI) -> None:
    huge = [{"role": "user", "content": "word " * 9000}]
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.chat.completions.create(model="gpt-4", messages=huge)
    assert caught.value.code == "context_length_exceeded"
    assert "maximum context length is 8192 tokens" in caught.value.message


def test_invalid_json_and_missing_key(http: httpx.Client, fake: FakeProviders) -> None:
    url = f"{fake.base_urls['openai']}/chat/completions"
    bad = http.post(url, content=b"{nope", headers={"Authorization": "Bearer k"})
    assert bad.status_code == 400
    assert "could not parse the JSON body" in bad.json()["error"]["message"]
    anonymous = http.post(url, json={"model": "gpt-4o", "messages": USER})
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["message"].startswith("You didn't provide an API key")


def test_a_fixed_key_refuses_others() -> None:
    with FakeProviders(api_key="sk-right-key") as fake:
        wrong = openai.OpenAI(base_url=fake.base_urls["openai"], api_key="sk-wrong-key-1234")
        with pytest.raises(openai.AuthenticationError) as caught:
            wrong.chat.completions.create(model="gpt-4o", messages=USER)
        assert caught.value.code == "invalid_api_key"
        assert "1234" in caught.value.message and "wrong" not in caught.value.message
        right = openai.OpenAI(base_url=fake.base_urls["openai"], api_key="sk-right-key")
        assert right.chat.completions.create(model="gpt-4o", messages=USER).choices


def test_models_list(openai_client: openai.OpenAI) -> None:
    ids = {m.id for m in openai_client.models.list()}
    assert {"gpt-4o", "gpt-4", "gpt-4-turbo", "gpt-3.5-turbo", "dall-e-3"} <= ids
    assert openai_client.models.retrieve("gpt-4o").id == "gpt-4o"
    with pytest.raises(openai.NotFoundError):
        openai_client.models.retrieve("gpt-9")


def test_unknown_path_is_openais_404(http: httpx.Client, fake: FakeProviders) -> None:
    response = http.post(f"{fake.base_urls['openai']}/nothing", json={})
    assert response.status_code == 404
    assert response.json()["error"]["message"] == "Invalid URL (POST /v1/nothing)"


async def test_async_client(fake: FakeProviders) -> None:
    async with openai.AsyncOpenAI(base_url=fake.base_urls["openai"], api_key="sk-test") as client:
        stream = await client.chat.completions.create(model="gpt-4o", messages=USER, stream=True)
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text.startswith("Echo: Tell me about otters")


def test_a_request_limit_counts_down_and_then_refuses() -> None:
    with FakeProviders(openai_request_limit=2) as fake:
        client = openai.OpenAI(base_url=fake.base_urls["openai"], api_key="sk-t", max_retries=0)
        remaining = []
        for _ in range(2):
            raw = client.chat.completions.with_raw_response.create(
                model="gpt-4o", messages=[{"role": "user", "content": "Hi"}]
            )
            remaining.append(raw.headers["x-ratelimit-remaining-requests"])
        assert remaining == ["1", "0"]
        with pytest.raises(openai.RateLimitError):
            client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "Hi"}]
            )
        fake.reset()
        assert client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "Hi"}]
        ).choices


def test_azure_deployment_urls_with_the_api_key_header() -> None:
    with FakeProviders(openai_auth="api-key", api_key="az-key", any_model=True) as fake:
        url = f"{fake.url}/openai/deployments/my-gpt4o/chat/completions?api-version=2024-10-21"
        body = {"messages": [{"role": "user", "content": "Hi"}]}
        assert httpx.post(url, json=body, headers={"api-key": "wrong"}).status_code == 401
        assert (
            httpx.post(url, json=body, headers={"Authorization": "Bearer az-key"}).status_code
            == 401
        )
        answered = httpx.post(url, json=body, headers={"api-key": "az-key"})
        assert answered.status_code == 200, answered.text
        (call,) = [c for c in fake.calls("openai") if c.outcome == "ok"]
        assert call.model == "my-gpt4o"
