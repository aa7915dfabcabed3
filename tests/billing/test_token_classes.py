"""Pricing of the token classes: line items, prices by class, worst cases with cache writes."""

from __future__ import annotations

from decimal import Decimal

import pytest

from oneflow_ai.billing import PricingEngine
from oneflow_ai.domain.chat import ChatRequest, Message, TextPart
from oneflow_ai.domain.usage import Usage
from oneflow_ai.gateway.ledger_hook import asks_cache_writes

ENGINE = PricingEngine()


def test_openai_cached_input_at_its_price_and_reasoning_within_output() -> None:
    usage = Usage(
        input_tokens=10_000, output_tokens=2_000, cached_input_tokens=8_000, reasoning_tokens=1_500
    )
    cost = ENGINE.price("o4-mini", usage)  # 1.10 input, 0.275 cached, 4.40 output
    lines = {item.kind: (item.quantity, item.usd) for item in cost.line_items}
    assert lines == {
        "input": (2_000, Decimal("0.0022")),
        "cached_input": (8_000, Decimal("0.0022")),
        "output": (500, Decimal("0.0022")),
        "reasoning": (1_500, Decimal("0.0066")),
    }
    assert cost.usd == Decimal("0.0132")
    # Without the classes the same tokens would cost more (cached input is cheaper).
    plain = ENGINE.price("o4-mini", Usage(input_tokens=10_000, output_tokens=2_000))
    assert plain.usd == Decimal("0.0198")


def test_a_class_without_a_price_of_its_own_costs_the_input_price() -> None:
    usage = Usage(input_tokens=1_000, output_tokens=0, cache_write_5m_tokens=1_000)
    cost = ENGINE.price("gpt-4o", usage)  # no cache-write price: 2.50 like its input
    assert cost.line("cache_write_5m") is not None
    assert cost.usd == Decimal("0.0025")


def test_usage_refuses_classes_beyond_their_totals() -> None:
    with pytest.raises(ValueError, match="exceed input_tokens"):
        Usage(input_tokens=5, cached_input_tokens=4, cache_write_1h_tokens=2)
    with pytest.raises(ValueError, match="reasoning_tokens exceed"):
        Usage(output_tokens=1, reasoning_tokens=2)
    assert Usage.of_tokens(5, 1, cached_input_tokens=4, cache_write_1h_tokens=2) == Usage(
        input_tokens=5, output_tokens=1, cached_input_tokens=4, cache_write_1h_tokens=1
    )


def _anthropic(body: dict[str, object]) -> ChatRequest:
    return ChatRequest(
        model="claude-sonnet-4-5",
        messages=[Message("user", [TextPart("hi")])],
        raw=body,
        raw_dialect="anthropic",
    )


def test_the_worst_case_counts_cache_writes_only_when_the_body_asks_for_them() -> None:
    plain = ENGINE.max_cost("claude-sonnet-4-5", 1_000, 100)
    writing = ENGINE.max_cost("claude-sonnet-4-5", 1_000, 100, cache_writes=True)
    assert plain.usd == Decimal("0.0045")  # 1,000 x 3.00 + 100 x 15.00
    assert writing.usd == Decimal("0.0075")  # 1,000 x 6.00 (1-hour writes) + 100 x 15.00
    cached = {
        "messages": [
            {
                "role": "user",
                "content": [{"type": "text", "text": "x", "cache_control": {"type": "ephemeral"}}],
            }
        ]
    }
    assert asks_cache_writes(_anthropic(cached))
    assert not asks_cache_writes(_anthropic({"messages": [{"role": "user", "content": "x"}]}))
