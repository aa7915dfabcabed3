"""The product description's worked example and pricing table, as tests."""

from decimal import ROUND_HALF_UP, Decimal

import pytest

from oneflow_ai import PricingEngine


@pytest.fixture(scope="module")
def engine() -> PricingEngine:
    return PricingEngine()


def test_seed_worked_example(engine: PricingEngine) -> None:
    # GPT-4: 1500 input + 500 output tokens
    cost = engine.calculate_cost("gpt-4", 1500, 500)
    line_in, line_out = cost.line("input"), cost.line("output")
    assert line_in is not None and line_out is not None
    assert line_in.exact_usd == Decimal("0.045")  # (1500 / 1_000_000) * 30.00
    assert line_out.exact_usd == Decimal("0.030")  # (500 / 1_000_000) * 60.00
    assert cost.usd == Decimal("0.075")  # total_usd
    assert cost.credits == Decimal("7.5")  # 0.075 * 100
    assert cost.micro_credits == 7_500_000
    assert isinstance(cost.usd, Decimal) and isinstance(cost.credits, Decimal)


def test_seed_worked_example_through_the_general_api(engine: PricingEngine) -> None:
    from oneflow_ai.domain.usage import Usage

    cost = engine.price("gpt-4", Usage(input_tokens=1500, output_tokens=500))
    assert (cost.usd, cost.credits, cost.estimated) == (Decimal("0.075"), Decimal("7.5"), False)


# model, USD per 1M input, USD per 1M output, "Credits/1K tokens" column as printed in the seed
SEED_TABLE = [
    ("gpt-4o", "2.50", "10.00", "0.25", "1.00"),
    ("gpt-4-turbo", "10.00", "30.00", "1.00", "3.00"),
    ("gpt-4", "30.00", "60.00", "3.00", "6.00"),
    ("gpt-3.5-turbo", "0.50", "1.50", "0.05", "0.15"),
    ("claude-3-opus", "15.00", "75.00", "1.50", "7.50"),
    ("claude-3-sonnet", "3.00", "15.00", "0.30", "1.50"),
    ("claude-3-haiku", "0.25", "1.25", "0.03", "0.13"),
]


@pytest.mark.parametrize(
    ("model", "usd_in", "usd_out", "credits_in_1k", "credits_out_1k"), SEED_TABLE
)
def test_seed_table_row(
    engine: PricingEngine,
    model: str,
    usd_in: str,
    usd_out: str,
    credits_in_1k: str,
    credits_out_1k: str,
) -> None:
    one_million_in = engine.calculate_cost(model, 1_000_000, 0)
    one_million_out = engine.calculate_cost(model, 0, 1_000_000)
    assert one_million_in.usd == Decimal(usd_in)
    assert one_million_out.usd == Decimal(usd_out)

    # Credits per 1K tokens, exactly: USD per 1M / 1000 * 100.
    per_1k_in = engine.calculate_cost(model, 1_000, 0).credits
    per_1k_out = engine.calculate_cost(model, 0, 1_000).credits
    assert per_1k_in == Decimal(usd_in) / 10
    assert per_1k_out == Decimal(usd_out) / 10
    # The seed prints them to two places (Haiku's 0.025 / 0.125 as 0.03 / 0.13).
    cents = Decimal("0.01")
    assert per_1k_in.quantize(cents, ROUND_HALF_UP) == Decimal(credits_in_1k)
    assert per_1k_out.quantize(cents, ROUND_HALF_UP) == Decimal(credits_out_1k)
