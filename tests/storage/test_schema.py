"""A database's schema against the code's head, on SQLite and PostgreSQL, and its watch."""

from __future__ import annotations

from pathlib import Path

import pytest

from oneflow_ai.storage import migrate
from oneflow_ai.storage.database import create_engine, sqlite_path
from oneflow_ai.storage.schema import SchemaState, SchemaWatch, schema_status
from tests.support.clock import ManualClock
from tests.support.databases import FUTURE_REVISION, behind_revision, put_schema


@pytest.mark.parametrize(
    ("state", "expected", "revision"),
    [
        ("empty", SchemaState.EMPTY, None),
        ("behind", SchemaState.BEHIND, behind_revision()),
        ("current", SchemaState.CURRENT, migrate.head_revision()),
        ("ahead", SchemaState.AHEAD, FUTURE_REVISION),
    ],
)
async def test_schema_status_on_each_backend(
    fresh_database_url: str, state: str, expected: SchemaState, revision: str | None
) -> None:
    await put_schema(fresh_database_url, state)
    engine = create_engine(fresh_database_url, pool_size=1)
    try:
        status = await schema_status(engine)
    finally:
        await engine.dispose()
    head = migrate.head_revision()
    assert (status.state, status.revision, status.head) == (expected, revision, head)
    assert status.current is (expected is SchemaState.CURRENT)
    assert status.needs_upgrade is (expected in (SchemaState.EMPTY, SchemaState.BEHIND))
    if status.needs_upgrade:
        assert status.reason == "schema behind: run oneflow db upgrade"
        assert "`oneflow db upgrade`" in status.refusal("the-db")
    if expected is SchemaState.AHEAD:
        assert status.reason.startswith("schema ahead of the code")
        assert FUTURE_REVISION in status.refusal("the-db")


async def test_a_missing_sqlite_file_is_empty_and_stays_missing(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'never.db'}"
    engine = create_engine(url, pool_size=1)
    try:
        assert (await schema_status(engine)).state is SchemaState.EMPTY
    finally:
        await engine.dispose()
    path = sqlite_path(url)
    assert path is not None and not path.exists()


async def test_the_watch_rereads_until_head_then_never(fresh_database_url: str) -> None:
    """A replica started before its migration job finished sees the job's result within the
    interval; once at head it never asks again (a newer release migrating the database under
    it does not take it out of service)."""
    await put_schema(fresh_database_url, "behind")
    engine = create_engine(fresh_database_url, pool_size=1)
    clock = ManualClock()
    watch = SchemaWatch(engine, interval=1.0, clock=clock)
    try:
        assert (await watch.status()).state is SchemaState.BEHIND
        await migrate.upgrade(engine)
        assert (await watch.status()).state is SchemaState.BEHIND  # cached within the interval
        clock.advance(1.0)
        assert (await watch.status()).state is SchemaState.CURRENT
        await migrate.downgrade(engine, "-1")
        clock.advance(3600)
        assert (await watch.status()).state is SchemaState.CURRENT  # not read again
        assert watch.last is not None and watch.last.current
    finally:
        await engine.dispose()
