"""Hypothesis properties of pricing, for every packaged model and any counts."""

from decimal import Decimal, localcontext

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oneflow_ai.billing import PricingEngine
from oneflow_ai.catalog import packaged_catalog
from oneflow_ai.domain.money import EXACT, MICRO_CREDITS_PER_USD
from oneflow_ai.domain.usage import Usage
from tests.billing.operator_catalog import operator_engine

pytestmark = pytest.mark.property

ENGINE = PricingEngine()
CATALOG = packaged_catalog()
TEXT_MODELS = [name for entry in CATALOG.by_modality("text") for name in entry.names]
IMAGE_ROWS = [
    (entry.id, row.size, row.quality)
    for entry in CATALOG.by_modality("image")
    if entry.pricing is not None
    for row in entry.pricing.per_image
]
AUDIO_MODELS = [entry.id for entry in CATALOG.by_modality("audio")]

tokens = st.integers(min_value=0, max_value=10**10)
small = st.integers(min_value=0, max_value=10**6)


def text_cost(model: str, input_tokens: int, output_tokens: int) -> int:
    return ENGINE.price(
        model, Usage(input_tokens=input_tokens, output_tokens=output_tokens)
    ).micro_credits


@given(st.sampled_from(TEXT_MODELS), tokens, tokens, small)
def test_monotone_in_each_token_count(model: str, a: int, b: int, more: int) -> None:
    base = text_cost(model, a, b)
    assert text_cost(model, a + more, b) >= base
    assert text_cost(model, a, b + more) >= base
    if more:  # every packaged text price is positive, so more tokens cost strictly more
        assert text_cost(model, a + more, b) > base
        assert text_cost(model, a, b + more) > base


@given(st.sampled_from(TEXT_MODELS), tokens, tokens, tokens, tokens)
def test_additive_across_split_requests(model: str, a1: int, b1: int, a2: int, b2: int) -> None:
    assert text_cost(model, a1 + a2, b1 + b2) == text_cost(model, a1, b1) + text_cost(model, a2, b2)


@given(st.sampled_from(TEXT_MODELS), tokens, tokens)
def test_non_negative_exact_and_credits_are_100_usd(model: str, a: int, b: int) -> None:
    cost = ENGINE.price(model, Usage(input_tokens=a, output_tokens=b))
    assert cost.micro_credits >= 0
    assert isinstance(cost.usd, Decimal) and isinstance(cost.credits, Decimal)
    with localcontext(EXACT):  # raises if any step below were inexact
        assert cost.credits == cost.usd * 100
        exact_total = sum((item.exact_usd for item in cost.line_items), Decimal(0))
        # packaged prices are whole micro-credits per token: nothing was rounded away
        assert exact_total * MICRO_CREDITS_PER_USD == cost.micro_credits
        assert cost.usd == exact_total
    assert cost.micro_credits == sum(item.micro_credits for item in cost.line_items)


@given(st.sampled_from(TEXT_MODELS), st.lists(st.tuples(small, small), max_size=20))
def test_a_days_total_is_the_sum_of_its_requests(
    model: str, requests: list[tuple[int, int]]
) -> None:
    costs = [ENGINE.estimate(model, a, b) for a, b in requests]
    day = sum(cost.micro_credits for cost in costs)
    whole = ENGINE.estimate(model, sum(a for a, _ in requests), sum(b for _, b in requests))
    assert day == whole.micro_credits
    assert sum((cost.usd for cost in costs), Decimal(0)) == whole.usd


@given(st.sampled_from(IMAGE_ROWS), st.integers(0, 1000), st.integers(0, 1000))
def test_images_monotone_additive_exact(
    row: tuple[str, str | None, str | None], n: int, m: int
) -> None:
    model, size, quality = row

    def cost(images: int) -> int:
        usage = Usage(images=images, image_size=size, image_quality=quality)
        return ENGINE.price(model, usage).micro_credits

    assert cost(n + m) == cost(n) + cost(m)
    assert cost(n + m) >= cost(n) >= 0
    priced = ENGINE.price(model, Usage(images=n, image_size=size, image_quality=quality))
    assert priced.credits == priced.usd * 100


@given(st.sampled_from(AUDIO_MODELS), st.integers(0, 10**9), st.integers(0, 10**9))
def test_characters_monotone_additive_exact(model: str, n: int, m: int) -> None:
    def cost(characters: int) -> int:
        return ENGINE.price(model, Usage(characters=characters)).micro_credits

    assert cost(n + m) == cost(n) + cost(m)
    assert cost(n + m) >= cost(n) >= 0


@given(st.sampled_from(TEXT_MODELS), tokens, st.integers(0, 10**6), st.integers(0, 10**6))
def test_max_cost_bounds_any_output_up_to_the_limit(
    model: str, a: int, limit: int, output: int
) -> None:
    reserved = ENGINE.max_cost(model, a, limit)
    entry = CATALOG.get(model)
    assert entry.max_output_tokens is not None
    actual_output = min(output, limit, entry.max_output_tokens)
    assert text_cost(model, a, actual_output) <= reserved.micro_credits


prices = st.decimals(min_value=0, max_value=1000, places=9, allow_nan=False, allow_infinity=False)


@given(prices, prices, st.integers(0, 10**7), st.integers(0, 10**7))
def test_any_operator_price_rounds_each_line_within_half_a_micro_credit(
    input_price: Decimal, output_price: Decimal, a: int, b: int
) -> None:
    cost = operator_engine(input_price, output_price).estimate("m", a, b)
    with localcontext(EXACT):
        for item in cost.line_items:
            assert item.exact_usd == Decimal(item.quantity) * item.unit_usd / item.per
            exact_micro = item.exact_usd * MICRO_CREDITS_PER_USD
            assert abs(exact_micro - item.micro_credits) <= Decimal("0.5")
        assert cost.credits == cost.usd * 100
    assert cost.micro_credits == sum(item.micro_credits for item in cost.line_items)
