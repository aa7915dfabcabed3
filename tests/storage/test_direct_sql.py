"""Statements run on SQLite's cursor store and return exactly what SQLAlchemy's execution does."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Connection, Engine, select, text
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy.exc import DBAPIError, IntegrityError

from oneflow_ai.storage.database import create_engine, sqlite_file_engine
from oneflow_ai.storage.direct_sql import run
from oneflow_ai.storage.ledger_statements import ledger_statements
from oneflow_ai.storage.tables import (
    Budget,
    BudgetCounter,
    LedgerAccount,
    LedgerEntry,
    Project,
    table_of,
    utcnow,
)
from tests.support.databases import migrated_sqlite_url
from tests.support.pg_statements import record_statements

entries, accounts = table_of(LedgerEntry), table_of(LedgerAccount)
counters, budgets, projects = table_of(BudgetCounter), table_of(Budget), table_of(Project)
AT = datetime(2026, 11, 26, 12, 30, 15, 123456, tzinfo=UTC)


def entry(request_id: str, amount: int, **changes: object) -> dict[str, object]:
    values: dict[str, object] = {
        "project_id": "p1",
        "kind": "charge",
        "amount": amount,
        "request_id": request_id,
        "model": "gpt-4o",
        "provider": "openai",
        "input_tokens": 10,
        "output_tokens": 5,
        "images": 0,
        "characters": 0,
        "price_table_version": "v1",
        "estimated": True,
        "user_id": None,
        "key_id": None,
        "note": None,
        "created_at": AT,
    }
    return {**values, **changes}


@pytest.fixture
def engines(tmp_path: Path) -> tuple[Engine, Engine]:
    """Two engines on one migrated file: the writer's (direct path) and a plain one."""
    url = migrated_sqlite_url(tmp_path / "direct.db")
    file_engine = sqlite_file_engine(create_engine(url))
    assert file_engine is not None
    plain = create_sync_engine(url.replace("+aiosqlite", ""))
    with plain.begin() as connection:
        connection.execute(projects.insert(), [{"id": "p1", "name": "one", "created_at": AT}])
    return file_engine, plain


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The SQL texts the direct path hands the driver, in order."""
    from oneflow_ai.storage import direct_sql

    texts: list[str] = []
    execute = direct_sql._execute

    def recording(
        connection: Connection, sql: str, values: list[tuple[object, ...]], *, fetch: bool = False
    ) -> list[tuple[object, ...]]:
        texts.append(sql)
        return execute(connection, sql, values, fetch=fetch)

    monkeypatch.setattr(direct_sql, "_execute", recording)
    return texts


def both(engines: tuple[Engine, Engine], work: object) -> list[list[tuple[object, ...]]]:
    """Run ``work(connection, suffix)`` on both paths; return what each returned."""
    outputs = []
    for engine, suffix in zip(engines, ("direct", "core"), strict=True):
        with engine.connect() as connection, connection.begin():
            outputs.append(work(connection, suffix))  # type: ignore[operator]
    return outputs


def test_writes_store_the_same_values_as_core(engines: tuple[Engine, Engine]) -> None:
    def work(connection: Connection, suffix: str) -> list[tuple[object, ...]]:
        sql = ledger_statements(connection)
        run(connection, sql.insert_entries, [entry(f"{suffix}-a", -5), entry(f"{suffix}-b", -7)])
        run(connection, sql.upsert_balance, {"p": "p1", "delta": -12, "at": AT})
        return list(run(connection, sql.insert_charges, [entry(f"{suffix}-a", -5)]))

    direct, core = both(engines, work)
    assert direct == core == []  # the charge was already there: ON CONFLICT DO NOTHING

    with engines[1].connect() as connection:
        rows = connection.execute(
            select(entries).where(entries.c.request_id.like("%-%")).order_by(entries.c.id)
        ).all()
        account = connection.execute(select(accounts)).one()
        stored = connection.exec_driver_sql(  # the text SQLite holds, not what reads make of it
            "SELECT request_id, created_at, estimated FROM ledger_entries ORDER BY id"
        ).all()
    by_path = {
        path: [
            {k: v for k, v in row._mapping.items() if k not in ("id", "request_id")}
            for row in rows
            if row.request_id.startswith(path)
        ]
        for path in ("direct", "core")
    }
    assert by_path["direct"] == by_path["core"]
    assert by_path["direct"][0]["created_at"] == AT  # the UTC datetime round-trips exactly
    assert by_path["direct"][0]["estimated"] is True
    assert account.balance == -24 and account.mode == "postpaid"
    texts = {row[0].split("-", 1)[1]: row[1:] for row in stored if row[0].startswith("direct")}
    assert texts == {
        row[0].split("-", 1)[1]: row[1:] for row in stored if row[0].startswith("core")
    }
    assert texts["a"] == ("2026-11-26 12:30:15.123456", 1)


def test_returning_and_in_lists_read_back_typed_rows(engines: tuple[Engine, Engine]) -> None:
    start = date(2026, 11, 1)

    def work(connection: Connection, suffix: str) -> list[object]:
        sql = ledger_statements(connection)
        budget = f"b-{suffix}"
        connection.execute(
            budgets.insert(),
            [
                {
                    "id": budget,
                    "project_id": "p1",
                    "period": "month",
                    "limit_value": 100,
                    "mode": "hard",
                    "metric": "credits",
                    "key_id": suffix,  # one budget per path
                    "created_at": AT,
                    "updated_at": AT,
                }
            ],
        )
        run(connection, sql.ensure_counter, [{"b": budget, "d": start}])
        used = run(connection, sql.add_used, {"b": budget, "d": start, "x": 30}).one()
        inserted = run(connection, sql.insert_charges, [entry(f"{suffix}-c", -3)])
        locked = run(connection, sql.lock_accounts, {"ids": ["p1", "nobody"]})
        counter = connection.execute(select(counters).where(counters.c.budget_id == budget)).one()
        return [used, list(inserted), list(locked), counter.period_start, counter.used]

    direct, core = both(engines, work)
    assert direct[0] == core[0] == (30,)
    assert direct[1] == [("direct-c",)] and core[1] == [("core-c",)]
    assert direct[3] == core[3] == start and direct[4] == core[4] == 30
    assert direct[2] == [] or direct[2] == core[2]


def test_many_rows_returning_are_one_statement_with_the_same_outcome(
    engines: tuple[Engine, Engine], sent: list[str]
) -> None:
    """Charges for many requests at once (one already charged, one twice in the list) insert
    and return what one statement per row would: each new charge once."""

    def work(connection: Connection, suffix: str) -> list[object]:
        sql = ledger_statements(connection)
        run(connection, sql.insert_charges, [entry(f"{suffix}-old", -1, audio_seconds=0)])
        sent.clear()
        many = [entry(f"{suffix}-{i}", -i, audio_seconds=0) for i in range(5)]
        many += [entry(f"{suffix}-old", -1, audio_seconds=0)]
        many.append(entry(f"{suffix}-2", -2, audio_seconds=0))
        return [sorted(run(connection, sql.insert_charges, many)), list(sent)]

    (direct, direct_sent), (core, core_sent) = both(engines, work)
    assert direct == [(f"direct-{i}",) for i in range(5)]
    assert core == [(f"core-{i}",) for i in range(5)]
    assert len(direct_sent) == 1 and direct_sent[0].count("(?, ?") == 7  # seven rows at once
    assert core_sent == []
    with engines[1].connect() as connection:
        amounts = {
            path: sorted(
                connection.execute(
                    select(entries.c.amount).where(entries.c.request_id.like(f"{path}-%"))
                ).scalars()
            )
            for path in ("direct", "core")
        }
    assert amounts["direct"] == amounts["core"] == [-4, -3, -2, -1, -1, 0]


def test_row_values_finds_an_inserts_one_row_of_all_parameters() -> None:
    from oneflow_ai.storage.sql_plans import _row_values

    sql = "INSERT INTO t (a, b) VALUES ($1, lower($2)) ON CONFLICT (a) DO NOTHING RETURNING a"
    assert _row_values(sql, 2, numbered=True) == "($1, lower($2))"
    assert _row_values("INSERT INTO t (a) VALUES (?) RETURNING a", 1, numbered=False) == "(?)"
    assert _row_values("INSERT INTO t (a) VALUES (?) RETURNING a", 2, numbered=False) is None
    # a parameter outside the row, or a literal in it: not a plain row of parameters
    assert _row_values("INSERT INTO t (a) VALUES ($1) RETURNING $2", 2, numbered=True) is None
    assert _row_values("INSERT INTO t (a, b) VALUES (?, 'x')", 1, numbered=False) is None
    assert _row_values("UPDATE t SET a = ? WHERE b = ?", 2, numbered=False) is None


def test_errors_are_sqlalchemys_and_defaults_still_apply(engines: tuple[Engine, Engine]) -> None:
    file_engine = engines[0]
    with file_engine.connect() as connection, connection.begin():
        sql = ledger_statements(connection)
        with pytest.raises(IntegrityError):  # no such project: the foreign key refuses it
            run(connection, sql.insert_entries, [entry("orphan", -1, project_id="nobody")])
    before = utcnow()
    with file_engine.connect() as connection, connection.begin():
        without_time = entry("defaulted", -1)
        del without_time["created_at"]  # a Python-side default: SQLAlchemy's execution fills it
        run(connection, ledger_statements(connection).insert_entries, [without_time])
        stored = connection.execute(
            select(entries.c.created_at).where(entries.c.request_id == "defaulted")
        ).scalar_one()
    assert before - timedelta(seconds=1) <= stored <= utcnow() + timedelta(seconds=1)


def test_postgresql_placeholders_are_renumbered_and_a_list_is_one_array() -> None:
    """``$n`` follow the parameters in order (a repeated one keeps its number), and an
    expanding ``IN`` list becomes ``= ANY($n)``: one prepared statement for every length."""
    from oneflow_ai.storage.sql_plans import _as_array

    sql = "SELECT a FROM t WHERE b = $1 AND a IN (__[POSTCOMPILE_ids]) AND c = $2 OR d = $1"
    assert _as_array(sql, ("x", "ids", "y"), "ids") == (
        "SELECT a FROM t WHERE b = $1 AND a = ANY($2) AND c = $3 OR d = $1"
    )
    assert _as_array("DELETE FROM t WHERE a NOT IN (__[POSTCOMPILE_ids])", ("ids",), "ids") is None
    assert _as_array("UPDATE t SET a = $1 WHERE b = $2 AND c = $2", ("a", "b"), None) == (
        "UPDATE t SET a = $1 WHERE b = $2 AND c = $2"
    )


@pytest.mark.postgres
async def test_postgresql_runs_on_the_asyncpg_cursor_with_the_same_results(
    postgres_url: str,
) -> None:
    """Inside ``run_sync`` on asyncpg, writes, ``RETURNING`` (one row and many) and ``IN`` lists
    give what SQLAlchemy's own execution gives, in the connection's transaction."""
    engine = create_engine(postgres_url, pool_size=1)

    def work(connection: Connection) -> list[object]:
        sql = ledger_statements(connection)
        connection.execute(projects.insert(), [{"id": "p1", "name": "one", "created_at": AT}])
        run(connection, sql.insert_entries, [entry(None, 500, kind="topup")])  # type: ignore[arg-type]
        one = run(connection, sql.insert_charges, [entry("r1", -3)])
        many = run(connection, sql.insert_charges, [entry("r2", -4), entry("r1", -3)])
        run(connection, sql.upsert_balance, {"p": "p1", "delta": 493, "at": AT})
        locked = run(connection, sql.lock_accounts, {"ids": ["p1", "nobody", "p2"]})
        found = run(connection, sql.recorded, {"ids": []})
        return [list(one), sorted(many), list(locked), list(found)]

    try:
        async with engine.begin() as connection:
            one, many, locked, found = await connection.run_sync(work)
        async with engine.connect() as connection:
            amounts = (
                await connection.execute(select(entries.c.amount).order_by(entries.c.amount))
            ).scalars()
            assert list(amounts) == [-4, -3, 500]
    finally:
        await engine.dispose()
    assert one == [("r1",)] and many == [("r2",)]  # r1 was charged already: not again
    assert locked == [("p1", "postpaid", 493, 0)]
    assert found == []


@pytest.mark.postgres
async def test_postgresql_errors_are_the_ones_sqlalchemys_execution_raises(
    postgres_url: str,
) -> None:
    """On asyncpg the direct path raises what ``connection.execute`` raises for the same
    statement: the same class, driver error and SQLSTATE; and on a connection the server
    closed, an error SQLAlchemy marks as an invalidated connection, as its own path does."""
    engine = create_engine(postgres_url, pool_size=2)
    orphan = entry("orphan", -1, project_id="nobody", audio_seconds=0)

    def direct(connection: Connection) -> None:
        run(connection, ledger_statements(connection).insert_entries, [orphan])

    def core(connection: Connection) -> None:
        connection.execute(entries.insert(), [orphan])

    async def raised(work: Callable[[Connection], None], *, closed: bool) -> DBAPIError:
        async with engine.connect() as connection:
            if closed:
                driver = (await connection.get_raw_connection()).driver_connection
                async with engine.connect() as other:
                    pid = driver.get_server_pid()  # type: ignore[union-attr]
                    await other.execute(text(f"SELECT pg_terminate_backend({int(pid)})"))
                while not driver.is_closed():  # type: ignore[union-attr]
                    await asyncio.sleep(0.01)  # until the driver has read the server's goodbye
            with pytest.raises(DBAPIError) as error:
                await connection.run_sync(work)
            return error.value

    try:
        for closed in (False, True):
            mine, theirs = [await raised(work, closed=closed) for work in (direct, core)]
            assert type(mine) is type(theirs)
            assert type(mine.orig) is type(theirs.orig)
            assert getattr(mine.orig, "sqlstate", None) == getattr(theirs.orig, "sqlstate", None)
            assert mine.connection_invalidated is theirs.connection_invalidated is closed
            if not closed:  # the foreign key refuses an entry of no project
                assert isinstance(mine, IntegrityError)
                assert getattr(mine.orig, "sqlstate", None) == "23503"
    finally:
        await engine.dispose()


@pytest.mark.postgres
async def test_postgresql_many_rows_returning_are_one_statement(
    postgres_url: str, sent: list[str]
) -> None:
    """On asyncpg too, many rows returning theirs are one statement, its rows numbered on."""
    engine = create_engine(postgres_url, pool_size=1)

    def work(connection: Connection) -> list[tuple[object, ...]]:
        sql = ledger_statements(connection)
        connection.execute(projects.insert(), [{"id": "p1", "name": "one", "created_at": AT}])
        run(connection, sql.insert_charges, [entry("r1", -3, audio_seconds=0)])
        sent.clear()
        rows = [entry(f"r{i}", -i, audio_seconds=i) for i in (1, 2, 3, 2)]
        return sorted(run(connection, sql.insert_charges, rows))

    try:
        async with engine.begin() as connection:
            returned = await connection.run_sync(work)
        async with engine.connect() as connection:
            stored = (
                await connection.execute(
                    select(
                        entries.c.request_id, entries.c.amount, entries.c.audio_seconds
                    ).order_by(entries.c.request_id)
                )
            ).all()
    finally:
        await engine.dispose()
    assert returned == [("r2",), ("r3",)]
    assert [tuple(row) for row in stored] == [("r1", -3, 0), ("r2", -2, 2), ("r3", -3, 3)]
    assert len(sent) == 1 and "$68" in sent[0] and "$69" not in sent[0]  # 4 rows of 17


def test_deferred_writes_combine_into_one_statement_in_their_order() -> None:
    """The first write is the main statement and the others ``WITH`` clauses written last to
    first (PostgreSQL runs them after the main one, from the last written), numbered on."""
    from oneflow_ai.storage.sql_combined import in_order
    from oneflow_ai.storage.sql_plans import Plan

    plans = [
        Plan("UPDATE a SET x = $1 WHERE y = $2", ("x", "y"), (None, None), {}, None),
        Plan("INSERT INTO b (x) VALUES ($1)", ("x",), (None,), {}, None),
        Plan("DELETE FROM c WHERE x = ANY($1) AND y = $2", ("x", "y"), (None, None), {}, None),
    ]
    assert in_order([(plan, 1) for plan in plans]) == (
        "WITH w2 AS (DELETE FROM c WHERE x = ANY($4) AND y = $5), "
        "w1 AS (INSERT INTO b (x) VALUES ($3)) "
        "UPDATE a SET x = $1 WHERE y = $2"
    )
    # an INSERT of many rows is one multi-row VALUES, the parameters after it numbered on
    many = Plan("INSERT INTO b (x, y) VALUES ($1, $2)", ("x", "y"), (None, None), {}, None)
    many = replace(many, row_values="($1, $2)", numbered=True)
    assert in_order([(plans[0], 1), (many, 3), (plans[2], 1)]) == (
        "WITH w2 AS (DELETE FROM c WHERE x = ANY($9) AND y = $10), "
        "w1 AS (INSERT INTO b (x, y) VALUES ($3, $4), ($5, $6), ($7, $8)) "
        "UPDATE a SET x = $1 WHERE y = $2"
    )


@pytest.mark.postgres
async def test_postgresql_deferred_writes_travel_together_and_land_before_a_read(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Inside ``deferred_writes`` writes on disjoint tables share a statement, writes on one
    table follow each other, a statement that reads runs after them, and an error is
    SQLAlchemy's, raised when they run; outside the block nothing is deferred."""
    from oneflow_ai.storage import direct_sql
    from oneflow_ai.storage.direct_sql import deferred_writes

    engine = create_engine(postgres_url, pool_size=1)
    executed: list[str] = []

    def work(connection: Connection) -> list[object]:
        sql = ledger_statements(connection)
        connection.execute(projects.insert(), [{"id": "p1", "name": "one", "created_at": AT}])
        record_statements(monkeypatch, executed)
        try:
            with deferred_writes(connection):
                topup = entry(None, 500, kind="topup", audio_seconds=0)  # type: ignore[arg-type]
                run(connection, sql.insert_entries, [topup])
                run(connection, sql.upsert_balance, {"p": "p1", "delta": 500, "at": AT})
                run(connection, sql.upsert_balance, {"p": "p1", "delta": -7, "at": AT})
                assert executed == ["WITH"]  # the first two; the third waits
                locked = run(connection, sql.lock_accounts, {"ids": ["p1"]})
                run(connection, sql.upsert_balance, {"p": "p1", "delta": -3, "at": AT})
            assert direct_sql._DEFERRED not in connection.info
            balance = run(connection, sql.lock_accounts, {"ids": ["p1"]})
        finally:
            monkeypatch.undo()
        return [list(locked), list(balance)]

    def failing(connection: Connection) -> None:
        sql = ledger_statements(connection)
        with deferred_writes(connection):
            stray = entry(None, 5, project_id="nobody", audio_seconds=0)  # type: ignore[arg-type]
            run(connection, sql.insert_entries, [stray])
            run(connection, sql.upsert_balance, {"p": "p1", "delta": 5, "at": AT})

    try:
        async with engine.begin() as connection:
            locked, balance = await connection.run_sync(work)
        with pytest.raises(IntegrityError):
            async with engine.begin() as connection:
                await connection.run_sync(failing)
        async with engine.connect() as connection:
            amounts = (await connection.execute(select(entries.c.amount))).scalars()
            assert list(amounts) == [500]  # the failed block's entry went with its transaction
    finally:
        await engine.dispose()
    assert executed == ["WITH", "INSERT", "SELECT", "INSERT", "SELECT"]
    assert locked == [("p1", "postpaid", 493, 0)]
    assert balance == [("p1", "postpaid", 490, 0)]


