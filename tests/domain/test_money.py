from decimal import Decimal, Inexact, localcontext

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oneflow_ai.domain.money import (
    CREDITS_PER_USD,
    EXACT,
    MICRO_CREDITS_PER_CREDIT,
    MICRO_CREDITS_PER_USD,
    as_decimal,
    credits_to_usd,
    micro_credits_to_credits,
    micro_credits_to_usd,
    usd_to_credits,
    usd_to_micro_credits,
)


def test_units() -> None:
    assert CREDITS_PER_USD == 100
    assert MICRO_CREDITS_PER_CREDIT == 1_000_000
    assert MICRO_CREDITS_PER_USD == 100_000_000


@pytest.mark.parametrize("bad", [0.1, 1.0, True, None, [1]])
def test_as_decimal_refuses_floats_and_non_numbers(bad: object) -> None:
    with pytest.raises(TypeError):
        as_decimal(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["NaN", "Infinity", "-inf", "abc", ""])
def test_as_decimal_refuses_non_finite_and_malformed(bad: str) -> None:
    with pytest.raises(ValueError):
        as_decimal(bad)


def test_as_decimal_accepts_exact_inputs() -> None:
    assert as_decimal("2.50") == Decimal("2.5")
    assert as_decimal(" 0.075 ") == Decimal("0.075")
    assert as_decimal(3) == Decimal(3)
    assert as_decimal(Decimal("1E-8")) == Decimal("0.00000001")


def test_usd_credit_conversions_are_exact() -> None:
    assert usd_to_credits("0.075") == Decimal("7.5")
    assert credits_to_usd("7.5") == Decimal("0.075")
    assert usd_to_credits("0.00000001") == Decimal("0.000001")
    with pytest.raises(TypeError):
        usd_to_credits(0.075)  # type: ignore[arg-type]


def test_usd_to_micro_credits_whole_amounts() -> None:
    assert usd_to_micro_credits("0.075") == 7_500_000
    assert usd_to_micro_credits("1") == 100_000_000
    assert usd_to_micro_credits("0") == 0


@pytest.mark.parametrize(
    ("usd", "micro"),
    [
        ("0.000000005", 0),  # half -> even (0)
        ("0.000000015", 2),  # half -> even (2)
        ("0.000000025", 2),  # half -> even (2)
        ("0.0000000051", 1),  # above half -> up
        ("0.0000000049", 0),  # below half -> down
        ("-0.000000015", -2),
    ],
)
def test_rounding_rule_is_half_even_to_the_micro_credit(usd: str, micro: int) -> None:
    assert usd_to_micro_credits(usd) == micro


def test_micro_credits_back_to_usd_and_credits() -> None:
    assert micro_credits_to_usd(7_500_000) == Decimal("0.075")
    assert str(micro_credits_to_usd(7_500_000)) == "0.07500000"
    assert micro_credits_to_credits(7_500_000) == Decimal("7.5")
    assert str(micro_credits_to_credits(7_500_000)) == "7.500000"
    assert micro_credits_to_usd(-1) == Decimal("-0.00000001")
    with pytest.raises(TypeError):
        micro_credits_to_usd(1.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        micro_credits_to_credits(True)


def test_exact_context_traps_inexact_results() -> None:
    with localcontext(EXACT), pytest.raises(Inexact):
        Decimal(1) / Decimal(3)


@pytest.mark.property
@given(st.integers(min_value=-(10**30), max_value=10**30))
def test_micro_credit_round_trip(micro: int) -> None:
    usd = micro_credits_to_usd(micro)
    assert usd_to_micro_credits(usd) == micro
    assert micro_credits_to_credits(micro) == usd_to_credits(usd)
    with localcontext(EXACT):  # the default 28-digit context would round huge amounts
        assert micro_credits_to_credits(micro) == usd * 100
