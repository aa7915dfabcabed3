"""Errors raised when a request cannot be priced."""

from __future__ import annotations

__all__ = ["PricingError", "TokenCountError", "UnpricedModelError"]


class PricingError(ValueError):
    """The usage cannot be priced on this model (e.g. images on a text model, unknown size)."""


class UnpricedModelError(PricingError):
    """The model is in the catalog but has no price and is not free; billing refuses it."""

    def __init__(self, model: str) -> None:
        super().__init__(f"model {model!r} has no price in the catalog and is not free")
        self.model = model


class TokenCountError(ValueError):
    """Tokens cannot be counted: not a text model, or malformed messages."""
