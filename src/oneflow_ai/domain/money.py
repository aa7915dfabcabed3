"""Exact money: USD, credits and micro-credits.

Units
    1 USD    = 100 credits
    1 credit = 1_000_000 micro-credits
    1 USD    = 100_000_000 micro-credits

Amounts are computed in :class:`~decimal.Decimal` and stored as whole micro-credits (``int``).
Floats are refused everywhere: every constructor and conversion here raises ``TypeError`` when
given a ``float`` (or a ``bool``), because a float cannot hold a price such as 0.1 exactly.

Rounding rule
    Arithmetic on prices (unit price x quantity, per-million and per-thousand scaling) is done
    exactly: it runs in :data:`EXACT` (60 significant digits, ``Inexact`` trapped), so it either
    gives the exact result or raises. The only rounding in OneFlow happens once per line item,
    when its exact USD amount is converted to micro-credits with :func:`usd_to_micro_credits`:
    **round half to even** (banker's rounding, ``ROUND_HALF_EVEN``) to the nearest micro-credit
    (1e-8 USD). A request's total is the sum of its rounded line items, and a day's total is the
    sum of its requests, so every total adds up exactly in integers.

    Most packaged prices are a whole number of micro-credits per unit, so most lines are never
    actually rounded; the rule matters for the few finer ones (cached input at $0.075 per 1M
    tokens is 7.5 micro-credits a token) and for operator prices.
"""

from __future__ import annotations

from decimal import (
    ROUND_HALF_EVEN,
    Context,
    Decimal,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
    localcontext,
)
from typing import Final

__all__ = [
    "CREDITS_PER_USD",
    "EXACT",
    "MICRO_CREDITS_PER_CREDIT",
    "MICRO_CREDITS_PER_USD",
    "as_decimal",
    "credits_to_usd",
    "micro_credits_to_credits",
    "micro_credits_to_usd",
    "usd_to_credits",
    "usd_to_micro_credits",
]

CREDITS_PER_USD: Final = 100
MICRO_CREDITS_PER_CREDIT: Final = 1_000_000
MICRO_CREDITS_PER_USD: Final = CREDITS_PER_USD * MICRO_CREDITS_PER_CREDIT

#: Decimal context for money arithmetic that must be exact: inexact results raise ``Inexact``.
EXACT: Final = Context(
    prec=60,
    rounding=ROUND_HALF_EVEN,
    traps=[InvalidOperation, DivisionByZero, Overflow, Inexact],
)

_ROUNDING: Final = Context(
    prec=60, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, DivisionByZero, Overflow]
)
_MICRO_CREDITS_PER_USD: Final = Decimal(MICRO_CREDITS_PER_USD)
_USD_SCALE: Final = 8  # 1 micro-credit = 1e-8 USD
_CREDIT_SCALE: Final = 6  # 1 micro-credit = 1e-6 credit


def as_decimal(value: Decimal | int | str) -> Decimal:
    """Return ``value`` as a finite ``Decimal``.

    Accepts ``Decimal``, ``int`` and decimal strings (``"2.50"``). Refuses ``float`` and
    ``bool`` with ``TypeError`` and non-finite or malformed values with ``ValueError``.
    """
    if isinstance(value, bool) or not isinstance(value, Decimal | int | str):
        raise TypeError(
            f"money must be Decimal, int or a decimal string, not {type(value).__name__}"
        )
    try:
        result = Decimal(value.strip()) if isinstance(value, str) else Decimal(value)
    except InvalidOperation:
        raise ValueError(f"not a decimal number: {value!r}") from None
    if not result.is_finite():
        raise ValueError(f"money must be finite, got {value!r}")
    return result


def usd_to_credits(usd: Decimal | int | str) -> Decimal:
    """Convert USD to credits exactly (x100)."""
    with localcontext(EXACT):
        return as_decimal(usd) * CREDITS_PER_USD


def credits_to_usd(credits: Decimal | int | str) -> Decimal:
    """Convert credits to USD exactly (/100)."""
    with localcontext(EXACT):
        return as_decimal(credits) / CREDITS_PER_USD


def usd_to_micro_credits(usd: Decimal | int | str) -> int:
    """Convert a USD amount to whole micro-credits, rounding half to even (the rounding rule)."""
    scaled = _ROUNDING.multiply(as_decimal(usd), _MICRO_CREDITS_PER_USD)
    return int(scaled.to_integral_value(rounding=ROUND_HALF_EVEN, context=_ROUNDING))


def micro_credits_to_usd(micro_credits: int) -> Decimal:
    """Exact USD value of whole micro-credits, with 8 decimal places."""
    return _scaled(micro_credits, _USD_SCALE)


def micro_credits_to_credits(micro_credits: int) -> Decimal:
    """Exact credit value of whole micro-credits, with 6 decimal places."""
    return _scaled(micro_credits, _CREDIT_SCALE)


def _scaled(micro_credits: int, places: int) -> Decimal:
    if isinstance(micro_credits, bool) or not isinstance(micro_credits, int):
        raise TypeError(f"micro-credits must be int, not {type(micro_credits).__name__}")
    return Decimal(f"{micro_credits:d}E-{places}")  # its digits, the last `places` decimals
