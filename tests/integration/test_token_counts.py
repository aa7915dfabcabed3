"""Counting input tokens: Anthropic's `messages.count_tokens` and OneFlow's OpenAI-dialect
count, for an OpenAI model (exact) and a Claude model (an estimate, flagged)."""

from __future__ import annotations

import anthropic
import pytest

from oneflow_ai.billing.tokenizer import TokenCounter
from tests.integration.conftest import Gateway

COUNTER = TokenCounter()
CLAUDE = "claude-3-haiku-20240307"
MESSAGES = [{"role": "user", "content": "Hello, world"}]


def test_anthropic_sdk_counts_an_openai_model_exactly(gateway: Gateway) -> None:
    raw = gateway.anthropic().messages.with_raw_response.count_tokens(
        model="gpt-4o", messages=[{"role": "user", "content": "Hello, world"}]
    )
    counted = raw.parse()
    # o200k_base: "user" = 1 and "Hello" "," " world" = 3 tokens, + 3 per message + 3 priming
    assert counted.input_tokens == 10
    assert raw.headers["x-oneflow-tokens-exact"] == "true"
    assert raw.headers["x-oneflow-model"] == "gpt-4o"
    assert raw.http_response.json()["oneflow"] == {
        "model": "gpt-4o",
        "tokenizer": "o200k_base",
        "exact": True,
    }
    assert gateway.fakes.calls() == []  # no provider is asked
    assert gateway.sink.records == []  # and nothing is billed


def test_anthropic_sdk_counts_a_claude_model_as_an_estimate(gateway: Gateway) -> None:
    tool = {
        "name": "get_weather",
        "description": "The weather in a city.",
        "input_schema": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "The city"}},
            "required": ["city"],
        },
    }
    raw = gateway.anthropic().messages.with_raw_response.count_tokens(
        model=CLAUDE,
        system="You are terse.",
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=[tool],  # type: ignore[list-item]
    )
    counted = raw.parse()
    assert raw.headers["x-oneflow-tokens-exact"] == "false"
    assert raw.http_response.json()["oneflow"]["tokenizer"] == "claude_approx"
    expected = COUNTER.count_messages(
        CLAUDE,
        [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "What is the weather in Paris?"},
        ],
        [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "The weather in a city.",
                    "parameters": tool["input_schema"],
                },
            }
        ],
    )
    assert counted.input_tokens == expected.tokens and not expected.exact
    without_tools = gateway.anthropic().messages.count_tokens(
        model=CLAUDE,
        system="You are terse.",
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
    )
    assert without_tools.input_tokens < counted.input_tokens  # the tool is counted


def test_openai_dialect_count_matches(gateway: Gateway) -> None:
    for model, exact in (("gpt-4o", True), (CLAUDE, False)):
        answer = gateway.post(
            "/v1/chat/completions/count_tokens",
            {"model": model, "messages": MESSAGES, "max_tokens": 50},
        )
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["object"] == "chat.completion.input_tokens" and body["model"] == model
        assert body["input_tokens"] == COUNTER.count_messages(model, MESSAGES).tokens
        assert body["oneflow"]["exact"] is exact
        assert answer.headers["x-oneflow-tokens-exact"] == str(exact).lower()
    aliased = gateway.post(
        "/v1/chat/completions/count_tokens", {"model": "gpt-4o-2024-08-06", "messages": MESSAGES}
    )
    assert aliased.json()["model"] == "gpt-4o"


@pytest.mark.parametrize(
    ("path", "body", "status", "param"),
    [
        ("/v1/messages/count_tokens", {"model": CLAUDE}, 400, "messages"),
        ("/v1/messages/count_tokens", {"model": CLAUDE, "messages": "hi"}, 400, "messages"),
        ("/v1/messages/count_tokens", {"messages": MESSAGES}, 400, "model"),
        ("/v1/messages/count_tokens", {"model": "auto", "messages": MESSAGES}, 400, "model"),
        ("/v1/messages/count_tokens", {"model": "dall-e-3", "messages": MESSAGES}, 400, "model"),
        ("/v1/messages/count_tokens", {"model": "nope", "messages": MESSAGES}, 404, "model"),
        ("/v1/chat/completions/count_tokens", {"model": "gpt-4o"}, 400, "messages"),
        (
            "/v1/chat/completions/count_tokens",
            {"model": "gpt-4o", "messages": [{"role": "user", "content": 5}]},
            400,
            "messages[0].content",
        ),
        (
            "/v1/chat/completions/count_tokens",
            {"model": "text-embedding-3-small", "messages": MESSAGES},
            400,
            "model",
        ),
        (
            "/v1/chat/completions/count_tokens",
            {"model": "nope", "messages": MESSAGES},
            404,
            "model",
        ),
    ],
)
def test_bad_input_in_the_callers_dialect(
    gateway: Gateway, path: str, body: dict[str, object], status: int, param: str
) -> None:
    answer = gateway.post(path, body)
    assert answer.status_code == status, answer.text
    payload = answer.json()
    if path.startswith("/v1/messages"):
        assert payload["type"] == "error"
        assert payload["error"]["type"] in ("invalid_request_error", "not_found_error")
        assert param in payload["error"]["message"]
    else:
        assert payload["error"]["param"] == param


def test_a_count_needs_a_key(gateway: Gateway) -> None:
    client = anthropic.Anthropic(base_url=gateway.url, api_key="of-wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        client.messages.count_tokens(model=CLAUDE, messages=[{"role": "user", "content": "x"}])
