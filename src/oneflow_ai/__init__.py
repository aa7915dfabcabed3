"""OneFlow AI: an AI model gateway.

Public names are imported lazily, so ``import oneflow_ai`` stays cheap. The version has one
source, ``pyproject.toml``: ``__version__`` is the installed distribution's.

structlog is imported here first, without ``rich`` (see `hidden_imports.py`).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from oneflow_ai.hidden_imports import hidden

with hidden("rich"):
    import structlog  # noqa: F401

if TYPE_CHECKING:
    from oneflow_ai.billing.pricing import PricingEngine
    from oneflow_ai.resilience.http import ResilientHTTPClient
    from oneflow_ai.routing.router import IntelligentRouter
    from oneflow_ai.routing.strategy import RoutingStrategy

    __version__: str

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


def _installed_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("oneflow-ai")
    except metadata.PackageNotFoundError:  # a source tree on sys.path that was never installed
        return "0+unknown"


def __getattr__(name: str) -> object:
    if name == "__version__":
        globals()[name] = version = _installed_version()
        return version
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'oneflow_ai' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value
