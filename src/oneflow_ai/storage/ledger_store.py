"""Reads and administrative writes of the ledger (the hot path writes through ledger_batch).

Budgets are stored with ``''`` for "any" user, key or provider (so that the unique scope
constraint holds on both databases); rows here use ``None`` for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import delete, func, insert, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from oneflow_ai.storage.dialect import chunks, upsert_insert
from oneflow_ai.storage.ledger_commands import AccountRow
from oneflow_ai.storage.tables import (
    Budget,
    BudgetCounter,
    LedgerAccount,
    LedgerEntry,
    LedgerOwner,
    LedgerReservation,
    Project,
    table_of,
)

__all__ = [
    "BudgetRow",
    "EntryView",
    "active_reservations",
    "counters_for",
    "get_account",
    "instances_named",
    "list_entries",
    "live_owners",
    "load_budgets",
    "prepaid_projects",
    "project_exists",
    "replace_budgets",
    "set_mode",
]

accounts = table_of(LedgerAccount)
entries = table_of(LedgerEntry)
budgets = table_of(Budget)
counters = table_of(BudgetCounter)
reservations = table_of(LedgerReservation)
owners = table_of(LedgerOwner)
projects = table_of(Project)


@dataclass(frozen=True, slots=True)
class BudgetRow:
    id: str
    project_id: str
    metric: str
    period: str
    limit_value: int
    mode: str
    user_id: str | None = None
    key_id: str | None = None
    provider: str | None = None

    @property
    def scope_key(self) -> tuple[str, str, str, str, str]:
        return (
            self.user_id or "",
            self.key_id or "",
            self.provider or "",
            self.metric,
            self.period,
        )


@dataclass(frozen=True, slots=True)
class EntryView:
    """A ledger entry as read back."""

    id: int
    project_id: str
    kind: str
    amount: int
    created_at: datetime
    request_id: str | None
    model: str | None
    provider: str | None
    input_tokens: int
    output_tokens: int
    images: int
    characters: int
    price_table_version: str | None
    estimated: bool
    user_id: str | None
    key_id: str | None
    note: str | None
    audio_seconds: int


def _budget_row(row: Any) -> BudgetRow:
    return BudgetRow(
        id=row.id,
        project_id=row.project_id,
        metric=row.metric,
        period=row.period,
        limit_value=int(row.limit_value),
        mode=row.mode,
        user_id=row.user_id or None,
        key_id=row.key_id or None,
        provider=row.provider or None,
    )


async def load_budgets(
    connection: AsyncConnection, project_id: str | None = None
) -> list[BudgetRow]:
    statement = select(budgets).order_by(budgets.c.project_id, budgets.c.id)
    if project_id is not None:
        statement = statement.where(budgets.c.project_id == project_id)
    return [_budget_row(row) for row in (await connection.execute(statement)).all()]


async def prepaid_projects(connection: AsyncConnection) -> list[str]:
    result = await connection.execute(
        select(accounts.c.project_id).where(accounts.c.mode == "prepaid")
    )
    return [row[0] for row in result.all()]


async def project_exists(connection: AsyncConnection, project_id: str) -> bool:
    result = await connection.execute(select(projects.c.id).where(projects.c.id == project_id))
    return result.first() is not None


async def get_account(connection: AsyncConnection, project_id: str) -> AccountRow | None:
    row = (
        await connection.execute(
            select(
                accounts.c.project_id, accounts.c.mode, accounts.c.balance, accounts.c.reserved
            ).where(accounts.c.project_id == project_id)
        )
    ).first()
    if row is None:
        return None
    return AccountRow(project_id=row[0], mode=row[1], balance=int(row[2]), reserved=int(row[3]))


async def set_mode(
    connection: AsyncConnection, project_id: str, mode: str, now: datetime
) -> AccountRow:
    statement = upsert_insert(connection, accounts).values(
        project_id=project_id, mode=mode, balance=0, reserved=0, updated_at=now
    )
    statement = statement.on_conflict_do_update(
        index_elements=["project_id"],
        set_={"mode": statement.excluded.mode, "updated_at": statement.excluded.updated_at},
    )
    await connection.execute(statement)
    account = await get_account(connection, project_id)
    assert account is not None
    return account


async def list_entries(
    connection: AsyncConnection,
    project_id: str,
    *,
    limit: int = 100,
    before_id: int | None = None,
) -> list[EntryView]:
    """The project's entries, newest first."""
    statement = (
        select(entries)
        .where(entries.c.project_id == project_id)
        .order_by(entries.c.id.desc())
        .limit(limit)
    )
    if before_id is not None:
        statement = statement.where(entries.c.id < before_id)
    rows = (await connection.execute(statement)).mappings().all()
    return [
        EntryView(**{name: row[name] for name in EntryView.__dataclass_fields__}) for row in rows
    ]


