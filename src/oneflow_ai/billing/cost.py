"""The priced result of one request: line items and their exact total."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Literal

from oneflow_ai.domain.money import (
    micro_credits_to_credits,
    micro_credits_to_usd,
    usd_to_micro_credits,
)

__all__ = ["Cost", "LineItem", "LineKind", "fraction_of"]

LineKind = Literal[
    "input",
    "cached_input",
    "cache_write_5m",
    "cache_write_1h",
    "output",
    "reasoning",
    "image",
    "characters",
    "audio_seconds",
]
"""A line of a text cost is one token class, each token in exactly one: ``input`` (the prompt's
tokens the cache did not serve), ``cached_input`` (read from the prompt cache),
``cache_write_5m`` / ``cache_write_1h`` (written to it), ``output`` (the answer's tokens
that are not reasoning) and ``reasoning`` (billed at the output price, shown apart). The
class lines appear only when the usage has such tokens."""


@dataclass(frozen=True, slots=True)
class LineItem:
    """One priced part of a request.

    ``quantity`` units are charged ``unit_usd`` per ``per`` units (1,000,000 tokens, 1 image,
    1,000 characters or 60 seconds of audio). ``exact_usd`` is ``quantity * unit_usd / per``
    computed exactly; ``micro_credits`` is that amount rounded half to even to a whole
    micro-credit, the only rounding step (see :mod:`oneflow_ai.domain.money`).
    """

    kind: LineKind
    quantity: int
    unit_usd: Decimal
    per: int
    exact_usd: Decimal
    micro_credits: int

    @property
    def usd(self) -> Decimal:
        """The charged USD (the rounded amount, 8 decimal places)."""
        return micro_credits_to_usd(self.micro_credits)

    @property
    def credits(self) -> Decimal:
        """The charged credits (6 decimal places)."""
        return micro_credits_to_credits(self.micro_credits)


@dataclass(frozen=True, slots=True)
class Cost:
    """What a request costs on one model.

    The total is the sum of the rounded line items, so ``micro_credits`` always equals
    ``sum(item.micro_credits for item in line_items)``, ``credits == 100 * usd`` exactly, and
    totals of many costs add up as integers. ``estimated`` is true when the usage was counted
    by OneFlow (or is a pre-flight or worst-case figure) rather than reported by the provider.
    """

    model: str
    line_items: tuple[LineItem, ...]
    price_table_version: str
    estimated: bool = False
    #: The total in micro-credits (the storage unit), summed once.
    micro_credits: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        total = 0
        for item in self.line_items:  # (a loop: a generator costs more for a few items)
            total += item.micro_credits
        object.__setattr__(self, "micro_credits", total)

    @property
    def usd(self) -> Decimal:
        """The total in USD (8 decimal places)."""
        return micro_credits_to_usd(self.micro_credits)

    @property
    def credits(self) -> Decimal:
        """The total in credits (6 decimal places); 1 USD = 100 credits."""
        return micro_credits_to_credits(self.micro_credits)

    def line(self, kind: LineKind) -> LineItem | None:
        """The line item of ``kind``, if the cost has one."""
        for item in self.line_items:  # (a loop: a generator costs more than the search)
            if item.kind == kind:
                return item
        return None


def fraction_of(cost: Cost, fraction: Decimal) -> Cost:
    """``cost`` with each line item charged ``fraction`` (0 to 1) of its exact amount, rounded
    like any line item (a response-cache hit is charged a fraction of the live call)."""
    if fraction == 1:
        return cost
    items = tuple(
        replace(
            item,
            exact_usd=item.exact_usd * fraction,
            micro_credits=usd_to_micro_credits(item.exact_usd * fraction),
        )
        for item in cost.line_items
    )
    return replace(cost, line_items=items)
