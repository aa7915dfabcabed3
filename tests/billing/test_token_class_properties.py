"""Hypothesis properties of the token classes: no class billed twice or dropped, the total is
the sum of the classes, and a provider's report survives translation into the other dialect."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oneflow_ai.api.anthropic_messages import anthropic_usage_body
from oneflow_ai.api.openai_chat import usage_body
from oneflow_ai.billing import PricingEngine
from oneflow_ai.catalog import packaged_catalog
from oneflow_ai.domain.usage import Usage
from oneflow_ai.providers.usage_fields import anthropic_usage, openai_usage

pytestmark = pytest.mark.property

ENGINE = PricingEngine()
TEXT = packaged_catalog().by_modality("text")
counts = st.integers(min_value=0, max_value=10**9)

CLASS_OF_LINE = {
    "input": "uncached_input_tokens",
    "cached_input": "cached_input_tokens",
    "cache_write_5m": "cache_write_5m_tokens",
    "cache_write_1h": "cache_write_1h_tokens",
    "reasoning": "reasoning_tokens",
}


@st.composite
def usages(draw: st.DrawFn) -> Usage:
    """Any text usage whose classes fit their totals."""
    cached, five, hour, plain = draw(counts), draw(counts), draw(counts), draw(counts)
    reasoning, visible = draw(counts), draw(counts)
    return Usage(
        input_tokens=plain + cached + five + hour,
        output_tokens=visible + reasoning,
        cached_input_tokens=cached,
        cache_write_5m_tokens=five,
        cache_write_1h_tokens=hour,
        reasoning_tokens=reasoning,
    )


@given(st.sampled_from(TEXT), usages())
def test_every_token_is_billed_once_in_its_class(entry: object, usage: Usage) -> None:
    from oneflow_ai.catalog import ModelEntry

    assert isinstance(entry, ModelEntry) and entry.pricing is not None
    cost = ENGINE.price(entry.id, usage)
    kinds = [item.kind for item in cost.line_items]
    assert len(kinds) == len(set(kinds))  # no class twice
    by_kind = {item.kind: item for item in cost.line_items}
    # Every token in exactly one line: the lines' quantities add up to the totals.
    assert sum(i.quantity for i in cost.line_items) == usage.input_tokens + usage.output_tokens
    for kind, name in CLASS_OF_LINE.items():
        quantity = by_kind[kind].quantity if kind in by_kind else 0
        assert quantity == getattr(usage, name), kind  # none dropped
    output = by_kind["output"].quantity + (
        by_kind["reasoning"].quantity if "reasoning" in by_kind else 0
    )
    assert output == usage.output_tokens
    # The total is the sum of the classes, each at its price, rounded once.
    assert cost.micro_credits == sum(i.micro_credits for i in cost.line_items)
    pricing = entry.pricing
    plain = pricing.input_per_mtok
    assert plain is not None and pricing.output_per_mtok is not None
    prices = {
        "input": plain,
        "cached_input": pricing.cached_input_per_mtok or plain,
        "cache_write_5m": pricing.cache_write_5m_per_mtok or plain,
        "cache_write_1h": pricing.cache_write_1h_per_mtok or plain,
        "output": pricing.output_per_mtok,
        "reasoning": pricing.output_per_mtok,
    }
    for item in cost.line_items:
        expected = (Decimal(item.quantity) * prices[item.kind] * 100).quantize(
            Decimal(1), ROUND_HALF_EVEN
        )
        assert item.micro_credits == int(expected), item.kind


@given(usages(), usages())
def test_the_parts_of_a_stream_add_up_class_by_class(a: Usage, b: Usage) -> None:
    total = a + b
    for name in ("cached_input_tokens", "cache_write_5m_tokens", "reasoning_tokens"):
        assert getattr(total, name) == getattr(a, name) + getattr(b, name)
    assert total.uncached_input_tokens == a.uncached_input_tokens + b.uncached_input_tokens


@given(usages())
def test_anthropic_shape_round_trips(usage: Usage) -> None:
    no_reasoning = Usage.of_tokens(
        usage.input_tokens,
        usage.output_tokens,
        cached_input_tokens=usage.cached_input_tokens,
        cache_write_5m_tokens=usage.cache_write_5m_tokens,
        cache_write_1h_tokens=usage.cache_write_1h_tokens,
    )
    assert anthropic_usage(anthropic_usage_body(usage)) == no_reasoning


@given(usages())
def test_openai_shape_round_trips_with_writes_as_plain_input(usage: Usage) -> None:
    back = openai_usage(usage_body(usage))
    assert (back.input_tokens, back.output_tokens) == (usage.input_tokens, usage.output_tokens)
    assert back.cached_input_tokens == usage.cached_input_tokens
    assert back.reasoning_tokens == usage.reasoning_tokens


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**12), 10**12) | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=30), inner, max_size=4)
    ),
    max_leaves=12,
)
usage_keys = st.sampled_from(
    [
        "prompt_tokens",
        "completion_tokens",
        "input_tokens",
        "output_tokens",
        "cache_read_input_tokens",
        "cache_creation_input_tokens",
        "prompt_tokens_details",
        "completion_tokens_details",
        "cache_creation",
        "surprise_tokens",
    ]
)


@given(st.dictionaries(usage_keys, json_values | counts, max_size=8))
def test_any_reported_usage_is_read_without_error_and_fits(report: dict[str, object]) -> None:
    for read in (openai_usage, anthropic_usage):
        usage = read(report)
        assert usage.prompt_cache_tokens <= usage.input_tokens
        assert usage.reasoning_tokens <= usage.output_tokens