@pytest.mark.postgres
async def test_postgresql_an_insert_of_many_rows_is_deferred_as_one_statement(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Inside ``deferred_writes`` an INSERT of many rows waits with the other writes and runs
    with them as one statement, storing every row."""
    from oneflow_ai.storage.direct_sql import deferred_writes

    engine = create_engine(postgres_url, pool_size=1)
    executed: list[str] = []

    def work(connection: Connection) -> list[object]:
        sql = ledger_statements(connection)
        connection.execute(projects.insert(), [{"id": "p1", "name": "one", "created_at": AT}])
        record_statements(monkeypatch, executed)
        with deferred_writes(connection):
            topups = [
                entry(None, amount, kind="topup", audio_seconds=0)  # type: ignore[arg-type]
                for amount in (100, 20, 3)
            ]
            run(connection, sql.insert_entries, topups)
            run(connection, sql.upsert_balance, {"p": "p1", "delta": 123, "at": AT})
            assert executed == []
            locked = run(connection, sql.lock_accounts, {"ids": ["p1"]})
            assert executed == ["WITH", "SELECT"]
        return list(locked)

    try:
        async with engine.begin() as connection:
            locked = await connection.run_sync(work)
        async with engine.connect() as connection:
            amounts = (
                await connection.execute(select(entries.c.amount).order_by(entries.c.amount))
            ).scalars()
            assert list(amounts) == [3, 20, 100]
    finally:
        await engine.dispose()
    assert locked == [("p1", "postpaid", 123, 0)]