async def counters_for(
    connection: AsyncConnection, keys: Sequence[tuple[str, date]]
) -> dict[tuple[str, date], tuple[int, int]]:
    """``(used, reserved)`` of each existing counter among ``keys``."""
    found: dict[tuple[str, date], tuple[int, int]] = {}
    for chunk in chunks(sorted(set(keys))):
        result = await connection.execute(
            select(
                counters.c.budget_id, counters.c.period_start, counters.c.used, counters.c.reserved
            ).where(tuple_(counters.c.budget_id, counters.c.period_start).in_(chunk))
        )
        for budget_id, start, used, reserved in result.all():
            found[(budget_id, start)] = (int(used), int(reserved))
    return found


async def replace_budgets(
    connection: AsyncConnection, project_id: str, wanted: Sequence[BudgetRow], now: datetime
) -> list[BudgetRow]:
    """Make the project's budgets exactly ``wanted``.

    A budget with the same scope (user, key, provider, metric, period) as an existing one
    keeps that one's id and counters (changing a limit does not reset the period's usage);
    the others are created, and the project's budgets not in ``wanted`` are deleted.
    """
    existing = {row.scope_key: row for row in await load_budgets(connection, project_id)}
    keep: set[str] = set()
    for row in wanted:
        current = existing.get(row.scope_key)
        if current is not None:
            keep.add(current.id)
            await connection.execute(
                update(budgets)
                .where(budgets.c.id == current.id)
                .values(limit_value=row.limit_value, mode=row.mode, updated_at=now)
            )
        else:
            keep.add(row.id)
            await connection.execute(
                insert(budgets).values(
                    id=row.id,
                    project_id=project_id,
                    user_id=row.user_id or "",
                    key_id=row.key_id or "",
                    provider=row.provider or "",
                    metric=row.metric,
                    period=row.period,
                    limit_value=row.limit_value,
                    mode=row.mode,
                    created_at=now,
                    updated_at=now,
                )
            )
    stale = [row.id for row in existing.values() if row.id not in keep]
    if stale:
        await connection.execute(delete(budgets).where(budgets.c.id.in_(stale)))
    return await load_budgets(connection, project_id)


async def active_reservations(connection: AsyncConnection, project_id: str | None = None) -> int:
    """How many reservations are active (for a project, or everywhere)."""
    statement = select(func.count()).select_from(reservations)
    if project_id is not None:
        statement = statement.where(reservations.c.project_id == project_id)
    return int((await connection.execute(statement)).scalar_one())


async def live_owners(connection: AsyncConnection, since: datetime) -> int:
    """How many gateway processes have heartbeaten since ``since`` (are running)."""
    statement = select(func.count()).select_from(owners).where(owners.c.heartbeat_at >= since)
    return int((await connection.execute(statement)).scalar_one())


async def instances_named(connection: AsyncConnection, name: str) -> list[str]:
    """The registered instances called ``name``, or whose base is ``name`` (``name/<slot>``)."""
    statement = (
        select(owners.c.instance)
        .where(
            (owners.c.instance == name) | owners.c.instance.startswith(f"{name}/", autoescape=True)
        )
        .distinct()
        .order_by(owners.c.instance)
    )
    return [row[0] for row in (await connection.execute(statement)).all()]
