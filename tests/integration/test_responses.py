"""The Responses API (`/v1/responses`) through the gateway with the official `openai` SDK, for
a GPT model (OpenAI's own `/responses`) and a Claude model (bridged through the canonical
types), plain and streamed; function tools, `previous_response_id`, the stored responses, and
what a bridged model cannot honour."""

from __future__ import annotations

import asyncio
import base64
import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
import openai
import orjson
import pytest
from sqlalchemy import text, update

from oneflow_ai.billing.pricing import PricingEngine
from oneflow_ai.domain.usage import Usage
from oneflow_ai.storage.database import create_engine
from oneflow_ai.storage.tables import ResponsesApiRecord, utcnow
from tests.integration.conftest import KEY, Gateway

MODELS = [("gpt-4o", "openai"), ("claude-3-haiku-20240307", "anthropic")]
PROMPT = "Tell me about the gateway"
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


def _upstream(gateway: Gateway, provider: str) -> dict[str, Any]:
    """The body the provider received (the only call since the test began)."""
    (call,) = gateway.fakes.calls(provider)
    body: dict[str, Any] = call.body  # type: ignore[assignment]
    return body


def _credits(model: str, usage: Usage) -> Decimal:
    return PricingEngine().price(model, usage).credits


@pytest.mark.parametrize(("model", "provider"), MODELS)
def test_plain(gateway: Gateway, model: str, provider: str) -> None:
    raw = gateway.openai().responses.with_raw_response.create(
        model=model, input=PROMPT, instructions="Be brief", max_output_tokens=100
    )
    response = raw.parse()
    assert response.status == "completed" and response.object == "response"
    assert response.id.startswith("resp_")
    assert response.output_text.startswith("Echo: Tell me about the gateway")
    assert response.output[0].type == "message"
    assert response.usage is not None and response.usage.output_tokens > 0
    usage = Usage(
        input_tokens=response.usage.input_tokens, output_tokens=response.usage.output_tokens
    )
    assert raw.headers["x-oneflow-model"] == model
    assert raw.headers["x-oneflow-provider"] == provider
    assert Decimal(raw.headers["x-oneflow-credits"]) == _credits(model, usage)
    (record,) = gateway.sink.wait_for(1)
    assert (record.model, record.provider, record.usage) == (model, provider, usage)
    sent = _upstream(gateway, provider)
    if provider == "openai":  # OpenAI's own Responses API, told not to store (OneFlow does)
        (call,) = gateway.fakes.calls("openai")
        assert call.path == "/openai/v1/responses"
        assert sent["store"] is False and sent["instructions"] == "Be brief"
        assert sent["input"] == [{"type": "message", "role": "user", "content": PROMPT}]
    else:
        assert sent["system"] == "Be brief" and sent["max_tokens"] == 100
        assert sent["messages"] == [{"role": "user", "content": [{"type": "text", "text": PROMPT}]}]


