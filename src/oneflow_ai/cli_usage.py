"""`oneflow usage`: usage analytics on the configured database, as a table, CSV or JSON.

Like the billing commands (`cli_billing.py`, whose helpers it uses) it reads the database
directly; no running gateway is needed.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated

import typer

from oneflow_ai.cli_billing import _fail, _run_billing, render_table

if TYPE_CHECKING:
    from oneflow_ai.billing.analytics import UsageQuery, UsageReport

__all__ = ["usage"]


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
    typer.echo(f"usage {_iso(start_at)} .. {_iso(end_at)}{_filters(query)}")
    typer.echo(_table(report, query))


def _table(report: UsageReport, query: UsageQuery) -> str:
    """The report as a table: one row per group, then the totals."""
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
    return render_table(header, [[c or "-" for c in row] for row in body], len(names))


def _filters(query: UsageQuery) -> str:
    """``, project=…, model=…`` for each filter the caller set, in option order."""
    return "".join(
        f", {name}={value}"
        for name, value in (
            ("project", query.project_id),
            ("user", query.user_id),
            ("key", query.key_id),
            ("model", query.model),
            ("provider", query.provider),
        )
        if value is not None
    )


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


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
