"""OneFlow AI: an AI model gateway.

Public names are imported lazily, so ``import oneflow_ai`` stays cheap.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from oneflow_ai.billing.pricing import PricingEngine
    from oneflow_ai.resilience.http import ResilientHTTPClient
    from oneflow_ai.routing.router import IntelligentRouter
    from oneflow_ai.routing.strategy import RoutingStrategy

__version__ = "2.0.0"
__all__ = [
    "IntelligentRouter",
    "PricingEngine",
    "ResilientHTTPClient",
    "RoutingStrategy",
    "__version__",
]

_LAZY = {
    "IntelligentRouter": "oneflow_ai.routing.router",
    "PricingEngine": "oneflow_ai.billing.pricing",
    "ResilientHTTPClient": "oneflow_ai.resilience.http",
    "RoutingStrategy": "oneflow_ai.routing.strategy",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'oneflow_ai' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value