@pytest.mark.parametrize(("model", "provider"), MODELS)
def test_streamed(gateway: Gateway, model: str, provider: str) -> None:
    client = gateway.openai()
    with client.responses.stream(model=model, input=PROMPT, max_output_tokens=100) as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [event.type for event in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [event.sequence_number for event in events] == list(range(len(events)))
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert len(deltas) > 3 and "".join(deltas) == final.output_text
    assert final.output_text.startswith("Echo: Tell me about the gateway")
    (record,) = gateway.sink.wait_for(1)
    assert record.stream and record.outcome == "ok" and record.provider == provider
    assert not record.usage.estimated
    assert final.usage is not None
    assert final.usage.input_tokens == record.usage.input_tokens
    assert final.usage.output_tokens == record.usage.output_tokens
    # A streamed response is stored like a plain one.
    assert client.responses.retrieve(final.id).output_text == final.output_text


@pytest.mark.parametrize(("model", "provider"), MODELS)
def test_a_stream_ends_with_usage_and_credits(gateway: Gateway, model: str, provider: str) -> None:
    body = {"model": model, "input": PROMPT, "stream": True}
    with httpx.stream(
        "POST",
        f"{gateway.url}/v1/responses",
        json=body,
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=30,
    ) as answer:
        lines = [line for line in answer.iter_lines() if line]
    names = [line.removeprefix("event: ") for line in lines if line.startswith("event: ")]
    datas = [orjson.loads(line.removeprefix("data: ")) for line in lines if line.startswith("data")]
    assert names == [data["type"] for data in datas]  # each event named as its type
    last = datas[-1]
    (record,) = gateway.sink.wait_for(1)
    assert last["type"] == "response.completed"
    assert [data["sequence_number"] for data in datas] == list(range(len(datas)))
    assert {data["response"]["id"] for data in datas if "response" in data} == {
        last["response"]["id"]
    }  # OneFlow's id throughout, OpenAI's own events included
    assert last["response"]["store"] is True  # as the caller asked (OpenAI was told false)
    # OpenAI's own events pass through as they came (its `obfuscation` padding included);
    # a bridged model's are OneFlow's.
    padded = ["obfuscation" in d for d in datas if d["type"] == "response.output_text.delta"]
    assert padded and (all(padded) if provider == "openai" else not any(padded))
    assert last["response"]["usage"]["output_tokens"] == record.usage.output_tokens
    assert Decimal(last["oneflow"]["credits"]) == record.cost.credits


@pytest.mark.parametrize(("model", "provider"), MODELS)
@pytest.mark.parametrize("streamed", [False, True])
def test_a_function_tool_round_trip(
    gateway: Gateway, model: str, provider: str, streamed: bool
) -> None:
    client = gateway.openai()
    if streamed:
        with client.responses.stream(
            model=model, input="Please call get_weather", tools=[WEATHER]
        ) as stream:
            events = list(stream)
            first = stream.get_final_response()
        kinds = [event.type for event in events]
        assert "response.function_call_arguments.delta" in kinds
        assert "response.function_call_arguments.done" in kinds
    else:
        first = client.responses.create(
            model=model, input="Please call get_weather", tools=[WEATHER]
        )
    (call,) = [item for item in first.output if item.type == "function_call"]
    assert call.name == "get_weather" and "city" in orjson.loads(call.arguments)
    gateway.fakes.reset()
    second = client.responses.create(
        model=model,
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "Sunny, 21C"}],
        tools=[WEATHER],
    )
    assert second.output_text.startswith("Echo: Sunny, 21C")
    assert second.previous_response_id == first.id
    sent = _upstream(gateway, provider)
    if provider == "openai":
        assert "previous_response_id" not in sent
        kinds = [item.get("type", "message") for item in sent["input"]]
        assert kinds == ["message", "function_call", "function_call_output"]
        assert sent["input"][1]["call_id"] == call.call_id
    else:
        _user, assistant, result = sent["messages"]
        assert assistant["content"][-1]["type"] == "tool_use"
        assert assistant["content"][-1]["id"] == call.call_id
        assert result["content"] == [
            {"type": "tool_result", "tool_use_id": call.call_id, "content": "Sunny, 21C"}
        ]


def test_previous_response_id_works_across_models(gateway: Gateway) -> None:
    client = gateway.openai()
    first = client.responses.create(model="gpt-4o", input="Remember the word pineapple")
    gateway.fakes.reset()
    second = client.responses.create(
        model="claude-3-haiku-20240307", previous_response_id=first.id, input="What was it?"
    )
    third = client.responses.create(
        model="gpt-4o", previous_response_id=second.id, input="And again?"
    )
    claude = _upstream(gateway, "anthropic")
    texts = [block["text"] for turn in claude["messages"] for block in turn["content"]]
    assert texts == ["Remember the word pineapple", first.output_text, "What was it?"]
    gpt = _upstream(gateway, "openai")
    assert [item["role"] for item in gpt["input"]] == ["user", "assistant"] * 2 + ["user"]
    assert gpt["input"][3]["content"][0]["text"] == second.output_text
    assert third.previous_response_id == second.id


