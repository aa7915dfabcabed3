"""Today's catalog models through the official SDKs in both dialects, `models.retrieve`, and
reasoning settings (OpenAI `reasoning_effort`, Anthropic `thinking`) reaching the models that
take them, mapped across dialects, with thinking blocks and their signatures kept across turns.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import anthropic
import openai
import pytest

from oneflow_ai.billing.pricing import PricingEngine
from oneflow_ai.catalog import packaged_catalog
from oneflow_ai.domain.usage import Usage
from tests.integration.conftest import Gateway

CATALOG = packaged_catalog()
TODAY = datetime.now(UTC).date()
NEW_TEXT = [
    m for m in CATALOG.by_modality("text") if m.price_source != "seed" and not m.retired(TODAY)
]
PROMPT = [{"role": "user", "content": "Name a colour"}]


@pytest.mark.parametrize("entry", NEW_TEXT, ids=lambda e: e.id)
def test_every_new_text_model_answers_through_both_sdks(gateway: Gateway, entry: object) -> None:
    from oneflow_ai.catalog import ModelEntry

    assert isinstance(entry, ModelEntry)
    name = entry.aliases[0] if entry.aliases else entry.id
    raw = gateway.openai().chat.completions.with_raw_response.create(
        model=name,
        messages=PROMPT,
        max_completion_tokens=40,  # type: ignore[arg-type]
    )
    completion = raw.parse()
    assert completion.choices[0].message.content
    assert raw.headers["x-oneflow-model"] == entry.id
    usage = completion.usage
    assert usage is not None
    reasoning = (
        (usage.completion_tokens_details.reasoning_tokens or 0)
        if usage.completion_tokens_details
        else 0
    )
    cached = (usage.prompt_tokens_details.cached_tokens or 0) if usage.prompt_tokens_details else 0
    priced = PricingEngine().price(
        entry.id,
        Usage(
            input_tokens=usage.prompt_tokens,
            output_tokens=usage.completion_tokens,
            cached_input_tokens=cached,
            reasoning_tokens=reasoning,
        ),
    )
    assert Decimal(raw.headers["x-oneflow-credits"]) == priced.credits

    message = gateway.anthropic().messages.create(
        model=name,
        max_tokens=40,
        messages=PROMPT,  # type: ignore[arg-type]
    )
    assert message.content and message.content[0].type == "text"
    assert message.usage.output_tokens > 0


def test_models_retrieve_answers_for_every_id_and_alias(gateway: Gateway) -> None:
    client = gateway.openai()
    listed = {model.id for model in client.models.list()}
    for entry in CATALOG.models:
        if entry.retired(TODAY):
            assert entry.id not in listed
            continue
        for name in entry.names:
            model = client.models.retrieve(name)
            assert (model.id, model.object, model.owned_by) == (name, "model", entry.provider)
            assert model.model_extra is not None and model.model_extra["root"] == entry.id
        assert entry.id in listed
    sonnet = client.models.retrieve("claude-sonnet-5-5").model_extra
    assert sonnet is not None
    assert sonnet["pricing"]["cache_write_1h"] == "4.00" and sonnet["reasoning"] is True
    opus = client.models.retrieve("claude-opus-4-5").model_extra
    assert opus is not None
    assert (opus["retires_on"], opus["replacement"]) == ("2027-01-22", "claude-opus-5-5")
    assert client.models.retrieve("auto").owned_by == "oneflow"
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("gpt-99")
    error = caught.value.body
    assert isinstance(error, dict) and error["code"] == "model_not_found"


def test_reasoning_effort_reaches_openai_reasoning_models_only(gateway: Gateway) -> None:
    client = gateway.openai()
    tokens = {}
    for effort in ("low", "high"):
        answer = client.chat.completions.create(
            model="o4-mini",
            messages=PROMPT,
            reasoning_effort=effort,  # type: ignore[arg-type]
        )
        assert answer.usage is not None and answer.usage.completion_tokens_details is not None
        tokens[effort] = answer.usage.completion_tokens_details.reasoning_tokens
    assert tokens == {"low": 32, "high": 256}  # the fake's tokens by effort
    assert gateway.fakes.calls("openai")[-1].body["reasoning_effort"] == "high"
    # In its own dialect the body goes as written: the provider judges a model that does
    # not reason (and refuses it, as OpenAI does).
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model="gpt-4.1",
            messages=PROMPT,
            reasoning_effort="high",  # type: ignore[arg-type]
        )
    assert gateway.fakes.calls("openai")[-1].body["reasoning_effort"] == "high"
    # From the other dialect it is left out for such a model, and named.
    named = gateway.anthropic().messages.with_raw_response.create(
        model="gpt-4.1",
        max_tokens=3000,
        messages=PROMPT,  # type: ignore[arg-type]
        thinking={"type": "enabled", "budget_tokens": 1024},
    )
    assert named.parse().content[0].type == "text"
    assert named.headers["x-oneflow-ignored-params"] == "thinking"
    sent = gateway.fakes.calls("openai")[-1].body
    assert "reasoning_effort" not in sent and sent["max_tokens"] == 3000
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="o3",
            messages=PROMPT,
            reasoning_effort="enormous",  # type: ignore[arg-type]
        )
    assert caught.value.status_code == 400


def test_a_retired_model_is_a_404_naming_its_replacement(gateway: Gateway) -> None:
    """Claude Sonnet 4.5 reached its end of life on 2026-11-30 (the catalog's
    anthropic-sdk-deprecations source): both SDKs get a NotFoundError that says what to use."""
    with pytest.raises(openai.NotFoundError) as caught:
        gateway.openai().chat.completions.create(model="claude-sonnet-4-5", messages=PROMPT)
    assert "retired by its provider on 2026-11-30" in caught.value.message
    assert "claude-sonnet-5-5" in caught.value.message
    assert caught.value.code == "model_retired"
    with pytest.raises(anthropic.NotFoundError) as refused:
        gateway.anthropic().messages.create(
            model="claude-sonnet-4-5-20250929",
            max_tokens=50,
            messages=PROMPT,  # type: ignore[arg-type]
        )
    assert "claude-sonnet-5-5" in str(refused.value)
    with pytest.raises(openai.NotFoundError):
        gateway.openai().models.retrieve("claude-sonnet-4-5")
    assert not [call for call in gateway.fakes.calls("anthropic") if "4-5" in str(call.body)]


def test_reasoning_effort_becomes_a_thinking_budget_on_claude(gateway: Gateway) -> None:
    answer = gateway.openai().chat.completions.create(
        model="claude-sonnet-5-5",
        messages=PROMPT,
        reasoning_effort="medium",  # type: ignore[arg-type]
        max_completion_tokens=8000,
    )
    assert answer.choices[0].message.content
    sent = gateway.fakes.calls("anthropic")[-1].body
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 4096}


def test_a_thinking_budget_becomes_a_reasoning_effort_on_openai(gateway: Gateway) -> None:
    message = gateway.anthropic().messages.create(
        model="o3",
        max_tokens=20000,
        messages=PROMPT,  # type: ignore[arg-type]
        thinking={"type": "enabled", "budget_tokens": 16384},
    )
    assert message.content[0].type == "text"
    sent = gateway.fakes.calls("openai")[-1].body
    assert sent["reasoning_effort"] == "high" and sent["max_completion_tokens"] == 20000
    assert "max_tokens" not in sent


@pytest.mark.parametrize("stream", [False, True])
def test_thinking_blocks_and_signatures_survive_across_turns(
    gateway: Gateway, stream: bool
) -> None:
    client = gateway.anthropic()
    ask: dict[str, object] = {
        "model": "claude-sonnet-5-5",
        "max_tokens": 4000,
        "thinking": {"type": "enabled", "budget_tokens": 2048},
    }
    first_turn = [{"role": "user", "content": "What is the weather like?"}]
    if stream:
        with client.messages.stream(messages=first_turn, **ask) as events:  # type: ignore[arg-type]
            first = events.get_final_message()
    else:
        first = client.messages.create(messages=first_turn, **ask)  # type: ignore[arg-type]
    thinking = first.content[0]
    assert thinking.type == "thinking" and thinking.signature and thinking.thinking
    history = [
        *first_turn,
        {"role": "assistant", "content": [block.model_dump() for block in first.content]},
        {"role": "user", "content": "And tomorrow?"},
    ]
    second = client.messages.create(messages=history, **ask)  # type: ignore[arg-type]
    assert [block.type for block in second.content] == ["thinking", "text"]
    # The fake refuses a thinking block whose text no longer matches its signature.
    altered = [*history]
    altered[1] = {
        "role": "assistant",
        "content": [{**first.content[0].model_dump(), "thinking": "something else"}],
    }
    with pytest.raises(anthropic.BadRequestError):
        client.messages.create(messages=altered, **ask)  # type: ignore[arg-type]


def test_an_unknown_usage_field_is_not_billed_and_never_an_error(gateway: Gateway) -> None:
    marked = [{"role": "user", "content": "[fake-usage cached=2 extra.surprise_tokens=7] hi"}]
    raw = gateway.openai().chat.completions.with_raw_response.create(
        model="gpt-4.1-mini",
        messages=marked,
        max_tokens=20,  # type: ignore[arg-type]
    )
    completion = raw.parse()
    assert completion.usage is not None
    assert completion.usage.model_extra == {"surprise_tokens": 7}  # forwarded as written
    usage = Usage(
        input_tokens=completion.usage.prompt_tokens,
        output_tokens=completion.usage.completion_tokens,
        cached_input_tokens=2,
    )
    expected = PricingEngine().price("gpt-4.1-mini", usage).credits
    assert Decimal(raw.headers["x-oneflow-credits"]) == expected
    streamed = gateway.anthropic().messages.create(
        model="gpt-4.1-mini",
        max_tokens=20,
        messages=marked,
        stream=True,  # type: ignore[arg-type]
    )
    assert [event.type for event in streamed][-1] == "message_stop"
