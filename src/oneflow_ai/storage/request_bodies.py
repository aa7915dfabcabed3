"""Stored prompts and answers: a project's opt-in policy, the bodies, and their retention.

Nothing is stored unless a project's ``request_log_policies`` row says ``store_bodies``. A
stored body expires ``retention_days`` after its request: it is never read once expired, and
:func:`purge_expired` deletes expired rows (the writer calls it now and then).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from oneflow_ai.storage.dialect import upsert_insert
from oneflow_ai.storage.tables import RequestBody, RequestLogPolicy, table_of, utcnow

__all__ = [
    "BodyPolicy",
    "BodyRow",
    "get_policy",
    "insert_bodies",
    "load_body",
    "purge_expired",
    "set_policy",
]

policies = table_of(RequestLogPolicy)
bodies = table_of(RequestBody)


@dataclass(frozen=True, slots=True)
class BodyPolicy:
    """Whether a project stores bodies, for how long, and which optional redaction rules
    apply on top of the credential rule that always does."""

    store_bodies: bool = False
    retention_days: int = 7
    redact: tuple[str, ...] = field(default=())

    def as_dict(self) -> dict[str, object]:
        return {
            "store_bodies": self.store_bodies,
            "retention_days": self.retention_days,
            "redact": list(self.redact),
        }


@dataclass(frozen=True, slots=True)
class BodyRow:
    request_id: str
    project_id: str
    occurred_at: datetime
    expires_at: datetime
    request: dict[str, Any] | None
    response: dict[str, Any] | None


async def get_policy(connection: AsyncConnection, project_id: str) -> BodyPolicy:
    """The project's policy (the default, storing nothing, when it has none)."""
    row = (
        await connection.execute(select(policies).where(policies.c.project_id == project_id))
    ).first()
    if row is None:
        return BodyPolicy()
    return BodyPolicy(row.store_bodies, row.retention_days, tuple(row.redact or ()))


async def set_policy(connection: AsyncConnection, project_id: str, policy: BodyPolicy) -> None:
    values = {
        "store_bodies": policy.store_bodies,
        "retention_days": policy.retention_days,
        "redact": list(policy.redact),
        "updated_at": utcnow(),
    }
    statement = upsert_insert(connection, policies).values(project_id=project_id, **values)
    await connection.execute(
        statement.on_conflict_do_update(index_elements=["project_id"], set_=values)
    )


async def insert_bodies(connection: AsyncConnection, rows: list[BodyRow]) -> None:
    if rows:
        await connection.execute(
            insert(bodies),
            [
                {
                    "request_id": r.request_id,
                    "project_id": r.project_id,
                    "occurred_at": r.occurred_at,
                    "expires_at": r.expires_at,
                    "request": r.request,
                    "response": r.response,
                }
                for r in rows
            ],
        )


async def load_body(
    connection: AsyncConnection, request_id: str, *, now: datetime | None = None
) -> dict[str, Any] | None:
    """The stored request and response of ``request_id``, unless none or expired."""
    row = (
        await connection.execute(
            select(bodies.c.request, bodies.c.response, bodies.c.expires_at).where(
                bodies.c.request_id == request_id, bodies.c.expires_at > (now or utcnow())
            )
        )
    ).first()
    if row is None:
        return None
    return {"request": row.request, "response": row.response, "expires_at": row.expires_at}


async def purge_expired(connection: AsyncConnection, *, now: datetime | None = None) -> int:
    """Delete every expired body; returns how many."""
    expired = bodies.c.expires_at <= (now or utcnow())
    result = await connection.execute(delete(bodies).where(expired))
    return int(result.rowcount or 0)