def test_stored_responses_are_read_listed_and_deleted(gateway: Gateway) -> None:
    client = gateway.openai()
    made = client.responses.create(
        model="claude-3-haiku-20240307",
        input=[{"role": "user", "content": [{"type": "input_text", "text": "Hello"}]}],
        metadata={"ticket": "42"},
    )
    got = client.responses.retrieve(made.id)
    assert got.model_dump() == made.model_dump()
    assert got.metadata == {"ticket": "42"}
    items = client.responses.input_items.list(made.id)
    (item,) = items.data
    assert item.type == "message" and item.id
    assert item.content[0].text == "Hello"  # type: ignore[union-attr]
    client.responses.delete(made.id)
    with pytest.raises(openai.NotFoundError) as missing:
        client.responses.retrieve(made.id)
    assert made.id in missing.value.message
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(made.id)
    unstored = client.responses.create(model="gpt-4o", input="Hi", store=False)
    assert unstored.store is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(unstored.id)


def test_a_conversation_with_a_deleted_response_names_it(gateway: Gateway) -> None:
    client = gateway.openai()
    first = client.responses.create(model="gpt-4o", input="One")
    second = client.responses.create(model="gpt-4o", input="Two", previous_response_id=first.id)
    client.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError) as missing:
        client.responses.create(model="gpt-4o", input="Three", previous_response_id=second.id)
    assert first.id in missing.value.message
    assert missing.value.body["param"] == "previous_response_id"  # type: ignore[index]


def test_a_provider_failure_mid_stream_ends_with_an_error_event(gateway: Gateway) -> None:
    gateway.fakes.add_fault(provider="openai", endpoint="responses", error_after_chunks=2)
    gateway.fakes.add_fault(provider="anthropic", error_after_chunks=2)
    body = {"model": "gpt-4o", "input": PROMPT, "stream": True}
    with httpx.stream(
        "POST",
        f"{gateway.url}/v1/responses",
        json=body,
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=30,
    ) as answer:
        assert answer.status_code == 200
        events = [
            orjson.loads(line.removeprefix("data: "))
            for line in answer.iter_lines()
            if line.startswith("data: ")
        ]
    kinds = [event["type"] for event in events]
    assert kinds.count("response.output_text.delta") == 2
    assert kinds[-2:] == ["error", "response.failed"]
    assert events[-1]["response"]["status"] == "failed"
    (record,) = gateway.sink.wait_for(1)
    assert record.outcome == "cut_off"
    # The SDK hands both on as typed events (as from OpenAI itself), the failure's message in
    # the error event.
    with gateway.openai().responses.stream(model="claude-3-haiku-20240307", input=PROMPT) as stream:
        seen = list(stream)
    assert [event.type for event in seen][-2:] == ["error", "response.failed"]
    assert seen[-2].message  # type: ignore[union-attr]


def test_another_projects_response_is_not_found(gateway: Gateway) -> None:
    made = gateway.openai().responses.create(model="gpt-4o", input="Secret plans")
    project = f"responses-{uuid.uuid4().hex[:8]}"
    created = gateway.post("/api/v1/projects", {"id": project, "name": project})
    assert created.status_code == 201, created.text
    key = gateway.post("/api/v1/keys", {"name": "k", "project_id": project, "role": "member"})
    assert key.status_code == 201, key.text
    outsider = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key.json()["key"], max_retries=0)
    gateway.fakes.reset()
    with pytest.raises(openai.NotFoundError) as continued:
        outsider.responses.create(model="gpt-4o", previous_response_id=made.id, input="More")
    assert continued.value.body["param"] == "previous_response_id"  # type: ignore[index]
    assert "Secret" not in str(continued.value.body)
    assert gateway.fakes.calls() == []
    for call in (outsider.responses.retrieve, outsider.responses.delete):
        with pytest.raises(openai.NotFoundError):
            call(made.id)
    assert gateway.openai().responses.retrieve(made.id).id == made.id  # still there


def test_an_expired_response_is_named(gateway: Gateway) -> None:
    client = gateway.openai()
    made = client.responses.create(model="gpt-4o", input="Old news")
    url = gateway.server.config.app.state.settings.database_url  # type: ignore[attr-defined]

    async def expire() -> None:
        engine = create_engine(url)
        async with engine.begin() as connection:
            await connection.execute(
                update(ResponsesApiRecord)
                .where(ResponsesApiRecord.id == made.id)
                .values(expires_at=utcnow() - timedelta(minutes=1))
            )
        await engine.dispose()

    asyncio.run(expire())
    for attempt in (
        lambda: client.responses.retrieve(made.id),
        lambda: client.responses.create(model="gpt-4o", previous_response_id=made.id, input="?"),
    ):
        with pytest.raises(openai.NotFoundError) as expired:
            attempt()
        assert made.id in expired.value.message and "expired" in expired.value.message


