"""The same migrations upgrade and downgrade on SQLite and PostgreSQL, and match the models."""

from __future__ import annotations

import warnings

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from oneflow_ai.storage import migrate
from oneflow_ai.storage.database import create_engine
from oneflow_ai.storage.tables import ADMIN_PROJECT_ID, Base


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names()) - {"alembic_version"}


def _declared(obj: object, name: str | None, kind: str, reflected: bool, other: object) -> bool:
    """Whether the models declare `obj`: the semantic cache's `embedding` column is made by
    migration 0011 only where pgvector is (storage/tables.py: SemanticCacheRow)."""
    return not (kind == "column" and name == "embedding" and reflected and other is None)


def _schema_diff(connection: Connection) -> list[object]:
    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "include_object": _declared}
    )
    with warnings.catch_warnings():  # SQLAlchemy has no type for pgvector's column
        warnings.filterwarnings("ignore", "Did not recognize type 'vector'")
        return list(compare_metadata(context, Base.metadata))


async def test_upgrade_downgrade_upgrade(fresh_database_url: str) -> None:
    engine = create_engine(fresh_database_url, pool_size=1)
    try:
        assert await migrate.current_revision(engine) is None

        await migrate.upgrade(engine)
        assert await migrate.current_revision(engine) == migrate.head_revision()
        async with engine.connect() as conn:
            assert set(Base.metadata.tables) <= await conn.run_sync(_tables)
            assert await conn.run_sync(_schema_diff) == []
            admin = await conn.execute(
                text("SELECT name FROM projects WHERE id = :id"), {"id": ADMIN_PROJECT_ID}
            )
            assert admin.scalar_one() == "admin"

        await migrate.downgrade(engine, "base")
        assert await migrate.current_revision(engine) is None
        async with engine.connect() as conn:
            assert await conn.run_sync(_tables) == set()

        await migrate.upgrade(engine)
        assert await migrate.current_revision(engine) == migrate.head_revision()
    finally:
        await engine.dispose()


async def test_each_migration_steps_down_and_up(fresh_database_url: str) -> None:
    """Walk the whole history one step at a time in both directions."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(migrate._config())
    revisions = [r.revision for r in reversed(list(script.walk_revisions()))]
    engine = create_engine(fresh_database_url, pool_size=1)
    try:
        for revision in revisions:
            await migrate.upgrade(engine, revision)
            assert await migrate.current_revision(engine) == revision
        for expected in [*reversed(revisions[:-1]), None]:
            await migrate.downgrade(engine, "-1")
            assert await migrate.current_revision(engine) == expected
    finally:
        await engine.dispose()


async def test_sqlite_uses_wal(tmp_path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'wal.db'}", pool_size=1)
    try:
        async with engine.connect() as conn:
            mode = (await conn.execute(text("PRAGMA journal_mode"))).scalar_one()
            fks = (await conn.execute(text("PRAGMA foreign_keys"))).scalar_one()
        assert mode == "wal"
        assert fks == 1
    finally:
        await engine.dispose()
