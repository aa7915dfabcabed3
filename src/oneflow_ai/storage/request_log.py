"""The request log: usage records one by one, newest first, paged by a keyset cursor.

A page is the records before the cursor's ``(occurred_at, id)`` in descending order, found
by walking one index backwards: ``(project_id, occurred_at, id)`` when a project is given,
``(key_id, occurred_at, id)`` for a key, ``(occurred_at, id)`` otherwise; errors and users'
requests have partial indexes of their own (migration 0006), so a rare combination of filters
(one project's strategy-routed errors) walks few rows. The cost of a page
does not grow with how deep it is (no OFFSET). The condition is written as
``occurred_at <= t AND (occurred_at < t OR id < i)`` rather than a row comparison, which both
databases' planners turn into an index range.

Times are UTC; a cursor is opaque to callers (base64url of the microsecond timestamp and id).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, literal_column, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from oneflow_ai.storage.tables import UsageRecordRow, table_of

__all__ = ["Cursor", "RequestFilter", "RequestRow", "find_request", "list_requests"]

records = table_of(UsageRecordRow)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a page ends: the last record's time and id."""

    occurred_at: datetime
    id: int

    def encode(self) -> str:
        micros = (self.occurred_at.astimezone(UTC) - _EPOCH) // _MICROSECOND
        raw = f"{micros}.{self.id}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        """Raises ``ValueError`` for anything :meth:`encode` did not make."""
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("ascii")
            micros, _, record_id = raw.partition(".")
            at = _EPOCH + int(micros) * _MICROSECOND
            value = cls(at, int(record_id))
        except (binascii.Error, UnicodeDecodeError, ValueError, OverflowError):
            raise ValueError("not a cursor this API returned") from None
        if value.id < 0:
            raise ValueError("not a cursor this API returned")
        return value


_MICROSECOND = datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC) - _EPOCH


#: Errors, written as the partial indexes' condition (migration 0006) with the number inline:
#: both planners use a partial index only when they can prove the query is within it, which a
#: bound parameter hides (a prepared statement's generic plan on PostgreSQL; SQLite always).
_IS_ERROR: ColumnElement[bool] = records.c.status >= literal_column("400")


@dataclass(frozen=True, slots=True)
class RequestFilter:
    """Exact-match filters (``None``: any); ``status`` is ``"ok"`` (below 400), ``"error"``
    or one status code; ``[start, end)`` bounds the time."""

    start: datetime | None = None
    end: datetime | None = None
    project_id: str | None = None
    user_id: str | None = None
    key_id: str | None = None
    model: str | None = None
    model_requested: str | None = None
    provider: str | None = None
    strategy: str | None = None
    status: str | int | None = None
    request_id: str | None = None

    def conditions(self) -> list[ColumnElement[bool]]:
        c = records.c
        found: list[ColumnElement[bool]] = []
        if self.start is not None:
            found.append(c.occurred_at >= self.start)
        if self.end is not None:
            found.append(c.occurred_at < self.end)
        for name in (
            "project_id",
            "user_id",
            "key_id",
            "model",
            "model_requested",
            "provider",
            "strategy",
            "request_id",
        ):
            value = getattr(self, name)
            if value is not None:
                found.append(c[name] == value)
        if self.status == "ok":
            found.append(c.status < 400)
        elif self.status == "error":
            found.append(_IS_ERROR)
        elif isinstance(self.status, int):
            found.append(c.status == self.status)
            if self.status >= 400:
                found.append(_IS_ERROR)  # implied, written so the errors' indexes apply
        return found


@dataclass(frozen=True, slots=True)
class RequestRow:
    """One usage record as the request log shows it."""

    id: int
    request_id: str
    occurred_at: datetime
    project_id: str | None
    user_id: str | None
    key_id: str | None
    model_requested: str | None
    model: str | None
    provider: str | None
    strategy: str | None
    route_reason: str | None
    fallbacks: int
    status: int
    error: str | None
    stream: bool
    input_tokens: int
    cached_input_tokens: int
    cache_write_5m_tokens: int
    cache_write_1h_tokens: int
    output_tokens: int
    reasoning_tokens: int
    images: int
    characters: int
    micro_credits: int
    price_table_version: str | None
    estimated: bool
    latency_ms: int | None
    ttft_ms: int | None
    cache_hit: bool
    route_detail: dict[str, Any] | None
    audio_seconds: int

    @property
    def cursor(self) -> Cursor:
        return Cursor(self.occurred_at, self.id)


_COLUMNS = [records.c[name] for name in RequestRow.__dataclass_fields__]


def _page(filters: RequestFilter, cursor: Cursor | None, limit: int) -> Select[Any]:
    c = records.c
    statement = select(*_COLUMNS).where(*filters.conditions())
    if cursor is not None:
        at = cursor.occurred_at
        statement = statement.where(c.occurred_at <= at, or_(c.occurred_at < at, c.id < cursor.id))
    return statement.order_by(c.occurred_at.desc(), c.id.desc()).limit(limit)


async def list_requests(
    connection: AsyncConnection,
    filters: RequestFilter,
    *,
    limit: int,
    cursor: Cursor | None = None,
) -> tuple[list[RequestRow], Cursor | None]:
    """Up to ``limit`` records before ``cursor`` (newest first) and the cursor of the next
    page (``None`` when this one is the last)."""
    result = await connection.execute(_page(filters, cursor, limit + 1))
    rows = [RequestRow(*values) for values in result.all()]  # UtcDateTime: aware UTC times
    if len(rows) > limit:
        return rows[:limit], rows[limit - 1].cursor
    return rows, None


async def find_request(
    connection: AsyncConnection, request_id: str, *, project_id: str | None = None
) -> RequestRow | None:
    """The (latest) record of ``request_id``, within ``project_id`` when given."""
    filters = RequestFilter(project_id=project_id, request_id=request_id)
    rows, _ = await list_requests(connection, filters, limit=1)
    return rows[0] if rows else None
