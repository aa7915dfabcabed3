"""Billing: pricing and token counting (the ledger, budgets and quotas come later)."""

from oneflow_ai.billing.cost import Cost, LineItem, LineKind
from oneflow_ai.billing.errors import PricingError, TokenCountError, UnpricedModelError
from oneflow_ai.billing.pricing import PricingEngine
from oneflow_ai.billing.tokenizer import TokenCount, TokenCounter, count_tokens

__all__ = [
    "Cost",
    "LineItem",
    "LineKind",
    "PricingEngine",
    "PricingError",
    "TokenCount",
    "TokenCountError",
    "TokenCounter",
    "UnpricedModelError",
    "count_tokens",
]
