"""Token counts for prompts and chat messages follow OpenAI's published rules."""

import math
from collections.abc import Mapping
from fractions import Fraction

import pytest
import tiktoken
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oneflow_ai.billing.errors import TokenCountError
from oneflow_ai.billing.tokenizer import TokenCount, TokenCounter, count_tokens
from oneflow_ai.catalog import UnknownModelError

COUNTER = TokenCounter()

# OpenAI cookbook, "How to count tokens with tiktoken", section 6: the API reported 129 prompt
# tokens for gpt-3.5-turbo / gpt-4-0613 / gpt-4 and 124 for gpt-4o on this conversation.
COOKBOOK_MESSAGES = [
    {
        "role": "system",
        "content": "You are a helpful, pattern-following assistant that translates corporate "
        "jargon into plain English.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "New synergies will help drive top-line growth.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Things working well together will increase revenue.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "Let's circle back when we have more bandwidth to touch base on opportunities "
        "for increased leverage.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Let's talk later when we're less busy about how to do better.",
    },
    {
        "role": "user",
        "content": "This late pivot means we don't have time to boil the ocean for the client "
        "deliverable.",
    },
]

# Section 7: with this tool the API reported 105 (gpt-3.5-turbo, gpt-4) and 101 (gpt-4o).
COOKBOOK_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_current_weather",
            "description": "Get the current weather in a given location",
            "parameters": {
                "type": "object",
                "properties": {
                    "location": {
                        "type": "string",
                        "description": "The city and state, e.g. San Francisco, CA",
                    },
                    "unit": {
                        "type": "string",
                        "description": "The unit of temperature to return",
                        "enum": ["celsius", "fahrenheit"],
                    },
                },
                "required": ["location"],
            },
        },
    }
]
COOKBOOK_TOOL_MESSAGES = [
    {
        "role": "system",
        "content": "You are a helpful assistant that can answer to questions about the weather.",
    },
    {"role": "user", "content": "What's the weather like in San Francisco?"},
]


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("gpt-3.5-turbo", 129),
        ("gpt-4-0613", 129),
        ("gpt-4", 129),
        ("gpt-4o", 124),
        ("gpt-4o-2024-08-06", 124),
    ],
)
def test_cookbook_conversation(model: str, expected: int) -> None:
    assert COUNTER.count_messages(model, COOKBOOK_MESSAGES) == TokenCount(
        expected, True, COUNTER.tokenizer_for(model)
    )


@pytest.mark.parametrize(
    ("model", "expected"), [("gpt-3.5-turbo", 105), ("gpt-4", 105), ("gpt-4o", 101)]
)
def test_cookbook_tools(model: str, expected: int) -> None:
    count = COUNTER.count_messages(model, COOKBOOK_TOOL_MESSAGES, COOKBOOK_TOOLS)
    assert (count.tokens, count.exact) == (expected, True)


def published_rule(messages: list[dict[str, str]], encoding: tiktoken.Encoding) -> int:
    """The cookbook's num_tokens_from_messages, written out independently."""
    total = 0
    for message in messages:
        total += 3
        for key, value in message.items():
            # the cookbook's encode() would raise on text like "<|endoftext|>"; a provider
            # treats such text in a message as ordinary text, and so does OneFlow
            total += len(encoding.encode(value, disallowed_special=()))
            if key == "name":
                total += 1
    return total + 3


message_strategy = st.fixed_dictionaries(
    {"role": st.sampled_from(["system", "user", "assistant"]), "content": st.text(max_size=200)},
    optional={"name": st.from_regex(r"[a-zA-Z0-9_-]{1,20}", fullmatch=True)},
)


@pytest.mark.property
@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(messages=st.lists(message_strategy, max_size=8), model=st.sampled_from(["gpt-4", "gpt-4o"]))
def test_chat_count_follows_the_published_rule(
    messages: list[dict[str, str]],
    model: str,
    reference_encodings: dict[str, tiktoken.Encoding],
) -> None:
    encoding = reference_encodings[COUNTER.tokenizer_for(model)]
    count = COUNTER.count_messages(model, messages)
    assert count.exact is True
    assert count.tokens == published_rule(messages, encoding)


@pytest.mark.parametrize("model", ["gpt-4", "gpt-4o", "gpt-3.5-turbo", "gpt-4-turbo"])
def test_count_text_matches_tiktoken(
    model: str, corpus: list[str], reference_encodings: dict[str, tiktoken.Encoding]
) -> None:
    encoding = reference_encodings[COUNTER.tokenizer_for(model)]
    for text in corpus[:60]:
        assert COUNTER.count_text(model, text) == TokenCount(
            len(encoding.encode(text, disallowed_special=())), True, encoding.name
        )


