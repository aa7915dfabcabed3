"""The OpenAI Agents SDK (`openai-agents`) runs an agent with a function tool through the
gateway on a Claude model, over the Responses API: two turns, the second continuing the first
by `previous_response_id` (OneFlow's stored responses), one plain and one streamed."""

from __future__ import annotations

import openai
from agents import (
    Agent,
    ItemHelpers,
    OpenAIResponsesModel,
    Runner,
    function_tool,
    set_tracing_disabled,
)

from tests.integration.conftest import KEY, Gateway

CLAUDE = "claude-3-haiku-20240307"


async def test_a_two_turn_agent_with_a_function_tool_on_claude(gateway: Gateway) -> None:
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
        model=OpenAIResponsesModel(model=CLAUDE, openai_client=client),
    )
    first = await Runner.run(agent, "Please call get_weather")
    assert len(asked) == 1
    assert first.final_output.startswith(f"Echo: Sunny in {asked[0]}")
    kinds = [item.type for item in first.new_items]
    # Claude says what it is about to do, calls the tool, then answers with its result.
    assert kinds == [
        "message_output_item",
        "tool_call_item",
        "tool_call_output_item",
        "message_output_item",
    ]
    assert first.last_response_id is not None
    # The provider saw the tool call and its result as Claude's own blocks.
    last_call = gateway.fakes.calls("anthropic")[-1]
    _user, assistant, result = last_call.body["messages"]  # type: ignore[index]
    assert assistant["content"][-1]["type"] == "tool_use"
    assert result["content"][0]["type"] == "tool_result"

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
    (call,) = gateway.fakes.calls("anthropic")  # the whole conversation, from OneFlow's store
    turns = call.body["messages"]  # type: ignore[index]
    assert [turn["role"] for turn in turns] == ["user", "assistant", "user", "assistant", "user"]
    assert turns[-1]["content"] == [{"type": "text", "text": "Thanks, and tomorrow?"}]
    assert len(gateway.sink.wait_for(3)) == 3  # three model calls, each recorded
    await client.close()
