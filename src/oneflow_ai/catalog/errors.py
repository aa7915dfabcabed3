"""Errors raised by the model catalog."""

from __future__ import annotations

__all__ = ["CatalogError", "UnknownModelError"]


class CatalogError(ValueError):
    """The catalog (packaged or an operator's override file) is malformed.

    The message names the entry and the field, e.g.
    ``catalog entry 'gpt-4o': pricing.input_per_mtok: must be a decimal string ...``.
    """


class UnknownModelError(LookupError):
    """No enabled catalog model has this id or alias."""

    def __init__(self, model: str) -> None:
        super().__init__(f"unknown model {model!r}")
        self.model = model
