"""`GET /api/v1/usage` (JSON, or CSV with `?format=csv`) and `GET /api/v1/usage.csv`.

Filters: `project`, `user`, `key`, `model`, `provider`; time range `from`/`to` (ISO 8601, UTC
when no offset is given; `to` is exclusive; default: the last 30 days); `group_by`: a comma
list of project, user, key, model, provider and one of hour or day. System admins read every
project; other callers (with ``usage:read``) read their own project only. `scope=self` reads
the caller's own usage (its key's, or its user's), and is what a self-service session always
reads (see `api/access.py`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from oneflow_ai.api.access import read_scope
from oneflow_ai.api.deps import authenticate, get_services
from oneflow_ai.api.responses import json_response
from oneflow_ai.auth.principal import Principal
from oneflow_ai.billing.analytics import UsageQuery, query_usage
from oneflow_ai.errors import BadRequestError

__all__ = ["parse_time", "router"]

router = APIRouter(prefix="/api/v1", tags=["usage"])

_DEFAULT_RANGE = timedelta(days=30)


def parse_time(value: str, param: str) -> datetime:
    """An ISO 8601 date or date-time; without an offset it is UTC."""
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise BadRequestError(
            f"'{param}' must be an ISO 8601 date or date-time, e.g. 2026-11-26T00:00:00Z",
            param=param,
        ) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


async def _report(
    request: Request,
    principal: Principal,
    *,
    project: str | None,
    user: str | None,
    key: str | None,
    model: str | None,
    provider: str | None,
    start: str | None,
    end: str | None,
    group_by: str | None,
    as_csv: bool,
    scope: str = "all",
) -> Response:
    allowed = read_scope(principal, project, own=scope == "self")
    project_id = allowed.project_id
    user, key = allowed.narrow("user_id", user), allowed.narrow("key_id", key)
    end_at = parse_time(end, "to") if end else datetime.now(UTC)
    start_at = parse_time(start, "from") if start else end_at - _DEFAULT_RANGE
    groups = tuple(g.strip() for g in (group_by or "").split(",") if g.strip())
    try:
        query = UsageQuery(
            start=start_at,
            end=end_at,
            project_id=project_id,
            user_id=user,
            key_id=key,
            model=model,
            provider=provider,
            group_by=groups,
        )
    except ValueError as exc:
        param = "group_by" if "group" in str(exc) else "to"
        raise BadRequestError(str(exc), param=param) from None
    services = get_services(request)
    await services.ledger.caught_up()  # this replica's own requests, written
    report = await query_usage(services.engine, query)
    if as_csv:
        return Response(
            report.to_csv(),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="usage.csv"'},
        )
    return json_response(report.as_dict())


Filter = Annotated[str | None, Query(max_length=128)]
Scope = Annotated[
    Literal["all", "self"],
    Query(description="self: the caller's own usage (its key's or its user's) only"),
]


@router.get(
    "/usage",
    summary="Usage totals: requests, tokens, USD, credits, errors, latency percentiles",
)
async def usage(
    request: Request,
    principal: Annotated[Principal, Depends(authenticate)],
    project: Filter = None,
    user: Filter = None,
    key: Filter = None,
    model: Filter = None,
    provider: Filter = None,
    start: Annotated[str | None, Query(alias="from")] = None,
    end: Annotated[str | None, Query(alias="to")] = None,
    group_by: Annotated[str | None, Query(max_length=200)] = None,
    format: Literal["json", "csv"] = "json",
    scope: Scope = "all",
) -> Response:
    return await _report(
        request,
        principal,
        project=project,
        user=user,
        key=key,
        model=model,
        provider=provider,
        start=start,
        end=end,
        group_by=group_by,
        as_csv=format == "csv",
        scope=scope,
    )


@router.get("/usage.csv", summary="The same report as CSV")
async def usage_csv(
    request: Request,
    principal: Annotated[Principal, Depends(authenticate)],
    project: Filter = None,
    user: Filter = None,
    key: Filter = None,
    model: Filter = None,
    provider: Filter = None,
    start: Annotated[str | None, Query(alias="from")] = None,
    end: Annotated[str | None, Query(alias="to")] = None,
    group_by: Annotated[str | None, Query(max_length=200)] = None,
    scope: Scope = "all",
) -> Response:
    return await _report(
        request,
        principal,
        project=project,
        user=user,
        key=key,
        model=model,
        provider=provider,
        start=start,
        end=end,
        group_by=group_by,
        as_csv=True,
        scope=scope,
    )
