"""`run_all`: writes returning rows, on disjoint tables, as one statement on PostgreSQL."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, select

from oneflow_ai.storage.database import create_engine
from oneflow_ai.storage.direct_sql import deferred_writes, run, run_all
from oneflow_ai.storage.ledger_statements import ledger_statements
from oneflow_ai.storage.sql_plans import Plan
from oneflow_ai.storage.tables import LedgerEntry, LedgerReservation, Project, table_of
from tests.storage.test_direct_sql import entry as _entry

entries, reservations = table_of(LedgerEntry), table_of(LedgerReservation)
projects = table_of(Project)
AT = datetime(2026, 11, 26, 12, 30, 15, 123456, tzinfo=UTC)


def test_writes_returning_rows_combine_into_one_tagged_select() -> None:
    """Each write is a ``WITH`` clause, numbered on; each returned row is its clause's index and
    then every clause's columns, the others' NULL."""
    from oneflow_ai.storage.sql_combined import returning

    charges = Plan(
        "INSERT INTO e (x, y) VALUES ($1, $2) RETURNING e.r", ("x", "y"), (None, None), {}, (None,)
    )
    charges = replace(charges, row_values="($1, $2)", numbered=True)
    resolve = Plan(
        "DELETE FROM r WHERE r.id = ANY($1) RETURNING r.id, r.a",
        ("ids",),
        (None,),
        {},
        (None, None),
    )
    assert returning([(charges, 2), (resolve, 1)]) == (
        "WITH w0 AS (INSERT INTO e (x, y) VALUES ($1, $2), ($3, $4) RETURNING e.r), "
        "w1 AS (DELETE FROM r WHERE r.id = ANY($5) RETURNING r.id, r.a) "
        "SELECT 0, w0.*, NULL, NULL FROM w0 UNION ALL SELECT 1, NULL, w1.* FROM w1"
    )


def test_checked_writes_fail_by_a_division_by_zero_unless_each_changed_its_rows() -> None:
    """`all_or_nothing`'s statement: every part a ``WITH`` clause, and a main query dividing by
    whether each checked clause (the first ones) returned as many rows as it should."""
    from oneflow_ai.storage.sql_combined import checked

    draw = Plan(
        "UPDATE l SET a = a - $1 WHERE id = $2 RETURNING l.id",
        ("x", "id"),
        (None, None),
        {},
        (None,),
    )
    drop = Plan("DELETE FROM l WHERE id = ANY($1) RETURNING l.id", ("ids",), (None,), {}, (None,))
    charge = Plan("INSERT INTO e (x) VALUES ($1)", ("x",), (None,), {}, None)
    charge = replace(charge, row_values="($1)", numbered=True)
    assert checked([(draw, 1), (drop, 1), (charge, 2)], (1, 3)) == (
        "WITH w0 AS (UPDATE l SET a = a - $1 WHERE id = $2 RETURNING l.id), "
        "w1 AS (DELETE FROM l WHERE id = ANY($3) RETURNING l.id), "
        "w2 AS (INSERT INTO e (x) VALUES ($4), ($5)) "
        "SELECT 1 / ((SELECT count(*) FROM w0) = 1 AND (SELECT count(*) FROM w1) = 3)::int"
    )


def _record(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The first word of each statement `direct_sql` sends from now on."""
    from oneflow_ai.storage import direct_sql

    executed: list[str] = []
    execute = direct_sql._execute

    def spy(connection: Connection, sql: str, *args: Any, **kwargs: Any) -> Any:
        executed.append(sql.split()[0])
        return execute(connection, sql, *args, **kwargs)

    monkeypatch.setattr(direct_sql, "_execute", spy)
    return executed


def entry(request_id: str, amount: int) -> dict[str, object]:
    return _entry(request_id, amount, audio_seconds=0)


def _reservation(id_: str) -> dict[str, object]:
    return {
        "id": id_,
        "request_id": f"req-{id_}",
        "project_id": "p1",
        "model": "gpt-4o",
        "provider": "openai",
        "amount": 0,
        "max_micro_credits": 0,
        "owner": "o1",
        "created_at": AT,
        "expires_at": AT + timedelta(minutes=5),
    }