def test_a_response_the_database_cannot_keep_still_answers(gateway: Gateway) -> None:
    url = gateway.server.config.app.state.settings.database_url  # type: ignore[attr-defined]

    async def rename(old: str, new: str) -> None:
        engine = create_engine(url)
        async with engine.begin() as connection:
            await connection.execute(text(f"ALTER TABLE {old} RENAME TO {new}"))
        await engine.dispose()

    asyncio.run(rename("stored_responses", "stored_responses_away"))
    try:
        response = gateway.openai().responses.create(model="gpt-4o", input=PROMPT)
        # Reading the store while it is away is a 503 to retry, not an internal error.
        for attempt in (
            lambda: gateway.openai().responses.retrieve("resp_any"),
            lambda: gateway.openai().responses.create(
                model="gpt-4o", input="x", previous_response_id="resp_any"
            ),
        ):
            with pytest.raises(openai.InternalServerError) as away:
                attempt()
            assert away.value.status_code == 503
    finally:
        asyncio.run(rename("stored_responses_away", "stored_responses"))
    assert response.output_text.startswith("Echo:")
    (record,) = gateway.sink.wait_for(1)
    assert record.outcome == "ok"  # answered and charged
    with pytest.raises(openai.NotFoundError):
        gateway.openai().responses.retrieve(response.id)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "gpt-4o", "input": 5}, "input"),
        ({"model": "gpt-4o"}, "input"),
        ({"model": "gpt-4o", "input": [{"role": "pilot", "content": "x"}]}, "input[0].role"),
        ({"model": "gpt-4o", "input": "x", "max_output_tokens": "many"}, "max_output_tokens"),
        ({"model": "gpt-4o", "input": "x", "tools": [{"type": "function"}]}, "tools[0].name"),
        ({"model": "gpt-4o", "input": "x", "temperature": 3}, "temperature"),
        ({"model": "gpt-4o", "input": "x", "store": "yes"}, "store"),
        ({"model": "gpt-4o", "input": "x", "background": True}, "background"),
        (
            {"model": "gpt-4o", "input": [{"type": "function_call", "call_id": "c", "name": "f"}]},
            "input[0].arguments",
        ),
        (
            {"model": "gpt-4o", "input": "x", "text": {"format": {"type": "json_schema"}}},
            "text.format.schema",
        ),
    ],
)
def test_bad_input_is_a_400_naming_the_field(
    gateway: Gateway, body: dict[str, object], param: str
) -> None:
    answer = gateway.post("/v1/responses", body)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error"
    assert gateway.fakes.calls() == []


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"tools": [{"type": "web_search"}]}, "tools[0]"),
        ({"tool_choice": {"type": "web_search_preview"}}, "tool_choice"),
        ({"include": ["reasoning.encrypted_content"]}, "include"),
        ({"prompt_cache_key": "k"}, "prompt_cache_key"),
        ({"text": {"verbosity": "low"}}, "text.verbosity"),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0].type"),
        (
            {
                "input": [
                    {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
                    {
                        "type": "function_call_output",
                        "call_id": "c",
                        "output": [{"type": "input_image", "image_url": "https://x.test/a.png"}],
                    },
                ]
            },
            "input[1].output",
        ),
    ],
)
def test_what_a_bridged_model_cannot_honour_is_refused(
    gateway: Gateway, extra: dict[str, object], param: str
) -> None:
    body = {"model": "claude-3-haiku-20240307", "input": "Search the web", **extra}
    answer = gateway.post("/v1/responses", body)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["param"] == param and error["code"] == "unsupported_parameter"
    assert "claude-3-haiku-20240307" in error["message"]
    assert gateway.fakes.calls() == []
    # A strategy may choose a bridged model: refused too.
    assert gateway.post("/v1/responses", {**body, "model": "cost_optimized"}).status_code == 400


