"""Responses of the Responses API that OneFlow keeps, per project, until they expire.

A response is stored when its caller asked (`store: true`, the default) with its input items
and the response object as answered, and expires `RESPONSES_RETENTION_DAYS` after it was
made. Reads are always by project: another project's id is not found, exactly like an id that
never existed. An expired row is reported as expired (`StoredRow.expired`) until
:func:`purge_expired` (run whenever a response is stored) deletes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, delete, insert, literal, select
from sqlalchemy.ext.asyncio import AsyncConnection

from oneflow_ai.storage.tables import ResponsesApiRecord, table_of, utcnow

__all__ = [
    "StoredRow",
    "delete_response",
    "load_chain",
    "load_response",
    "purge_expired",
    "save_response",
]

responses = table_of(ResponsesApiRecord)


@dataclass(frozen=True, slots=True)
class StoredRow:
    id: str
    project_id: str
    created_at: datetime
    expires_at: datetime
    previous_response_id: str | None
    model: str
    input: list[Any]
    response: dict[str, Any]

    def expired(self, now: datetime | None = None) -> bool:
        return self.expires_at <= (now or utcnow())


async def save_response(connection: AsyncConnection, row: StoredRow) -> None:
    await connection.execute(
        insert(responses).values(
            id=row.id,
            project_id=row.project_id,
            created_at=row.created_at,
            expires_at=row.expires_at,
            previous_response_id=row.previous_response_id,
            model=row.model,
            input=row.input,
            response=row.response,
        )
    )


async def load_response(
    connection: AsyncConnection, project_id: str, response_id: str
) -> StoredRow | None:
    """The project's response `response_id` (expired or not); None when the project has none
    of that id."""
    found = (
        await connection.execute(
            select(responses).where(
                responses.c.id == response_id, responses.c.project_id == project_id
            )
        )
    ).first()
    return None if found is None else _row(found)


async def load_chain(
    connection: AsyncConnection, project_id: str, response_id: str, *, limit: int
) -> list[StoredRow]:
    """The project's response `response_id` and the responses it continued, newest first
    (at most `limit`), in one recursive query; it stops at a response the project has not
    (any more): the caller compares the last row's `previous_response_id`."""
    columns = [*responses.c]
    first = (
        select(*columns, literal(0).label("depth"))
        .where(responses.c.id == response_id, responses.c.project_id == project_id)
        .cte("chain", recursive=True)
    )
    earlier = (
        select(*columns, (first.c.depth + 1).label("depth"))
        .join(first, responses.c.id == first.c.previous_response_id)
        .where(responses.c.project_id == project_id, first.c.depth < limit - 1)
    )
    chain = first.union_all(earlier)
    found = await connection.execute(select(chain).order_by(chain.c.depth))
    return [_row(row) for row in found]


def _row(found: Row[Any]) -> StoredRow:
    return StoredRow(
        id=found.id,
        project_id=found.project_id,
        created_at=found.created_at,
        expires_at=found.expires_at,
        previous_response_id=found.previous_response_id,
        model=found.model,
        input=list(found.input or ()),
        response=dict(found.response or {}),
    )


async def delete_response(connection: AsyncConnection, project_id: str, response_id: str) -> bool:
    """Delete the project's response `response_id` that has not expired; whether there was
    one."""
    result = await connection.execute(
        delete(responses).where(
            responses.c.id == response_id,
            responses.c.project_id == project_id,
            responses.c.expires_at > utcnow(),
        )
    )
    return bool(result.rowcount)


async def purge_expired(connection: AsyncConnection, *, now: datetime | None = None) -> int:
    """Delete every expired response; returns how many."""
    result = await connection.execute(
        delete(responses).where(responses.c.expires_at <= (now or utcnow()))
    )
    return int(result.rowcount or 0)
