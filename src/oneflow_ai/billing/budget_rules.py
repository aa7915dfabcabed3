"""What budgets hold, count and say: hold amounts, usage increments, refusals, alerts.

Pure functions over a :class:`BudgetBook`; the ledger calls them around its writes.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from oneflow_ai.billing.budgets import (
    BudgetAlert,
    BudgetBook,
    Metric,
    period_end,
    period_start,
)
from oneflow_ai.billing.cost import Cost
from oneflow_ai.billing.reservation import Reservation
from oneflow_ai.domain.money import micro_credits_to_credits
from oneflow_ai.domain.usage import Usage
from oneflow_ai.errors import GatewayError, InsufficientCreditsError, RateLimitedError
from oneflow_ai.storage.ledger_commands import CounterChange, HoldRow

__all__ = ["crossings", "hold_amount", "increments", "refusal"]


def hold_amount(metric: Metric, max_cost: Cost) -> int:
    """What a reservation holds on a budget of ``metric``: the worst case of its request."""
    if metric is Metric.CREDITS:
        return max_cost.micro_credits
    if metric is Metric.TOKENS:
        return sum(
            item.quantity for item in max_cost.line_items if item.kind in ("input", "output")
        )
    return 1


def increments(
    book: BudgetBook, reservation: Reservation, provider: str, usage: Usage, micro_credits: int
) -> tuple[HoldRow, ...]:
    """What a settled request (costing ``micro_credits``) adds to each budget it falls under,
    in its reservation's period: a soft budget as it is now, a hard one only if it applied
    when the request was admitted (one set meanwhile counts what it admits)."""
    found = []
    for budget in book.matching(
        reservation.project_id, reservation.user_id, reservation.key_id, provider
    ):
        if budget.hard and budget.id not in reservation.hard_budgets:
            continue
        if budget.metric is Metric.CREDITS:
            amount = micro_credits
        elif budget.metric is Metric.TOKENS:
            amount = usage.input_tokens + usage.output_tokens
        else:
            amount = 1
        if amount:
            found.append(
                HoldRow(budget.id, period_start(budget.period, reservation.created_at), amount)
            )
    return tuple(found)


def crossings(book: BudgetBook, changes: Iterable[CounterChange]) -> list[BudgetAlert]:
    """The budgets whose usage just reached or passed their limit (each crossing once)."""
    alerts = []
    for change in changes:
        budget = book.get(change.budget_id)
        if budget is not None and change.used_before < budget.limit <= change.used_after:
            alerts.append(BudgetAlert(budget, change.period_start, change.used_after))
    return alerts


def refusal(
    book: BudgetBook, refused_by: str | None, max_cost: Cost, now: datetime
) -> GatewayError:
    """The error for a refused reservation: 402 for money, 429 until reset for quotas."""
    up_to = f"{micro_credits_to_credits(max_cost.micro_credits).normalize():f}"
    if refused_by == "account":
        return InsufficientCreditsError(
            f"Insufficient credits: this request may cost up to {up_to} credits, more than "
            "the project has available. Top up the project's credits or lower max_tokens.",
            code="insufficient_credits",
        )
    budget = book.get(refused_by or "")
    if budget is None:
        return InsufficientCreditsError(
            "Budget exceeded: a hard budget of this project cannot cover this request",
            code="budget_exceeded",
        )
    resets = period_end(budget.period, period_start(budget.period, now))
    resets_text = resets.isoformat().replace("+00:00", "Z")
    if budget.metric is Metric.CREDITS:
        return InsufficientCreditsError(
            f"Budget exceeded: this request may cost up to {up_to} credits, more than "
            f"remains of {budget.describe()}; it resets at {resets_text}.",
            code="budget_exceeded",
        )
    return RateLimitedError(
        f"Quota exceeded: {budget.describe()} cannot cover this request; "
        f"it resets at {resets_text}.",
        code="quota_exceeded",
        retry_after=max(1.0, (resets - now).total_seconds()),
    )
