"""The OpenAI Agents SDK (`openai-agents`) runs an agent with a function tool through the
gateway on a Claude model (bridged) and a GPT model (OpenAI's own Responses API), over the
Responses API: two turns, the second continuing the first by `previous_response_id` (OneFlow's
stored responses), one plain and one streamed."""

from __future__ import annotations

import openai
import pytest
from agents import (
    Agent,
    ItemHelpers,
    OpenAIResponsesModel,
    Runner,
    function_tool,
    set_tracing_disabled,
)

from tests.integration.conftest import KEY, Gateway

#: model, its provider, and the items of the first turn (Claude says what it is about to do).
MODELS = [
    (
        "claude-3-haiku-20240307",
        "anthropic",
        ["message_output_item", "tool_call_item", "tool_call_output_item", "message_output_item"],
    ),
    ("gpt-4o", "openai", ["tool_call_item", "tool_call_output_item", "message_output_item"]),
]


@pytest.mark.parametrize(("model", "provider", "first_items"), MODELS)
async def test_a_two_turn_agent_with_a_function_tool(
    gateway: Gateway, model: str, provider: str, first_items: list[str]
) -> None:
    set_tracing_disabled(True)  # no trace export (it would go to OpenAI)
    client = openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key=KEY, max_retries=0)
    asked: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        asked.append(city)
        return f"Sunny in {city}"

    agent = Agent(
        name="Weather",
        instructions="Answer questions about the weather.",
        tools=[get_weather],
        model=OpenAIResponsesModel(model=model, openai_client=client),
    )
    first = await Runner.run(agent, "Please call get_weather")
    assert len(asked) == 1
    assert first.final_output.startswith(f"Echo: Sunny in {asked[0]}")
    assert [item.type for item in first.new_items] == first_items
    assert first.last_response_id is not None
    # The provider saw the tool call and its result in its own terms.
    last_call = gateway.fakes.calls(provider)[-1]
    if provider == "anthropic":
        _user, assistant, result = last_call.body["messages"]  # type: ignore[index]
        assert assistant["content"][-1]["type"] == "tool_use"
        assert result["content"][0]["type"] == "tool_result"
    else:
        kinds = [item.get("type") for item in last_call.body["input"]]  # type: ignore[index]
        assert kinds[-2:] == ["function_call", "function_call_output"]

    gateway.fakes.reset()
    second = Runner.run_streamed(
        agent, "Thanks, and tomorrow?", previous_response_id=first.last_response_id
    )
    texts = [
        ItemHelpers.text_message_output(event.item)
        async for event in second.stream_events()
        if event.type == "run_item_stream_event" and event.item.type == "message_output_item"
    ]
    assert texts == [second.final_output]
    assert second.final_output.startswith("Echo: Thanks, and tomorrow?")
    (call,) = gateway.fakes.calls(provider)  # the whole conversation, from OneFlow's store
    if provider == "anthropic":
        turns = call.body["messages"]  # type: ignore[index]
        roles = [turn["role"] for turn in turns]
        assert roles == ["user", "assistant", "user", "assistant", "user"]
        assert turns[-1]["content"] == [{"type": "text", "text": "Thanks, and tomorrow?"}]
    else:
        items = call.body["input"]  # type: ignore[index]
        assert "previous_response_id" not in call.body  # type: ignore[operator]
        kinds = [item.get("type", "message") for item in items]
        assert kinds == ["message", "function_call", "function_call_output", "message", "message"]
    assert len(gateway.sink.wait_for(3)) == 3  # three model calls, each recorded
    await client.close()
