"""Errors raised when a request cannot be priced (400s in the caller's dialect)."""

from __future__ import annotations

from oneflow_ai.errors import BadRequestError

__all__ = ["PricingError", "TokenCountError", "UnpricedModelError"]


class PricingError(BadRequestError, ValueError):
    """The usage cannot be priced on this model (e.g. images on a text model, unknown size)."""


class UnpricedModelError(PricingError):
    """The model is in the catalog but has no price and is not free; billing refuses it."""

    def __init__(self, model: str) -> None:
        super().__init__(
            f"model {model!r} has no price in the catalog and is not free",
            param="model",
            code="model_not_priced",
        )
        self.model = model


class TokenCountError(BadRequestError, ValueError):
    """Tokens cannot be counted: not a text model, or malformed messages."""
