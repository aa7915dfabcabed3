"""`TokenCounter.count_chat` counts a canonical request as `count_messages` counts the same
request written in OpenAI's format: one rule, whichever dialect the request came in."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from oneflow_ai.billing.tokenizer import TokenCounter
from oneflow_ai.domain.chat import ChatRequest, ImagePart, Message, TextPart, Tool, ToolCall
from oneflow_ai.providers.openai_request import build_chat_body

COUNTER = TokenCounter()
text = st.text(max_size=40)
parts = st.lists(
    st.one_of(
        text.map(TextPart),
        st.sampled_from([None, "low", "high"]).map(lambda d: ImagePart("https://x/i.png", d)),
    ),
    max_size=3,
)
calls = st.lists(
    st.builds(ToolCall, id=st.just("call_1"), name=st.just("f"), arguments=text), max_size=2
)
messages = st.one_of(
    st.builds(
        Message, role=st.sampled_from(["system", "user"]), content=parts, name=st.none() | text
    ),
    st.builds(Message, role=st.just("assistant"), content=parts, tool_calls=calls),
    st.builds(Message, role=st.just("tool"), content=parts, tool_call_id=st.none() | text),
)
tools = st.lists(
    st.builds(
        Tool,
        name=st.just("get_weather"),
        description=st.none() | text,
        parameters=st.sampled_from(
            [
                {},
                {"type": "object", "properties": {"city": {"type": "string"}}},
                {"type": "object", "properties": {"unit": {"type": "string", "enum": ["c", "f"]}}},
            ]
        ),
    ),
    max_size=2,
)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(messages, min_size=1, max_size=4),
    tools,
    st.sampled_from(["gpt-4o", "gpt-4-turbo", "claude-3-haiku-20240307"]),
)
def test_canonical_count_is_the_openai_format_count(
    messages: list[Message], tools: list[Tool], model: str
) -> None:
    request = ChatRequest(model=model, messages=messages, tools=tools)
    body = build_chat_body(request, model)
    expected = COUNTER.count_messages(model, body["messages"], body.get("tools"))
    assert COUNTER.count_chat(model, request) == expected


def test_a_plain_prompt() -> None:
    request = ChatRequest(model="gpt-4o", messages=[Message("user", [TextPart("Hi")])])
    count = COUNTER.count_chat("gpt-4o", request)
    assert count.tokens == 8 and count.exact
