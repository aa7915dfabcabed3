"""Hard and soft budgets through the running gateway: per project, user, key and provider, on
credits, tokens and requests, per day and per month.

Each row gets a project of its own and a budget that covers exactly two requests. Two requests
are answered; then a hard budget refuses in the caller's dialect (402 for credits, 429 with
`Retry-After` until the period resets for a quota) while a soft one lets the calls through.
Both alert once when usage reaches the limit (a `budget_limit_reached` log line and the
`oneflow_budget_alerts_total` metric), and a caller outside the budget is never held back.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from decimal import Decimal

import httpx
import pytest

from tests.support.billing_world import (
    CHAT_PATHS,
    NO_CREDITS,
    BillingWorld,
    billing_world,
    chat_body,
    error_type,
    prompt_tokens,
    worst_case,
)

MAX_TOKENS = 20
OTHER_PROVIDER_MODEL = "claude-3-haiku-20240307"
SECONDS_PER_PERIOD = {"day": 86_400, "month": 31 * 86_400}
COVERED = 2  # requests each budget covers


@dataclass(frozen=True)
class Row:
    scope: str  # project, user, key, provider
    metric: str  # credits, tokens, requests
    period: str  # day, month
    mode: str  # hard, soft

    def __str__(self) -> str:
        return f"{self.mode} {self.period} {self.metric} budget per {self.scope}"

    @property
    def limit(self) -> int:
        """In the budget's unit (micro-credits for credits)."""
        if self.metric == "credits":
            return COVERED * worst_case(MAX_TOKENS)
        if self.metric == "tokens":
            return COVERED * (prompt_tokens() + MAX_TOKENS)
        return COVERED

    @property
    def limit_text(self) -> str:
        """As the API takes it (credits for credits)."""
        if self.metric == "credits":
            return str(Decimal(self.limit) / 1_000_000)
        return str(self.limit)

    @property
    def refusal(self) -> int:
        return 402 if self.metric == "credits" else 429


ROWS = [
    Row(*values)
    for values in itertools.product(
        ("project", "user", "key", "provider"),
        ("credits", "tokens", "requests"),
        ("day", "month"),
        ("hard", "soft"),
    )
]


@dataclass
class Setup:
    """A row's project, its budget, the caller under it and one outside it."""

    project: str
    budget_id: str
    caller: str
    outsider: str
    outsider_model: str | None = None


def set_up(world: BillingWorld, row: Row) -> Setup:
    project, key = world.project(row.scope)
    budget: dict[str, object] = {
        "metric": row.metric,
        "period": row.period,
        "limit": row.limit_text,
        "mode": row.mode,
    }
    caller, outsider, outsider_model = key, world.key(project), None
    if row.scope == "project":
        outsider = world.project("outside")[1]
    elif row.scope == "user":
        user_id, caller = world.user(project)
        budget["user_id"] = user_id
        outsider = key
    elif row.scope == "key":
        budget["key_id"] = world.key_ids[key]
    else:
        budget["provider"] = "openai"
        outsider, outsider_model = key, OTHER_PROVIDER_MODEL
    (status,) = world.budgets(project, budget)
    return Setup(project, str(status["id"]), caller, outsider, outsider_model)


def ask(
    world: BillingWorld, credential: str, dialect: str, model: str | None = None
) -> httpx.Response:
    body = chat_body(MAX_TOKENS) if model is None else chat_body(MAX_TOKENS, model=model)
    return world.admin.post(
        CHAT_PATHS[dialect], json=body, headers={"Authorization": f"Bearer {credential}"}
    )


def check_row(world: BillingWorld, row: Row, capfd: pytest.CaptureFixture[str]) -> Setup:
    labels = {"scope": row.scope, "metric": row.metric, "mode": row.mode}
    alerts_before = world.metric("oneflow_budget_alerts_total", **labels)
    setup = set_up(world, row)
    capfd.readouterr()
    for dialect in ("openai", "anthropic")[:COVERED]:
        answered = ask(world, setup.caller, dialect)
        assert answered.status_code == 200, (str(row), answered.text)
    alert_lines = [
        line
        for line in capfd.readouterr().err.splitlines()
        if '"budget_limit_reached"' in line and setup.budget_id in line
    ]
    assert len(alert_lines) == 1, (str(row), alert_lines)
    assert world.metric("oneflow_budget_alerts_total", **labels) == alerts_before + 1, str(row)

    for dialect in ("openai", "anthropic"):
        over = ask(world, setup.caller, dialect)
        if row.mode == "soft":
            assert over.status_code == 200, (str(row), over.text)
            continue
        assert over.status_code == row.refusal, (str(row), dialect, over.text)
        expected = NO_CREDITS[dialect] if row.refusal == 402 else "rate_limit_error"
        assert error_type(dialect, over) == expected, (str(row), over.text)
        if row.refusal == 429:
            assert 0 < float(over.headers["retry-after"]) <= SECONDS_PER_PERIOD[row.period]

    outside = ask(world, setup.outsider, "openai", setup.outsider_model)
    assert outside.status_code == 200, (str(row), outside.text)
    return setup


async def test_hard_budgets_refuse_and_soft_budgets_alert(
    database_url: str, capfd: pytest.CaptureFixture[str]
) -> None:
    with billing_world(database_url) as world:
        hard_limits: dict[str, int] = {}
        projects = []
        for row in ROWS:
            setup = check_row(world, row, capfd)
            projects.append(setup.project)
            if row.mode == "hard":
                hard_limits[setup.budget_id] = row.limit
        await world.consistent(*projects, hard_limits=hard_limits)