def test_count_tokens_treats_special_token_text_as_text() -> None:
    assert count_tokens("<|endoftext|>", "cl100k_base") > 1


def test_empty_conversation_is_the_reply_priming() -> None:
    assert COUNTER.count_messages("gpt-4o", []).tokens == 3


def test_name_costs_one_more_token_than_its_text() -> None:
    plain = COUNTER.count_messages("gpt-4", [{"role": "user", "content": "hi"}]).tokens
    named = COUNTER.count_messages("gpt-4", [{"role": "user", "content": "hi", "name": "bob"}])
    assert named.tokens == plain + count_tokens("bob", "cl100k_base") + 1


def test_single_text_part_counts_like_a_string() -> None:
    as_string = COUNTER.count_messages("gpt-4o", [{"role": "user", "content": "Hello there"}])
    as_part = COUNTER.count_messages(
        "gpt-4o", [{"role": "user", "content": [{"type": "text", "text": "Hello there"}]}]
    )
    assert as_part == as_string


def test_several_text_parts_are_an_estimate() -> None:
    content = [{"type": "text", "text": "Hello"}, {"type": "text", "text": " there"}]
    count = COUNTER.count_messages("gpt-4o", [{"role": "user", "content": content}])
    assert count.exact is False
    assert count.tokens == 3 + 1 + 1 + 1 + 3  # framing, "user", "Hello", " there", priming


@pytest.mark.parametrize(("detail", "tokens"), [("low", 85), ("high", 765), (None, 765)])
def test_image_parts_are_estimated(detail: str | None, tokens: int) -> None:
    image_url: dict[str, str] = {"url": "data:image/png;base64,AAAA"}
    if detail:
        image_url["detail"] = detail
    messages = [{"role": "user", "content": [{"type": "image_url", "image_url": image_url}]}]
    count = COUNTER.count_messages("gpt-4o", messages)
    assert count.exact is False
    assert count.tokens == 3 + count_tokens("user", "o200k_base") + tokens + 3


def test_tool_calls_and_null_content() -> None:
    messages: list[Mapping[str, object]] = [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "42"},
    ]
    count = COUNTER.count_messages("gpt-4o", messages)
    assert count.exact is False
    assert count.tokens > 3 + 3 + 3


def test_nested_tool_parameters_are_an_estimate() -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "search",
                "description": "Search.",
                "parameters": {
                    "type": "object",
                    "properties": {"filters": {"type": "object", "properties": {"a": {}}}},
                },
            },
        }
    ]
    count = COUNTER.count_messages("gpt-4", [{"role": "user", "content": "x"}], tools)
    assert count.exact is False


def test_claude_is_a_scaled_estimate() -> None:
    text = "Claude counts are estimated from cl100k_base, scaled by 1.15 and rounded up."
    base = count_tokens(text, "cl100k_base")
    count = COUNTER.count_text("claude-3-haiku", text)
    assert count == TokenCount(math.ceil(base * Fraction(115, 100)), False, "claude_approx")
    assert COUNTER.count_text("claude-3-opus-20240229", "").tokens == 0
    chat = COUNTER.count_messages("claude-3-sonnet", COOKBOOK_MESSAGES)
    assert chat.exact is False
    assert chat.tokens == math.ceil(129 * Fraction(115, 100))  # cl100k framing, scaled


@pytest.mark.property
@settings(deadline=None)
@given(text=st.text(max_size=300))
def test_claude_estimate_is_never_below_the_cl100k_count(text: str) -> None:
    assert COUNTER.count_text("claude-3-opus", text).tokens >= count_tokens(text, "cl100k_base")


def test_models_without_tokens() -> None:
    with pytest.raises(TokenCountError, match="image model"):
        COUNTER.count_text("dall-e-3", "a cat")
    with pytest.raises(TokenCountError, match="audio model"):
        COUNTER.count_messages("eleven_multilingual_v2", [])
    with pytest.raises(UnknownModelError):
        COUNTER.count_text("gpt-99", "x")


@pytest.mark.parametrize(
    "messages",
    [
        "hello",
        [["user", "hi"]],
        [{"role": "user", "content": 42}],
        [{"role": "user", "content": [{"type": "text", "text": 42}]}],
    ],
)
def test_malformed_messages_are_refused(messages: object) -> None:
    with pytest.raises(TokenCountError):
        COUNTER.count_messages("gpt-4", messages)  # type: ignore[arg-type]


def test_count_text_refuses_non_strings() -> None:
    with pytest.raises(TokenCountError):
        COUNTER.count_text("gpt-4", b"bytes")  # type: ignore[arg-type]