def test_a_response_falls_back_across_dialects(gateway: Gateway) -> None:
    gateway.fakes.add_fault(provider="openai", endpoint="responses", status=503)
    models = ["gpt-4o", "claude-3-haiku-20240307"]
    raw = gateway.openai().responses.with_raw_response.create(
        model="gpt-4o", input=PROMPT, extra_body={"models": models}
    )
    assert raw.headers["x-oneflow-model"] == "claude-3-haiku-20240307"
    assert raw.headers["x-oneflow-fallbacks"] == "1"
    assert raw.parse().output_text.startswith("Echo: Tell me about the gateway")
    assert "models" not in gateway.fakes.calls("openai")[0].body  # type: ignore[operator]
    # A field only OpenAI honours is refused by the fallback, never dropped.
    gateway.fakes.reset()
    gateway.fakes.add_fault(provider="openai", endpoint="responses", status=503)
    refused = gateway.post(
        "/v1/responses",
        {"model": "gpt-4o", "models": models, "input": "x", "tools": [{"type": "web_search"}]},
    )
    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert error["param"] == "tools[0]" and "claude-3-haiku-20240307" in error["message"]
    assert gateway.fakes.calls("anthropic") == []


def test_an_openai_model_takes_built_in_tools(gateway: Gateway) -> None:
    answer = gateway.post(
        "/v1/responses", {"model": "gpt-4o", "input": "Search", "tools": [{"type": "web_search"}]}
    )
    assert answer.status_code == 200, answer.text
    assert _upstream(gateway, "openai")["tools"] == [{"type": "web_search"}]
    assert "x-oneflow-ignored-params" not in answer.headers  # nothing was left out


def test_structured_output_from_claude(gateway: Gateway) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city", "days"],
        "additionalProperties": False,
    }
    response = gateway.openai().responses.create(
        model="claude-3-haiku-20240307",
        input="Plan a trip",
        text={"format": {"type": "json_schema", "name": "trip", "schema": schema, "strict": True}},
    )
    answer = orjson.loads(response.output_text)
    assert set(answer) == {"city", "days"} and isinstance(answer["days"], int)
    assert response.text is not None and response.text.format.type == "json_schema"
    sent = _upstream(gateway, "anthropic")
    assert sent["tool_choice"] == {"type": "tool", "name": "json_answer"}
    assert sent["tools"][0]["input_schema"] == schema


def test_structured_output_while_claude_thinks_is_asked_by_instruction(gateway: Gateway) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    answer = gateway.post(
        "/v1/responses",
        {
            "model": THINKER,
            "input": "Plan a trip",
            "reasoning": {"effort": "low"},
            "text": {"format": {"type": "json_schema", "name": "trip", "schema": schema}},
        },
    )
    assert answer.status_code == 200, answer.text
    sent = _upstream(gateway, "anthropic")
    assert "tool_choice" not in sent and "tools" not in sent
    assert sent["thinking"]["type"] == "enabled"
    assert orjson.dumps(schema).decode() in sent["system"]


def test_an_image_in_the_input_reaches_claude(gateway: Gateway) -> None:
    pixel = base64.b64encode(b"\x89PNG\r\n\x1a\n-fake-").decode()
    gateway.openai().responses.create(
        model="claude-3-haiku-20240307",
        input=[
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "What is this?"},
                    {"type": "input_image", "image_url": f"data:image/png;base64,{pixel}"},
                ],
            }
        ],
    )
    (turn,) = _upstream(gateway, "anthropic")["messages"]
    assert turn["content"][1] == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": pixel},
    }


#: A Claude model that reasons (the catalog's `reasoning: true`): it takes extended thinking.
THINKER = "claude-haiku-4-5-20251001"


def test_a_model_that_does_not_reason_refuses_a_reasoning_effort(gateway: Gateway) -> None:
    refused = gateway.post(
        "/v1/responses",
        {"model": "claude-3-haiku-20240307", "input": "x", "reasoning": {"effort": "low"}},
    )
    assert refused.status_code == 400
    assert refused.json()["error"]["param"] == "reasoning.effort"


