"""`GET /api/v1/requests` (the request log) and `GET /api/v1/requests/{request_id}` (one request).

One row per request, newest first: time, project, user, key, the model asked for and the one
that answered, strategy and route reason, fallbacks, status and error, tokens (cached input and
reasoning tokens among them), images, characters, credits, latency, time to first token.

Filters: `project`, `user`, `key`, `model` (answered), `model_requested`, `provider`,
`strategy`, `status` (`ok`, `error` or a status code), `from`/`to` (ISO 8601, UTC without an
offset; `to` exclusive). Pages: `limit` (1-200, default 50) rows, then `cursor` = the
`next_cursor` of the page before (null on the last page); `format=csv` gives the page as CSV
(the next cursor in `X-OneFlow-Next-Cursor`). Who reads what is the same as for
`/api/v1/usage`, `scope=self` included (see `api/access.py`).

A request's details add its route (the candidates in order and every upstream attempt with
its error) and, when its project stores bodies (`request_log_policies`), the redacted prompt
and answer: for admins of the project and system admins only.
"""

from __future__ import annotations

import csv
import io
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from starlette.responses import Response

from oneflow_ai.api.access import ReadScope, read_scope
from oneflow_ai.api.deps import authenticate, get_services
from oneflow_ai.api.request_views import CSV_COLUMNS, csv_row, request_view
from oneflow_ai.api.responses import json_response
from oneflow_ai.api.usage import parse_time
from oneflow_ai.auth.principal import Principal, Role
from oneflow_ai.errors import BadRequestError, NotFoundError
from oneflow_ai.storage.request_bodies import load_body
from oneflow_ai.storage.request_log import Cursor, RequestFilter, find_request, list_requests

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["requests"])

#: With `format=csv`, the cursor of the next page travels in this header.
NEXT_CURSOR_HEADER = "X-OneFlow-Next-Cursor"

Filter = Annotated[str | None, Query(max_length=128)]
Scope = Annotated[
    Literal["all", "self"],
    Query(description="self: the caller's own requests (its key's or its user's) only"),
]


def _status(value: str | None) -> str | int | None:
    if value is None or value in ("ok", "error"):
        return value
    if value.isdigit() and 100 <= int(value) <= 599:
        return int(value)
    raise BadRequestError("'status' is ok, error or an HTTP status code", param="status")


def _cursor(value: str | None) -> Cursor | None:
    if not value:  # absent, or empty as a form sends it: the first page
        return None
    try:
        return Cursor.decode(value)
    except ValueError:
        raise BadRequestError(
            "'cursor' is not one this API returned: pass a page's next_cursor as it is",
            param="cursor",
        ) from None


@router.get("/requests", summary="The request log: one row per request, newest first, by cursor")
async def requests(
    request: Request,
    principal: Annotated[Principal, Depends(authenticate)],
    project: Filter = None,
    user: Filter = None,
    key: Filter = None,
    model: Filter = None,
    model_requested: Filter = None,
    provider: Filter = None,
    strategy: Filter = None,
    status: Annotated[str | None, Query(max_length=5)] = None,
    start: Annotated[str | None, Query(alias="from")] = None,
    end: Annotated[str | None, Query(alias="to")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=100)] = None,
    scope: Scope = "all",
    format: Literal["json", "csv"] = "json",
) -> Response:
    allowed = read_scope(principal, project, own=scope == "self")
    filters = RequestFilter(
        start=parse_time(start, "from") if start else None,
        end=parse_time(end, "to") if end else None,
        project_id=allowed.project_id,
        user_id=allowed.narrow("user_id", user),
        key_id=allowed.narrow("key_id", key),
        model=model,
        model_requested=model_requested,
        provider=provider,
        strategy=strategy,
        status=_status(status),
    )
    async with get_services(request).engine.connect() as connection:
        rows, following = await list_requests(
            connection, filters, limit=limit, cursor=_cursor(cursor)
        )
    views = [request_view(row) for row in rows]
    next_cursor = following.encode() if following is not None else None
    if format == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerows([list(CSV_COLUMNS), *(csv_row(view) for view in views)])
        headers = {"Content-Disposition": 'attachment; filename="requests.csv"'}
        if next_cursor is not None:
            headers[NEXT_CURSOR_HEADER] = next_cursor
        return Response(buffer.getvalue(), media_type="text/csv; charset=utf-8", headers=headers)
    return json_response(
        {
            "object": "list",
            "data": views,
            "has_more": following is not None,
            "next_cursor": next_cursor,
        }
    )


@router.get(
    "/requests/{request_id}",
    summary="One request: its row, route (candidates, attempts, errors) and stored bodies",
)
async def request_detail(
    request: Request,
    request_id: Annotated[str, Path(max_length=64)],
    principal: Annotated[Principal, Depends(authenticate)],
    scope: Scope = "all",
) -> Response:
    allowed = read_scope(principal, None, own=scope == "self")
    async with get_services(request).engine.connect() as connection:
        row = await find_request(connection, request_id, project_id=allowed.project_id)
        if row is None or not _visible(allowed, row.user_id, row.key_id):
            raise NotFoundError(f"No request '{request_id}' that you can read", param="request_id")
        view = request_view(row, detail=True)
        if _reads_bodies(principal):
            view["bodies"] = await load_body(connection, row.request_id)
    return json_response(view)


def _visible(allowed: ReadScope, user_id: str | None, key_id: str | None) -> bool:
    return (allowed.key_id is None or allowed.key_id == key_id) and (
        allowed.user_id is None or allowed.user_id == user_id
    )


def _reads_bodies(principal: Principal) -> bool:
    """Stored prompts and answers are for admins (of the request's project, which
    ``read_scope`` has checked, or system admins), never a self-service session."""
    return principal.role is Role.ADMIN and not principal.self_only
