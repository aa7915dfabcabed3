"""A model's prices as exact rates of micro-credits per unit, derived once per model.

A line item costs ``quantity * usd / per`` USD exactly, rounded half to even to a whole
micro-credit (:mod:`oneflow_ai.domain.money`). The same amount is ``quantity * rate /
denominator`` micro-credits, ``rate / denominator`` being the price in micro-credits per unit as
a fraction in lowest terms: the line is priced in integers, and rounded half to even by integer
division. Most prices are whole rates ($2.50 per 1M tokens is 250 micro-credits a token, and the
line is ``quantity * 250``); $0.075 per 1M tokens is 15/2.

>>> UnitPrice.of(Decimal("2.50"), 1_000_000).micro_credits(3)
750
>>> UnitPrice.of(Decimal("0.075"), 1_000_000).micro_credits(3)  # 22.5, half to even
22
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from oneflow_ai.billing.errors import PricingError
from oneflow_ai.catalog import ModelEntry, Pricing
from oneflow_ai.domain.money import MICRO_CREDITS_PER_USD

__all__ = [
    "FREE_TOKENS",
    "PER_1K_CHARACTERS",
    "PER_IMAGE",
    "PER_MINUTE",
    "PER_MTOK",
    "TokenPrices",
    "UnitPrice",
    "model_prices",
]

PER_MTOK = 1_000_000
PER_IMAGE = 1
PER_1K_CHARACTERS = 1_000
PER_MINUTE = 60  # audio_seconds, priced per minute


@dataclass(frozen=True, slots=True)
class UnitPrice:
    """``usd`` per ``per`` units: ``rate / denominator`` micro-credits per unit."""

    usd: Decimal
    per: int
    rate: int
    denominator: int = 1

    @classmethod
    def of(cls, usd: Decimal, per: int) -> UnitPrice:
        rate = Fraction(usd) * MICRO_CREDITS_PER_USD / per
        return cls(usd, per, rate.numerator, rate.denominator)

    def micro_credits(self, quantity: int) -> int:
        """``quantity`` units in micro-credits, rounded half to even (exact when whole)."""
        if self.denominator == 1:
            return quantity * self.rate
        whole, rest = divmod(quantity * self.rate, self.denominator)
        twice = 2 * rest
        if twice > self.denominator or (twice == self.denominator and whole % 2):
            return whole + 1
        return whole


@dataclass(frozen=True, slots=True)
class TokenPrices:
    """A text model's prices per 1M tokens by token class: ``plain`` input, ``cached`` input,
    ``write_5m`` and ``write_1h`` cache writes (a class without a price of its own costs the
    input price) and ``output`` (reasoning tokens cost the output price too)."""

    plain: UnitPrice
    cached: UnitPrice
    write_5m: UnitPrice
    write_1h: UnitPrice
    output: UnitPrice

    def dearest_input_class(self) -> str | None:
        """The usage field of the dearest class a prompt can be billed in, when it is dearer
        than plain input (a prompt written to the 1-hour cache costs twice the input price on
        Claude models)."""
        plain, write_5m, write_1h = self.plain.usd, self.write_5m.usd, self.write_1h.usd
        if max(plain, write_5m, write_1h) == plain:
            return None
        return "cache_write_1h_tokens" if write_1h >= write_5m else "cache_write_5m_tokens"


_FREE = UnitPrice(Decimal(0), PER_MTOK, 0)
FREE_TOKENS = TokenPrices(_FREE, _FREE, _FREE, _FREE, _FREE)


def model_prices(entry: ModelEntry, pricing: Pricing) -> TokenPrices | UnitPrice | None:
    """``entry``'s prices for its modality (``None`` for images: their price depends on the
    request's size and quality). Raises :class:`PricingError` when one is missing."""
    if entry.modality == "text":
        plain = _price(pricing.input_per_mtok)

        def of(value: Decimal | None) -> UnitPrice:
            return UnitPrice.of(plain if value is None else value, PER_MTOK)

        return TokenPrices(
            of(None),
            of(pricing.cached_input_per_mtok),
            of(pricing.cache_write_5m_per_mtok),
            of(pricing.cache_write_1h_per_mtok),
            UnitPrice.of(_price(pricing.output_per_mtok), PER_MTOK),
        )
    if entry.modality == "embedding":
        return UnitPrice.of(_price(pricing.input_per_mtok), PER_MTOK)
    if entry.modality == "transcription":
        return UnitPrice.of(_price(pricing.per_minute), PER_MINUTE)
    if entry.modality == "audio":
        return UnitPrice.of(_price(pricing.per_1k_characters), PER_1K_CHARACTERS)
    return None


def _price(value: Decimal | None) -> Decimal:
    if value is None:  # the catalog schema makes this unreachable for a valid entry
        raise PricingError("catalog entry lacks a price for its modality")
    return value
