"""Billing: pricing, token counting (and later the ledger, budgets and quotas)."""

from oneflow_ai.billing.cost import Cost, LineItem, LineKind
from oneflow_ai.billing.errors import PricingError, UnpricedModelError
from oneflow_ai.billing.pricing import PricingEngine

__all__ = [
    "Cost",
    "LineItem",
    "LineKind",
    "PricingEngine",
    "PricingError",
    "UnpricedModelError",
]
