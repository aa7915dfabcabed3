"""The order in which the ledger's one-statement writes lock rows on PostgreSQL.

Replicas write the same rows at once (a project's account, its usage rollups); two
transactions that lock two such rows in opposite orders deadlock, PostgreSQL breaks the cycle
after `deadlock_timeout` (a second) and the group-commit writer writes the batch again. So every
ledger write locks a project's account row before its usage rollups' rows, and account rows in
the order of their project ids. `tests/e2e/test_leases_replicas.py` races two replicas on this.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import asyncpg
import pytest
from sqlalchemy import text

from oneflow_ai.storage.database import create_engine
from oneflow_ai.storage.ledger_statements import charge_accounts
from oneflow_ai.storage.sql_combined import checked
from oneflow_ai.storage.sql_plans import Plan

pytestmark = pytest.mark.postgres
AT = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def _libpq(url: str) -> str:
    return url.replace("postgresql+asyncpg", "postgresql")


async def test_checked_writes_run_first_then_the_others_in_the_order_given(
    postgres_url: str,
) -> None:
    """`sql_combined.checked`: the checked writes as the final SELECT reads them, then the
    others as given (PostgreSQL runs the clauses no one reads from the last written to the
    first, so they are written last first)."""

    def stamp(table: str, returns: bool) -> Plan:
        sql = f"INSERT INTO {table} (n) VALUES (nextval('order_seen'))"
        return Plan(sql + " RETURNING n" * returns, (), (), {}, (None,) if returns else None)

    tables = ["first_checked", "second_checked", "third", "fourth", "fifth"]
    parts = [(stamp(table, i < 2), 1) for i, table in enumerate(tables)]
    connection = await asyncpg.connect(_libpq(postgres_url))
    try:
        await connection.execute(
            "CREATE SEQUENCE order_seen; "
            + " ".join(f"CREATE TABLE {table} (n bigint);" for table in tables)
        )
        await connection.execute(checked(parts, (1, 1)))
        seen = [await connection.fetchval(f"SELECT n FROM {table}") for table in tables]
    finally:
        await connection.close()
    assert seen == [1, 2, 3, 4, 5]


async def test_charging_several_accounts_locks_them_in_the_order_of_their_ids(
    postgres_url: str,
) -> None:
    """`charge_accounts` for p1 and p2, whose rows lie p2 first on disk, while another
    transaction holds p2: it waits on p2 holding p1 already (as `lock_accounts` would), so a
    third that wants p1 finds it taken; then it charges both."""
    engine = create_engine(postgres_url, pool_size=1)
    async with engine.begin() as connection:
        for project in ("p2", "p1"):  # p2's row first on disk: a scan meets it first
            await connection.execute(
                text("INSERT INTO projects (id, name, created_at) VALUES (:p, :p, :at)"),
                {"p": project, "at": AT},
            )
            await connection.execute(
                text(
                    "INSERT INTO ledger_accounts (project_id, mode, balance, reserved, updated_at)"
                    " VALUES (:p, 'prepaid', 100, 10, :at)"
                ),
                {"p": project, "at": AT},
            )
    holder = await asyncpg.connect(_libpq(postgres_url))
    other = await asyncpg.connect(_libpq(postgres_url))
    try:
        holding = holder.transaction()
        await holding.start()
        await holder.execute("SELECT 1 FROM ledger_accounts WHERE project_id = 'p2' FOR UPDATE")

        async def charge() -> None:
            async with engine.begin() as connection:
                await connection.execute(
                    charge_accounts(),
                    {"ps": ["p1", "p2"], "deltas": [-3, -4], "releases": [3, 4], "at": AT},
                )

        charging = asyncio.create_task(charge())
        await asyncio.sleep(0.5)  # it runs until it waits for p2
        assert not charging.done()
        with pytest.raises(asyncpg.LockNotAvailableError):
            await other.execute(
                "SELECT 1 FROM ledger_accounts WHERE project_id = 'p1' FOR UPDATE NOWAIT"
            )
        await holding.commit()
        await asyncio.wait_for(charging, 10)
        rows = await other.fetch(
            "SELECT project_id, balance, reserved FROM ledger_accounts ORDER BY project_id"
        )
    finally:
        await holder.close()
        await other.close()
        await engine.dispose()
    assert [tuple(row) for row in rows] == [("p1", 97, 7), ("p2", 96, 6)]
