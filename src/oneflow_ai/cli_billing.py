"""`oneflow usage`, `oneflow credits …`, `oneflow budgets …`: billing on the configured database.

These act directly on the database (no running gateway needed). A change reaches the gateways
that are running before the command returns (see `cli_changes.py`).
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from oneflow_ai.settings import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from oneflow_ai.billing.ledger_admin import LedgerAdmin

__all__ = ["budgets_app", "credits_app", "render_table", "usage"]

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


class OutputFormat(enum.StrEnum):
    TABLE = "table"
    CSV = "csv"
    JSON = "json"


_TABLE_COLUMNS = (
    ("requests", "requests"),
    ("errors", "errors"),
    ("input_tokens", "tokens in"),
    ("output_tokens", "tokens out"),
    ("credits", "credits"),
    ("usd", "USD"),
    ("latency_p50_ms", "p50 ms"),
    ("latency_p95_ms", "p95 ms"),
    ("latency_p99_ms", "p99 ms"),
    ("cache_hits", "cache hits"),
    ("credits_saved", "credits saved"),
)


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


def _since(value: str) -> timedelta:
    units = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
    number, unit = value[:-1], value[-1:]
    if unit not in units or not number.isdigit():
        raise _fail(f"--since: use a number and m, h, d or w (e.g. 7d), not {value!r}")
    return timedelta(**{units[unit]: int(number)})


def _when(value: str, option: str) -> datetime:
    from oneflow_ai.api.usage import parse_time
    from oneflow_ai.errors import GatewayError

    try:
        return parse_time(value, option)
    except GatewayError as exc:
        raise _fail(f"{option}: {exc.message}") from None


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


def usage(
    project: Annotated[str | None, typer.Option(help="Only this project.")] = None,
    user: Annotated[str | None, typer.Option(help="Only this user.")] = None,
    key: Annotated[str | None, typer.Option(help="Only this API key.")] = None,
    model: Annotated[str | None, typer.Option(help="Only this model.")] = None,
    provider: Annotated[str | None, typer.Option(help="Only this provider.")] = None,
    since: Annotated[str, typer.Option(help="How far back: 90m, 24h, 7d, 4w.")] = "30d",
    start: Annotated[
        str | None, typer.Option("--from", help="Start (ISO 8601, UTC); overrides --since.")
    ] = None,
    end: Annotated[str | None, typer.Option("--to", help="End (exclusive); default: now.")] = None,
    group_by: Annotated[
        str,
        typer.Option(help="Comma list of project, user, key, model, provider, hour or day."),
    ] = "model",
    output: Annotated[OutputFormat, typer.Option("--format", help="table, csv or json.")] = (
        OutputFormat.TABLE
    ),
) -> None:
    """Usage: requests, tokens, credits, USD, errors and latency, grouped as you ask."""
    import orjson

    from oneflow_ai.billing.analytics import UsageQuery, query_usage

    end_at = _when(end, "--to") if end else datetime.now(UTC)
    start_at = _when(start, "--from") if start else end_at - _since(since)
    try:
        query = UsageQuery(
            start=start_at,
            end=end_at,
            project_id=project,
            user_id=user,
            key_id=key,
            model=model,
            provider=provider,
            group_by=tuple(g.strip() for g in group_by.split(",") if g.strip()),
        )
    except ValueError as exc:
        raise _fail(str(exc)) from None
    report = _run_billing(lambda engine: query_usage(engine, query))
    if output is OutputFormat.JSON:
        typer.echo(orjson.dumps(report.as_dict(), option=orjson.OPT_INDENT_2).decode())
        return
    if output is OutputFormat.CSV:
        typer.echo(report.to_csv(), nl=False)
        return
    rows = report.csv_rows()
    names = list(query.group_by)
    picked = [rows[0].index(column) for column, _ in _TABLE_COLUMNS]
    body = [[*(r[: len(names)]), *(r[i] for i in picked)] for r in rows[1:]] if names else []
    totals = report.totals.as_dict()
    latency = totals["latency_ms"]
    assert isinstance(latency, dict)
    total_values = {
        **{k: str(v) for k, v in totals.items() if not isinstance(v, dict)},
        "latency_p50_ms": str(latency["p50"] if latency["p50"] is not None else ""),
        "latency_p95_ms": str(latency["p95"] if latency["p95"] is not None else ""),
        "latency_p99_ms": str(latency["p99"] if latency["p99"] is not None else ""),
    }
    label = ["TOTAL", *([""] * (len(names) - 1))] if names else []
    body.append([*label, *(total_values[column] for column, _ in _TABLE_COLUMNS)])
    header = [*names, *(title for _, title in _TABLE_COLUMNS)]
    filters = "".join(
        f", {name}={value}"
        for name, value in (
            ("project", project),
            ("user", user),
            ("key", key),
            ("model", model),
            ("provider", provider),
        )
        if value is not None
    )
    typer.echo(f"usage {_iso(start_at)} .. {_iso(end_at)}{filters}")
    typer.echo(render_table(header, [[c or "-" for c in row] for row in body], len(names)))


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


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