def test_reasoning_effort_becomes_claude_thinking(gateway: Gateway) -> None:
    response = gateway.openai().responses.create(
        model=THINKER,
        input="Think first",
        reasoning={"effort": "low", "summary": "auto"},
        max_output_tokens=3000,
    )
    assert response.status == "completed"
    sent = _upstream(gateway, "anthropic")
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 2048}  # "low"
    assert sent["max_tokens"] == 3000
    refused = gateway.post(
        "/v1/responses",
        {
            "model": THINKER,
            "input": "x",
            "reasoning": {"effort": "high"},
            "max_output_tokens": 500,
        },
    )
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "reasoning.effort"


@pytest.mark.parametrize("streamed", [False, True])
def test_claudes_thinking_is_a_reasoning_item_and_goes_back(
    gateway: Gateway, streamed: bool
) -> None:
    client = gateway.openai()
    asked: dict[str, Any] = {
        "model": THINKER,
        "input": "Please call get_weather",
        "tools": [WEATHER],
        "reasoning": {"effort": "low", "summary": "auto"},
    }
    if streamed:
        with client.responses.stream(**asked) as stream:
            events = list(stream)
            first = stream.get_final_response()
        deltas = [e.delta for e in events if e.type == "response.reasoning_summary_text.delta"]
    else:
        first = client.responses.create(**asked)
    reasoning, *_, call = first.output
    assert reasoning.type == "reasoning" and call.type == "function_call"
    thought = reasoning.summary[0].text
    assert thought.startswith("Step 1: consider")  # the fake Claude's thinking
    if streamed:
        assert "".join(deltas) == thought
    assert reasoning.content is not None
    assert reasoning.content[0].text == reasoning.summary[0].text
    signature = reasoning.encrypted_content
    assert signature  # the fake signs what it thought; the next turn must carry it unchanged
    sent = _upstream(gateway, "anthropic")
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 2048}  # "low"
    assert sent["max_tokens"] == 4096  # the default, above the budget
    gateway.fakes.reset()
    client.responses.create(
        model=THINKER,
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "Rain"}],
        tools=[WEATHER],
        reasoning={"effort": "low"},
    )
    _user, assistant, _result = _upstream(gateway, "anthropic")["messages"]
    assert assistant["content"][0] == {
        "type": "thinking",
        "thinking": thought,
        "signature": signature,
    }
    assert assistant["content"][-1]["type"] == "tool_use"


def test_a_strategy_routes_a_response(gateway: Gateway) -> None:
    raw = gateway.openai().responses.with_raw_response.create(
        model="cost_optimized", input=PROMPT, max_output_tokens=50
    )
    assert raw.headers["x-oneflow-route"].startswith("cost_optimized")
    response = raw.parse()
    assert response.model == raw.headers["x-oneflow-model"]
    assert response.output_text


def _claude_usage(gateway: Gateway) -> dict[str, Any]:
    usage = httpx.get(
        f"{gateway.url}/api/v1/usage",
        params={"group_by": "model"},
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=10,
    )
    assert usage.status_code == 200, usage.text
    groups = [g for g in usage.json()["groups"] if g["model"] == "claude-3-haiku-20240307"]
    return groups[0] if groups else {"requests": 0, "output_tokens": 0, "credits": "0"}


def test_usage_of_responses_is_reported(gateway: Gateway) -> None:
    before = _claude_usage(gateway)
    response = gateway.openai().responses.create(model="claude-3-haiku-20240307", input=PROMPT)
    (record,) = gateway.sink.wait_for(1)
    after = _claude_usage(gateway)
    assert after["requests"] == before["requests"] + 1
    assert response.usage is not None
    assert after["output_tokens"] - before["output_tokens"] == response.usage.output_tokens
    assert Decimal(after["credits"]) - Decimal(before["credits"]) == record.cost.credits


def test_a_response_is_in_the_request_log(gateway: Gateway) -> None:
    raw = gateway.openai().responses.with_raw_response.create(
        model="gpt-4o", input=PROMPT, stream=True
    )
    list(raw.parse())
    request_id = raw.headers["x-oneflow-request-id"]
    gateway.sink.wait_for(1)
    found = httpx.get(
        f"{gateway.url}/api/v1/requests/{request_id}",
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=10,
    )
    assert found.status_code == 200, found.text
    row = found.json()
    assert (row["model"], row["provider"], row["stream"]) == ("gpt-4o", "openai", True)
