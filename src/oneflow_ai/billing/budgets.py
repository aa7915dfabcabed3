"""Budgets and quotas: what they limit, over which period, and which requests they apply to.

A budget belongs to a project and may be narrowed to one user, one API key and/or one
provider (``None`` = any). It limits one metric over one UTC calendar period:

- ``credits``: the credits charged (stored as micro-credits),
- ``tokens``: input + output tokens (image and audio requests use none),
- ``requests``: settled requests (a request that fails and is released does not count).

A ``hard`` budget refuses a request that could take it over the limit (402 for credits,
429 with ``Retry-After`` until the period resets for tokens and requests); a ``soft`` one only
alerts when usage crosses the limit. Usage counts toward the period in which the request was
reserved; a new period starts from zero.

:class:`BudgetBook` is the in-process view the hot path reads: budgets by project and the set
of prepaid projects, kept true by `ledger_state.LedgerState`.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from oneflow_ai.domain.money import micro_credits_to_credits

__all__ = [
    "BudgetAlert",
    "BudgetBook",
    "BudgetMode",
    "BudgetSpec",
    "Metric",
    "Period",
    "period_end",
    "period_start",
]


class Metric(enum.StrEnum):
    CREDITS = "credits"
    TOKENS = "tokens"
    REQUESTS = "requests"


class Period(enum.StrEnum):
    DAY = "day"
    MONTH = "month"


class BudgetMode(enum.StrEnum):
    HARD = "hard"
    SOFT = "soft"


def period_start(period: Period, at: datetime) -> date:
    """The first day of the UTC period holding ``at``."""
    day = at.astimezone(UTC).date()
    return day if period is Period.DAY else day.replace(day=1)


def period_end(period: Period, start: date) -> datetime:
    """When the period that began on ``start`` ends (the next one begins), UTC."""
    if period is Period.DAY:
        nxt = start + timedelta(days=1)
    else:
        nxt = date(start.year + start.month // 12, start.month % 12 + 1, 1)
    return datetime(nxt.year, nxt.month, nxt.day, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class BudgetSpec:
    """One budget or quota; ``limit`` is micro-credits for credits, a count otherwise."""

    id: str
    project_id: str
    metric: Metric
    period: Period
    limit: int
    mode: BudgetMode
    user_id: str | None = None
    key_id: str | None = None
    provider: str | None = None

    @property
    def scope(self) -> str:
        """``key``, ``user``, ``provider`` or ``project``: the narrowest filter it has."""
        if self.key_id is not None:
            return "key"
        if self.user_id is not None:
            return "user"
        if self.provider is not None:
            return "provider"
        return "project"

    @property
    def hard(self) -> bool:
        return self.mode is BudgetMode.HARD

    def applies_to(self, user_id: str | None, key_id: str | None, provider: str | None) -> bool:
        return (
            (self.user_id is None or self.user_id == user_id)
            and (self.key_id is None or self.key_id == key_id)
            and (self.provider is None or self.provider == provider)
        )

    def describe(self) -> str:
        """E.g. ``the monthly credits budget of user 'u1' (100 credits)``."""
        label = {Period.DAY: "daily", Period.MONTH: "monthly"}[self.period]
        names = [
            f"{name} '{value}'"
            for name, value in (
                ("key", self.key_id),
                ("user", self.user_id),
                ("provider", self.provider),
            )
            if value is not None
        ]
        whom = " and ".join(names) if names else f"project '{self.project_id}'"
        amount = (
            f"{micro_credits_to_credits(self.limit).normalize():f} credits"
            if self.metric is Metric.CREDITS
            else f"{self.limit} {self.metric.value}"
        )
        return f"the {label} {self.metric.value} budget of {whom} ({amount})"


@dataclass(frozen=True, slots=True)
class BudgetAlert:
    """A budget's usage crossed its limit in a period (emitted once per crossing)."""

    budget: BudgetSpec
    period_start: date
    used: int


@dataclass(frozen=True, slots=True)
class BudgetBook:
    """Budgets by project and the prepaid projects, as of ``loaded_at``."""

    by_project: Mapping[str, tuple[BudgetSpec, ...]] = field(default_factory=dict)
    prepaid: frozenset[str] = frozenset()
    loaded_at: datetime | None = None

    @classmethod
    def build(
        cls, specs: Iterable[BudgetSpec], prepaid: Iterable[str], loaded_at: datetime
    ) -> BudgetBook:
        grouped: dict[str, list[BudgetSpec]] = {}
        for spec in specs:
            grouped.setdefault(spec.project_id, []).append(spec)
        return cls(
            by_project={p: tuple(s) for p, s in grouped.items()},
            prepaid=frozenset(prepaid),
            loaded_at=loaded_at,
        )

    def with_project(
        self, project_id: str, specs: Iterable[BudgetSpec], prepaid: bool
    ) -> BudgetBook:
        """This book with ``project_id``'s budgets and mode as just read."""
        by_project = dict(self.by_project)
        found = tuple(specs)
        if found:
            by_project[project_id] = found
        else:
            by_project.pop(project_id, None)
        funded = self.prepaid | {project_id} if prepaid else self.prepaid - {project_id}
        return BudgetBook(by_project, frozenset(funded), self.loaded_at)

    def get(self, budget_id: str) -> BudgetSpec | None:
        for specs in self.by_project.values():
            for spec in specs:
                if spec.id == budget_id:
                    return spec
        return None

    def matching(
        self,
        project_id: str,
        user_id: str | None,
        key_id: str | None,
        provider: str | None,
    ) -> tuple[BudgetSpec, ...]:
        specs = self.by_project.get(project_id)
        if not specs:
            return ()
        return tuple(s for s in specs if s.applies_to(user_id, key_id, provider))
