"""OneFlow AI: an AI model gateway.

Public names are imported lazily, so ``import oneflow_ai`` stays cheap.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from oneflow_ai.billing.pricing import PricingEngine

__version__ = "2.0.0"
__all__ = ["PricingEngine", "__version__"]

_LAZY = {
    "PricingEngine": "oneflow_ai.billing.pricing",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'oneflow_ai' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value
