"""`oneflow credits …`, `oneflow budgets …`: billing on the configured database.

These act directly on the database (no running gateway needed). A change reaches the gateways
that are running before the command returns (see `cli_changes.py`). `oneflow usage`
(`cli_usage.py`) shares this module's helpers.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from oneflow_ai.settings import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from oneflow_ai.billing.ledger_admin import LedgerAdmin

__all__ = ["budgets_app", "credits_app", "render_table"]

T = TypeVar("T")

credits_app = typer.Typer(
    help="Project credits: top up, adjust, balance, billing mode.", no_args_is_help=True
)
budgets_app = typer.Typer(help="Budgets and quotas of a project.", no_args_is_help=True)


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"oneflow: {message}", err=True)
    return typer.Exit(code)


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        raise _fail(str(exc)) from None


def _database_error(exc: Exception) -> typer.Exit:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return _fail(f"database error: {first}", code=1)


def render_table(header: list[str], rows: list[list[str]], numeric_from: int) -> str:
    """Columns padded to their widest cell; columns from ``numeric_from`` on align right."""
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(
            cell.rjust(width) if i >= numeric_from else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(header), rule, *(line(row) for row in rows)])


async def _with_engine(settings: Settings, work: Callable[[Any], Awaitable[T]]) -> T:
    from oneflow_ai.cli_database import opened_database

    async with opened_database(settings) as engine:
        return await work(engine)


def _admin(engine: Any) -> LedgerAdmin:
    """A `LedgerAdmin` whose changes reach running gateways before the command returns."""
    from oneflow_ai.cli_changes import announcing_admin

    return announcing_admin(_settings(), engine)


def _run_billing(work: Callable[[Any], Awaitable[T]]) -> T:
    """Run ``work(engine)``; one line and a non-zero exit on a refusal or database error."""
    from oneflow_ai.cli_database import DatabaseNotReady
    from oneflow_ai.errors import GatewayError

    settings = _settings()
    try:
        return asyncio.run(_with_engine(settings, work))
    except GatewayError as exc:
        raise _fail(exc.message, code=1) from None
    except DatabaseNotReady as exc:
        raise _fail(str(exc), code=1) from None
    except typer.Exit:
        raise
    except Exception as exc:
        raise _database_error(exc) from None


def _amount(value: str, usd: bool, option: str) -> int:
    from oneflow_ai.api.credits import to_micro_credits

    return to_micro_credits(value, unit="usd" if usd else "credits", param=option)


def _print_account(account: Any) -> None:
    from oneflow_ai.domain.money import micro_credits_to_credits, micro_credits_to_usd

    def money(value: int) -> str:
        return f"{micro_credits_to_credits(value):f} credits ({micro_credits_to_usd(value):f} USD)"

    typer.echo(
        render_table(
            ["project", "mode", "balance", "reserved", "available"],
            [
                [
                    account.project_id,
                    account.mode,
                    money(account.balance),
                    money(account.reserved),
                    money(account.available),
                ]
            ],
            2,
        )
    )


@credits_app.command("balance")
def credits_balance(project: Annotated[str, typer.Argument()]) -> None:
    """Show a project's balance, what in-flight requests hold, and its billing mode."""
    from oneflow_ai.billing.ledger_admin import LedgerAdmin

    _print_account(_run_billing(lambda engine: LedgerAdmin(engine).account(project)))


@credits_app.command("topup")
def credits_topup(
    project: Annotated[str, typer.Argument()],
    amount: Annotated[str, typer.Argument(help="Credits (or USD with --usd), e.g. 100 or 12.5")],
    usd: Annotated[bool, typer.Option("--usd", help="The amount is in USD.")] = False,
    note: Annotated[str | None, typer.Option(help="Why (kept in the ledger).")] = None,
    postpaid: Annotated[
        bool, typer.Option("--postpaid", help="Keep the project postpaid (no limit).")
    ] = False,
) -> None:
    """Add credits to a project; it becomes prepaid unless --postpaid."""
    from oneflow_ai.errors import GatewayError

    try:
        micro = _amount(amount, usd, "amount")
    except GatewayError as exc:
        raise _fail(exc.message) from None
    _print_account(
        _run_billing(
            lambda engine: _admin(engine).top_up(project, micro, prepaid=not postpaid, note=note)
        )
    )


@credits_app.command("adjust")
def credits_adjust(
    project: Annotated[str, typer.Argument()],
    amount: Annotated[
        str, typer.Argument(help="Signed credits (or USD with --usd); put -- before a negative one")
    ],
    note: Annotated[str, typer.Option(help="Why (kept in the ledger).")],
    usd: Annotated[bool, typer.Option("--usd", help="The amount is in USD.")] = False,
) -> None:
    """Correct a project's balance (a refund, a write-off); its mode is kept.

    Example: oneflow credits adjust team-a --note "refund" -- -2.5
    """
    from oneflow_ai.errors import GatewayError

    try:
        micro = _amount(amount, usd, "amount")
    except GatewayError as exc:
        raise _fail(exc.message) from None
    _print_account(_run_billing(lambda engine: _admin(engine).adjust(project, micro, note=note)))


