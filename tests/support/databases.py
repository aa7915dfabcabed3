"""Real databases for tests: a fresh SQLite file, or a fresh PostgreSQL database per use.

`TEST_DATABASE_URL` names a PostgreSQL server the suite may create databases on (CI sets it);
each use gets a database of its own, so parallel runs never share state.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import threading
import uuid
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

__all__ = [
    "FUTURE_REVISION",
    "create_pg_database",
    "drop_pg_database",
    "migrated_sqlite_url",
    "pg_server_url",
    "put_schema",
    "unreachable_pg_database",
]

#: A revision no migration of this code has: what a newer release leaves in the database.
FUTURE_REVISION = "9999_a_newer_release"


def pg_server_url() -> str | None:
    url = os.environ.get("TEST_DATABASE_URL", "").strip()
    return url or None


def _dsn(url: str, database: str) -> str:
    parsed = make_url(url).set(drivername="postgresql", database=database)
    return parsed.render_as_string(hide_password=False)


async def create_pg_database(server_url: str, prefix: str = "oneflow_test") -> str:
    """Create an empty database; returns its `postgresql+asyncpg://` URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    maintenance = make_url(server_url).database or "postgres"
    connection = await asyncpg.connect(_dsn(server_url, maintenance))
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return (
        make_url(server_url)
        .set(drivername="postgresql+asyncpg", database=name)
        .render_as_string(hide_password=False)
    )


async def drop_pg_database(url: str) -> None:
    parsed = make_url(url)
    name = parsed.database
    assert name and name.startswith("oneflow_test"), name
    maintenance_url = os.environ.get("TEST_DATABASE_URL", "")
    maintenance = make_url(maintenance_url).database or "postgres"
    connection = await asyncpg.connect(_dsn(url, maintenance))
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


@asynccontextmanager
async def unreachable_pg_database(url: str) -> AsyncIterator[None]:
    """While inside, the test's own database `url` accepts no connection and the ones open
    are cut (an outage of that database alone: the shared server keeps running)."""
    name = make_url(url).database
    assert name and name.startswith("oneflow_test"), name
    maintenance = make_url(os.environ.get("TEST_DATABASE_URL", "")).database or "postgres"
    connection = await asyncpg.connect(_dsn(url, maintenance))
    try:
        await connection.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        await connection.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name
        )
        yield
    finally:
        await connection.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await connection.close()


@asynccontextmanager
async def empty_pg_database() -> AsyncIterator[str]:
    """A new empty database on the test server (TEST_DATABASE_URL), dropped afterwards."""
    server = pg_server_url()
    assert server is not None, "PostgreSQL tests need TEST_DATABASE_URL"
    url = await create_pg_database(server)
    try:
        yield url
    finally:
        await drop_pg_database(url)


_TEMPLATE_LOCK = threading.Lock()
_TEMPLATE: list[Path] = []


def migrated_sqlite_url(path: Path) -> str:
    """An SQLite database at `path` already migrated to head: a copy of one migrated once per
    test session (migrating every test's database would cost a fraction of a second each)."""
    with _TEMPLATE_LOCK:
        if not _TEMPLATE:
            folder = Path(tempfile.mkdtemp(prefix="oneflow-template-"))
            template = folder / "template.db"
            _run_in_thread(_migrate(f"sqlite+aiosqlite:///{template}"))
            _TEMPLATE.append(template)
    shutil.copyfile(_TEMPLATE[0], path)
    return f"sqlite+aiosqlite:///{path}"


async def _migrate(url: str) -> None:
    from oneflow_ai.storage import migrate
    from oneflow_ai.storage.database import create_engine

    engine = create_engine(url, pool_size=1)
    try:
        await migrate.upgrade(engine)
    finally:
        await engine.dispose()  # the last connection's close checkpoints the WAL into the file


def _run_in_thread(coroutine: Coroutine[Any, Any, None]) -> None:
    """Run `coroutine` to completion on a loop of its own (callers may be inside a loop)."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(coroutine)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


def behind_revision() -> str:
    """The revision before the code's head (what `put_schema(url, "behind")` leaves)."""
    from alembic.script import ScriptDirectory

    from oneflow_ai.storage import migrate

    script = ScriptDirectory.from_config(migrate._config())
    down = script.get_revision(migrate.head_revision()).down_revision
    assert isinstance(down, str)
    return down


async def put_schema(url: str, state: str) -> None:
    """Leave the database `empty` (untouched), `behind` (at the revision before head),
    `current` (at head) or `ahead` (at a revision of a newer release)."""
    from sqlalchemy import text

    from oneflow_ai.storage import migrate
    from oneflow_ai.storage.database import create_engine

    if state == "empty":
        return
    engine = create_engine(url, pool_size=1)
    try:
        await migrate.upgrade(engine, "head" if state != "behind" else "head-1")
        if state == "ahead":
            async with engine.begin() as connection:
                await connection.execute(
                    text("UPDATE alembic_version SET version_num = :v"), {"v": FUTURE_REVISION}
                )
    finally:
        await engine.dispose()
