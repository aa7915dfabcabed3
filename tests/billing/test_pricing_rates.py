"""Integer rates price exactly what the Decimal rule does: every packaged model, every kind of
line, zero and huge counts, and operator prices finer than a micro-credit per unit."""

from __future__ import annotations

from decimal import Decimal, Inexact, localcontext
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oneflow_ai.billing import PricingEngine
from oneflow_ai.billing.cost import Cost
from oneflow_ai.billing.rates import TokenPrices, UnitPrice
from oneflow_ai.catalog import ModelEntry, packaged_catalog
from oneflow_ai.domain.money import EXACT, MICRO_CREDITS_PER_USD, usd_to_micro_credits
from oneflow_ai.domain.usage import Usage
from tests.billing.operator_catalog import operator_engine

CATALOG = packaged_catalog()
ENGINE = PricingEngine(CATALOG)
PRICED = [m for m in CATALOG if m.enabled and m.pricing is not None and not m.free]
COUNTS = (0, 1, 7, 999_999, 1_000_001, 10**12, 10**40)


def by_decimal(cost: Cost) -> list[tuple[str, int, tuple[object, ...], int]]:
    """Each line of ``cost`` priced the Decimal way: exact amount, rounded half to even."""
    lines = []
    for item in cost.line_items:
        with localcontext(EXACT):
            exact = Decimal(item.quantity) * item.unit_usd / item.per
        lines.append((item.kind, item.quantity, exact.as_tuple(), usd_to_micro_credits(exact)))
    return lines


def by_engine(cost: Cost) -> list[tuple[str, int, tuple[object, ...], int]]:
    return [
        (item.kind, item.quantity, item.exact_usd.as_tuple(), item.micro_credits)
        for item in cost.line_items
    ]


def usages(entry: ModelEntry) -> list[Usage]:
    """Usages that exercise each line ``entry`` can bill."""
    if entry.modality == "text":
        found = [Usage(input_tokens=n, output_tokens=n) for n in COUNTS]
        found += [
            Usage.of_tokens(
                n + 10, n + 3, cached_input_tokens=n, cache_write_5m_tokens=3, reasoning_tokens=n
            )
            for n in COUNTS
        ]
        found.append(Usage.of_tokens(10**9, 5, cache_write_1h_tokens=10**9 - 1))
        return found
    if entry.modality == "image":
        assert entry.pricing is not None
        return [
            Usage(images=n, image_size=row.size, image_quality=row.quality)
            for row in entry.pricing.per_image
            for n in (0, 1, 10, 10**30)
        ]
    if entry.modality == "embedding":
        return [Usage(input_tokens=n) for n in COUNTS]
    if entry.modality == "transcription":
        return [Usage(audio_seconds=n) for n in COUNTS]
    return [Usage(characters=n) for n in COUNTS]


@pytest.mark.parametrize("entry", PRICED, ids=lambda entry: entry.id)
def test_every_packaged_model_prices_as_the_decimal_rule(entry: ModelEntry) -> None:
    for usage in usages(entry):
        cost = ENGINE.price(entry.id, usage)
        assert by_engine(cost) == by_decimal(cost)
        assert cost.micro_credits == sum(line[3] for line in by_decimal(cost))
    worst = ENGINE.max_cost(entry.id, 1234, cache_writes=True)
    assert by_engine(worst) == by_decimal(worst)


def test_every_packaged_rate_is_its_price_in_micro_credits() -> None:
    for entry in PRICED:
        assert entry.pricing is not None
        prices = ENGINE._model_prices(entry, entry.pricing)
        units = [prices] if isinstance(prices, UnitPrice) else []
        if isinstance(prices, TokenPrices):
            units = [prices.plain, prices.cached, prices.write_5m, prices.write_1h, prices.output]
        rows = entry.pricing.per_image
        units += [UnitPrice.of(row.usd, 1) for row in rows]
        for unit in units:
            exact = Fraction(unit.usd) * MICRO_CREDITS_PER_USD / unit.per
            assert Fraction(unit.rate, unit.denominator) == exact, entry.id


def test_a_count_too_long_to_be_exact_raises_as_before() -> None:
    with pytest.raises(Inexact):
        ENGINE.estimate("gpt-4o", 10**70 + 1, 0)
    with localcontext(EXACT), pytest.raises(Inexact):
        Decimal(10**70 + 1) * Decimal("2.50") / 1_000_000


prices = st.decimals(min_value=0, max_value=1000, places=9, allow_nan=False, allow_infinity=False)
counts = st.integers(0, 10**12)


@given(prices, prices, prices, counts, counts, counts)
def test_any_operator_price_is_priced_as_the_decimal_rule(
    input_price: Decimal, output_price: Decimal, cached_price: Decimal, a: int, b: int, c: int
) -> None:
    engine = operator_engine(input_price, output_price, cached_input_per_mtok=cached_price)
    cost = engine.price("m", Usage.of_tokens(a + c, b, cached_input_tokens=c))
    assert by_engine(cost) == by_decimal(cost)


def rate(usd: str, per: int) -> tuple[int, int]:
    price = UnitPrice.of(Decimal(usd), per)
    return price.rate, price.denominator


def test_rates_are_micro_credits_per_unit_in_lowest_terms() -> None:
    assert rate("2.50", 1_000_000) == (250, 1)
    assert rate("0.075", 1_000_000) == (15, 2)
    assert rate("0.003", 1_000_000) == (3, 10)
    assert rate("0.006", 60) == (10_000, 1)
    assert rate("0.01", 60) == (50_000, 3)
    assert rate("0.040", 1) == (4_000_000, 1)
    assert rate("0", 1_000_000) == (0, 1)


@pytest.mark.parametrize(
    ("quantity", "expected"), [(0, 0), (1, 0), (5, 2), (15, 4), (25, 8), (35, 10), (45, 14)]
)
def test_a_fractional_rate_rounds_half_to_even(quantity: int, expected: int) -> None:
    """3/10 of a micro-credit a token: 1.5 -> 2, 4.5 -> 4, 7.5 -> 8, 10.5 -> 10, 13.5 -> 14."""
    assert UnitPrice.of(Decimal("0.003"), 1_000_000).micro_credits(quantity) == expected
    cost = operator_engine("0.003", "0.003").estimate("m", 0, quantity)
    assert cost.micro_credits == expected