class BillingMode(enum.StrEnum):
    PREPAID = "prepaid"
    POSTPAID = "postpaid"


@credits_app.command("mode")
def credits_mode(
    project: Annotated[str, typer.Argument()],
    mode: Annotated[BillingMode, typer.Argument(help="prepaid or postpaid")],
) -> None:
    """Set a project's billing mode."""

    _print_account(_run_billing(lambda engine: _admin(engine).set_mode(project, mode.value)))


def _print_budgets(statuses: list[Any]) -> None:
    if not statuses:
        typer.echo("no budgets")
        return
    rows = []
    for status in statuses:
        data = status.as_dict()

        def amount(value: object) -> str:
            return str(value["credits"]) if isinstance(value, dict) else str(value)

        rows.append(
            [
                data["id"],
                data["scope"],
                data.get("user_id") or data.get("key_id") or data.get("provider") or "-",
                data["metric"],
                data["period"],
                data["mode"],
                amount(data["limit"]),
                amount(data["used"]),
                amount(data["reserved"]),
                data["resets_at"],
            ]
        )
    header = ["id", "scope", "who", "metric", "period", "mode", "limit", "used", "reserved"]
    typer.echo(render_table([*header, "resets at"], rows, 6))


@budgets_app.command("list")
def budgets_list(project: Annotated[str, typer.Argument()]) -> None:
    """A project's budgets and quotas, with this period's usage."""
    from oneflow_ai.billing.ledger_admin import LedgerAdmin

    _print_budgets(_run_billing(lambda engine: LedgerAdmin(engine).budgets(project)))


class MetricName(enum.StrEnum):
    CREDITS = "credits"
    TOKENS = "tokens"
    REQUESTS = "requests"


class PeriodName(enum.StrEnum):
    DAY = "day"
    MONTH = "month"


class ModeName(enum.StrEnum):
    HARD = "hard"
    SOFT = "soft"


@budgets_app.command("set")
def budgets_set(
    project: Annotated[str, typer.Argument()],
    metric: Annotated[MetricName, typer.Option(help="credits, tokens or requests")],
    period: Annotated[PeriodName, typer.Option(help="day or month")],
    limit: Annotated[str, typer.Option(help="Credits for the credits metric, else a count.")],
    mode: Annotated[ModeName, typer.Option(help="hard refuses, soft alerts")] = ModeName.HARD,
    user: Annotated[str | None, typer.Option(help="Only this user's requests.")] = None,
    key: Annotated[str | None, typer.Option(help="Only this API key's requests.")] = None,
    provider: Annotated[str | None, typer.Option(help="Only this provider's requests.")] = None,
) -> None:
    """Add a budget, or change the one with the same scope, metric and period."""
    from oneflow_ai.billing.budgets import BudgetMode, BudgetSpec, Metric, Period
    from oneflow_ai.errors import GatewayError

    try:
        value = _amount(limit, False, "--limit") if metric is MetricName.CREDITS else int(limit)
    except (GatewayError, ValueError):
        raise _fail(f"--limit: not a valid amount: {limit!r}") from None
    wanted = BudgetSpec(
        id="",
        project_id=project,
        metric=Metric(metric.value),
        period=Period(period.value),
        limit=value,
        mode=BudgetMode(mode.value),
        user_id=user,
        key_id=key,
        provider=provider,
    )

    async def work(engine: Any) -> list[Any]:
        admin = _admin(engine)
        scope = (user, key, provider, wanted.metric, wanted.period)
        kept = [
            s.spec
            for s in await admin.budgets(project)
            if (s.spec.user_id, s.spec.key_id, s.spec.provider, s.spec.metric, s.spec.period)
            != scope
        ]
        return await admin.set_budgets(project, [*kept, wanted])

    _print_budgets(_run_billing(work))


@budgets_app.command("remove")
def budgets_remove(
    project: Annotated[str, typer.Argument()],
    budget_id: Annotated[str, typer.Argument(help="The id `oneflow budgets list` shows.")],
) -> None:
    """Remove one budget (its counters go with it)."""

    async def work(engine: Any) -> list[Any]:
        admin = _admin(engine)
        current = [s.spec for s in await admin.budgets(project)]
        if budget_id not in {spec.id for spec in current}:
            raise _fail(f"project {project!r} has no budget {budget_id!r}", code=1)
        return await admin.set_budgets(project, [s for s in current if s.id != budget_id])

    _print_budgets(_run_billing(work))
