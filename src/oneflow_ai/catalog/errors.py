"""Errors raised by the model catalog."""

from __future__ import annotations

from oneflow_ai.errors import NotFoundError

__all__ = ["CatalogError", "UnknownModelError"]


class CatalogError(ValueError):
    """The catalog (packaged or an operator's override file) is malformed.

    The message names the entry and the field, e.g.
    ``catalog entry 'gpt-4o': pricing.input_per_mtok: must be a decimal string ...``.
    """


class UnknownModelError(NotFoundError, LookupError):
    """No enabled catalog model has this id or alias (404 in the caller's dialect)."""

    def __init__(self, model: str) -> None:
        super().__init__(
            f"The model '{model}' does not exist or is not enabled in this gateway",
            param="model",
            code="model_not_found",
        )
        self.model = model
