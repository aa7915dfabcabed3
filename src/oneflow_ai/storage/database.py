"""The database engine: embedded SQLite (WAL) by default, PostgreSQL in production.

One storage layer serves both. Callers get an `AsyncEngine` and an `async_sessionmaker`; the
SQLite pragmas that make a file database safe for concurrent readers and one writer are set on
every new connection.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, Connection, Engine, Table, event, text, update
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

__all__ = [
    "BEGINS_IMMEDIATE",
    "begin_immediate",
    "create_engine",
    "create_sessionmaker",
    "describe_database",
    "is_sqlite",
    "lock_for_update",
    "ping",
    "sqlite_file_engine",
    "sqlite_path",
]


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def sqlite_path(url: str | URL) -> Path | None:
    """The absolute path of an SQLite file database; None for PostgreSQL or in-memory SQLite."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database).absolute()


def describe_database(url: str | URL) -> str:
    """The database for a person to read: an SQLite file's absolute path, or the server's URL
    without the driver and with the password hidden (`postgresql://oneflow:***@db:5432/x`)."""
    path = sqlite_path(url)
    if path is not None:
        return str(path)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return "in-memory SQLite"
    return parsed.set(drivername=parsed.get_backend_name()).render_as_string(hide_password=True)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=10000")
    finally:
        cursor.close()


def create_engine(
    url: str,
    *,
    pool_size: int = 10,
    echo: bool = False,
    connect_timeout: float | None = None,
    command_timeout: float | None = None,
) -> AsyncEngine:
    """Build the async engine for `url` (already normalised by the settings).

    On PostgreSQL, ``connect_timeout`` bounds opening a connection and ``command_timeout`` one
    statement (asyncpg's own timeouts), so that an unreachable server fails requests in
    seconds, and trips the ledger's health flag, instead of hanging them."""
    if is_sqlite(url):
        database = make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        # No rollback when a connection goes back to the pool: SQLAlchemy's connections end
        # their own transactions (commit, or rollback on close), so the pool's extra one only
        # cost a round trip to aiosqlite's thread after every transaction.
        engine = create_async_engine(
            url,
            echo=echo,
            pool_size=pool_size,
            max_overflow=0,
            pool_pre_ping=False,
            pool_reset_on_return=None,
        )
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    connect_args: dict[str, float] = {}
    if connect_timeout is not None and url.startswith("postgresql+asyncpg"):
        connect_args["timeout"] = connect_timeout
    if command_timeout is not None and url.startswith("postgresql+asyncpg"):
        connect_args["command_timeout"] = command_timeout
    return create_async_engine(
        url,
        echo=echo,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_recycle=1800,
        connect_args=connect_args,
    )


def sqlite_file_engine(engine: AsyncEngine) -> Engine | None:
    """A synchronous engine on the same SQLite file as ``engine`` (None for PostgreSQL or an
    in-memory database), with the same pragmas, for one thread that writes in batches. Its
    transactions begin with ``BEGIN IMMEDIATE``: they hold the write lock before they read.

    Through aiosqlite every statement is a round trip to its connection's thread and back to
    the event loop; a batch written on a thread of its own with the plain ``sqlite3`` driver
    costs the event loop one round trip for the whole transaction.
    """
    url = engine.url
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    sync = create_sync_engine(
        url.set(drivername="sqlite"),
        pool_size=1,
        max_overflow=0,
        pool_reset_on_return=None,
        connect_args={"check_same_thread": False},
    )
    # Pool events only: a connection event (such as "begin") would make SQLAlchemy dispatch
    # events around every statement, which costs more than the statements themselves.
    event.listen(sync.pool, "connect", _sqlite_pragmas)
    event.listen(sync.pool, "connect", _manual_begin)
    return sync


#: In a connection's ``info``: its transactions hold SQLite's write lock from their first
#: statement (``BEGIN IMMEDIATE``), so nothing needs to take it explicitly before reading.
BEGINS_IMMEDIATE = "oneflow_begins_immediate"


def _manual_begin(dbapi_connection: Any, record: Any) -> None:
    dbapi_connection.isolation_level = None  # the driver begins nothing: begin_immediate does
    record.info[BEGINS_IMMEDIATE] = True


def begin_immediate(connection: Connection) -> None:
    """Open the transaction of a `sqlite_file_engine` connection, taking the write lock."""
    connection.exec_driver_sql("BEGIN IMMEDIATE")


async def lock_for_update(session: AsyncSession, table: Table, key: ColumnElement[bool]) -> None:
    """Before reading a row to update it: on SQLite, which has no row locks and begins a
    transaction only at its first write, a write that changes nothing, so that this transaction
    holds the database's write lock before it reads and no other writer changes the row until
    it commits (PostgreSQL's ``SELECT ... FOR UPDATE`` does this for one row)."""
    bind = session.bind
    if bind is not None and bind.dialect.name == "sqlite":
        first = next(iter(table.primary_key.columns))
        await session.execute(update(table).where(key).values({first.name: first}))


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def ping(engine: AsyncEngine) -> None:
    """One round trip; raises when the database cannot answer."""
    async with engine.connect() as connection:
        await connection.execute(text("SELECT 1"))