@pytest.mark.postgres
async def test_postgresql_charges_and_resolve_travel_as_one_statement(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch's charges and its reservations' resolve are one statement returning each one's
    rows (only the new charges, only the reservations still there), after the writes deferred
    before them; statements on one table, and any outside PostgreSQL, run one by one."""
    engine = create_engine(postgres_url, pool_size=1)

    def work(connection: Connection) -> list[object]:
        sql = ledger_statements(connection)
        connection.execute(projects.insert(), [{"id": "p1", "name": "one", "created_at": AT}])
        connection.execute(reservations.insert(), [_reservation("a"), _reservation("b")])
        run(connection, sql.insert_charges, [entry("r1", -5)])
        executed = _record(monkeypatch)
        with deferred_writes(connection):
            run(connection, sql.upsert_balance, {"p": "p1", "delta": 1, "at": AT})
            found = run_all(
                connection,
                [
                    (sql.insert_charges, [entry("r1", -5), entry("r2", -7), entry("r3", -1)]),
                    (sql.resolve, {"ids": ["a", "c"]}),
                ],
            )
            assert executed == ["INSERT", "WITH"]  # the deferred upsert first, then both
            again = run_all(
                connection, [(sql.resolve, {"ids": ["b"]}), (sql.resolve, {"ids": ["b", "a"]})]
            )
            assert executed == ["INSERT", "WITH", "DELETE", "DELETE"]
        return [[list(rows) for rows in found], [list(rows) for rows in again]]

    try:
        async with engine.begin() as connection:
            found, again = await connection.run_sync(work)
        async with engine.connect() as connection:
            amounts = (
                await connection.execute(select(entries.c.amount).order_by(entries.c.amount))
            ).scalars()
            assert list(amounts) == [-7, -5, -1]
    finally:
        await engine.dispose()
    assert found == [[("r2",), ("r3",)], [("a",)]]
    assert again == [[("b",)], []]


@pytest.mark.postgres
async def test_postgresql_a_locking_read_joins_the_writes_of_other_tables(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ``SELECT ... FOR UPDATE`` (the leases a batch draws on) travels with the charges, on
    another table, and returns the rows as they were; after a write of its own table it runs
    apart, and so sees that write."""
    from oneflow_ai.storage.ledger_leases import held

    engine = create_engine(postgres_url, pool_size=1)

    def work(connection: Connection) -> list[list[list[tuple[Any, ...]]]]:
        sql = ledger_statements(connection)
        connection.execute(projects.insert(), [{"id": "p1", "name": "one", "created_at": AT}])
        lease = {**_reservation("lease"), "amount": 40}
        connection.execute(reservations.insert(), [lease, _reservation("a")])
        executed = _record(monkeypatch)
        together = run_all(
            connection, [(sql.insert_charges, [entry("r1", -5)]), *held(connection, ["lease"])]
        )
        assert executed == ["WITH"]
        apart = run_all(
            connection, [(sql.resolve, {"ids": ["a", "lease"]}), *held(connection, ["lease"])]
        )
        assert executed == ["WITH", "DELETE", "SELECT"]
        return [[list(rows) for rows in found] for found in (together, apart)]

    try:
        async with engine.begin() as connection:
            together, apart = await connection.run_sync(work)
    finally:
        await engine.dispose()
    assert together == [[("r1",)], [("lease", 40)]]
    assert [sorted(apart[0]), apart[1]] == [[("a",), ("lease",)], []]


def _progress(id_: str, output_tokens: int) -> dict[str, object]:
    return {
        "id": id_,
        "amount": 0,
        "max_micro_credits": 0,
        "request_id": f"req-{id_}",
        "project_id": "p1",
        "user_id": None,
        "key_id": None,
        "model": "gpt-4o",
        "provider": "openai",
        "owner": "o1",
        "created_at": AT,
        "expires_at": AT + timedelta(minutes=5),
        "input_tokens": 3,
        "output_tokens": output_tokens,
        "micro_credits": 7,
        "price_table_version": "v1",
        "at": AT,
    }


@pytest.mark.postgres
async def test_postgresql_all_or_nothing_commits_one_statement_or_writes_nothing(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writes on disjoint tables and a checked draw, or an upsert of several rows, as one
    statement with no BEGIN or COMMIT; a draw the lease cannot cover, a charge already there
    or an upsert meeting one row twice makes the statement write nothing (False); inside a
    begun transaction nothing is sent (None)."""
    from oneflow_ai.storage.direct_sql import all_or_nothing
    from oneflow_ai.storage.ledger_leases import draw_whole

    engine = create_engine(postgres_url, pool_size=1)
    async with engine.begin() as connection:
        await connection.execute(projects.insert(), [{"id": "p1", "name": "one", "created_at": AT}])
        await connection.execute(reservations.insert(), [{**_reservation("lease"), "amount": 40}])

    def work(connection: Connection) -> list[bool | None]:
        sql = ledger_statements(connection)
        executed = _record_alone(monkeypatch)

        def charge(request_id: str, draw: int) -> bool | None:
            return all_or_nothing(
                connection,
                [(sql.insert_entries, [entry(request_id, -draw)])],
                checked=[draw_whole({"lease": draw})],
            )

        def checkpoint(streams: list[str]) -> bool | None:
            rows = [_progress(stream, 5) for stream in streams]
            return all_or_nothing(connection, [(sql.checkpoint, rows)])

        outcomes = [
            charge("r1", 10),  # committed: the lease holds 30 more
            charge("r2", 31),  # the lease holds less
            charge("r1", 1),  # r1's charge is there
            checkpoint(["s1", "s2"]),  # committed
            checkpoint(["s3", "s3"]),  # one stream's row twice
        ]
        assert executed == ["WITH", "WITH", "WITH", "INSERT", "INSERT"]
        run(connection, select(entries.c.id))  # a transaction begins
        outcomes.append(charge("r4", 1))
        assert len(executed) == 5
        return outcomes

    try:
        async with engine.connect() as connection:
            outcomes = await connection.run_sync(work)
            await connection.rollback()
        async with engine.connect() as connection:
            charges = await connection.execute(select(entries.c.request_id))
            rows = await connection.execute(
                select(reservations.c.id, reservations.c.amount).order_by(reservations.c.id)
            )
            assert (list(charges.scalars()), list(rows)) == (
                ["r1"],
                [("lease", 30), ("s1", 0), ("s2", 0)],
            )
    finally:
        await engine.dispose()
    assert outcomes == [True, False, False, True, False, None]


def _record_alone(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The first word of each statement `direct_sql` sends alone (in no transaction) from now
    on."""
    from oneflow_ai.storage import direct_sql

    executed: list[str] = []
    fetch = direct_sql._fetch

    async def spy(adapted: Any, sql: str, args: Any, **kwargs: Any) -> Any:
        if kwargs.get("refused"):
            executed.append(sql.split()[0])
        return await fetch(adapted, sql, args, **kwargs)

    monkeypatch.setattr(direct_sql, "_fetch", spy)
    return executed
