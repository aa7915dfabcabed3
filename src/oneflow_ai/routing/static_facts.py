"""`StaticFacts`: what the router needs of one catalog entry, looked up once per router.

:class:`~oneflow_ai.routing.router.IntelligentRouter` builds one per catalog model and asks
each, per request, whether the model can serve it (:meth:`StaticFacts.unfit`).
"""

from __future__ import annotations

from dataclasses import dataclass

from oneflow_ai.catalog import ModelEntry
from oneflow_ai.domain.money import MICRO_CREDITS_PER_USD

__all__ = ["StaticFacts"]


@dataclass(frozen=True, slots=True)
class StaticFacts:
    """What routing needs of a catalog entry, looked up once."""

    id: str
    provider: str
    quality: float
    priced: bool
    text: bool
    context_window: int
    max_output_tokens: int
    # Micro-credits per input and output token when both are whole numbers (every packaged
    # text model): the cost is then computed here exactly as the engine would (each line item
    # is tokens x price micro-credits and nothing is rounded), without the engine's overhead.
    token_prices: tuple[int, int] | None
    auto_route: bool = True

    @classmethod
    def of(cls, entry: ModelEntry) -> StaticFacts:
        return cls(
            id=entry.id,
            provider=entry.provider,
            quality=entry.quality,
            priced=entry.is_priced,
            text=entry.modality == "text",
            context_window=entry.context_window or 0,
            max_output_tokens=entry.max_output_tokens or 0,
            token_prices=_whole_micro_credits_per_token(entry),
            auto_route=entry.auto_route,
        )

    def unfit(self, tokens_in: int, tokens_out: int, allowed: frozenset[str] | None) -> str | None:
        """Why this model cannot serve the request, or ``None``."""
        if not self.priced:
            return "has no price"
        if allowed is not None and self.id not in allowed:
            return "not allowed for this caller"
        if self.text:
            if self.max_output_tokens and tokens_out > self.max_output_tokens:
                return (
                    f"{tokens_out} output tokens exceed its maximum output of "
                    f"{self.max_output_tokens}"
                )
            if self.context_window and tokens_in + tokens_out > self.context_window:
                return (
                    f"{tokens_in + tokens_out} tokens exceed its context window of "
                    f"{self.context_window}"
                )
        return None


def _whole_micro_credits_per_token(entry: ModelEntry) -> tuple[int, int] | None:
    pricing = entry.pricing
    if entry.modality != "text" or entry.free or pricing is None:
        return None
    if pricing.input_per_mtok is None or pricing.output_per_mtok is None:
        return None
    per_token = MICRO_CREDITS_PER_USD // 1_000_000  # micro-credits per token at 1 USD/MTok
    units = (pricing.input_per_mtok * per_token, pricing.output_per_mtok * per_token)
    if any(u != u.to_integral_value() for u in units):
        return None
    return int(units[0]), int(units[1])
