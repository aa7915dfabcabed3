"""Schema migrations (Alembic), run programmatically on a connection of ours.

`oneflow db upgrade|downgrade` and `oneflow serve` (on the embedded default) call these; the same
migrations run on SQLite and PostgreSQL.
"""

from __future__ import annotations

import functools
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["current_revision", "downgrade", "head_revision", "known_revision", "upgrade"]

_MIGRATIONS = Path(__file__).parent / "migrations"
#: Alembic's default table of the applied revision.
_VERSION_TABLE = "alembic_version"
_READ_VERSION = text("SELECT version_num FROM alembic_version")


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@functools.cache
def _scripts() -> ScriptDirectory:
    """The migration scripts, read once per process (they ship with the code)."""
    return ScriptDirectory.from_config(_config())


def head_revision() -> str | None:
    return _scripts().get_current_head()


def known_revision(revision: str) -> bool:
    """Whether this code has a migration of that revision (a newer release's is unknown)."""
    try:
        return _scripts().get_revision(revision) is not None
    except CommandError:
        return False


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    async with engine.begin() as connection:
        await connection.run_sync(lambda sync: command.upgrade(_config(sync), revision))


async def downgrade(engine: AsyncEngine, revision: str = "-1") -> None:
    async with engine.begin() as connection:
        await connection.run_sync(lambda sync: command.downgrade(_config(sync), revision))


async def current_revision(engine: AsyncEngine) -> str | None:
    """The revision the database records (None: never migrated). Read directly, not through
    Alembic's migration context, which logs two lines each time (`/ready` asks often while a
    database is behind)."""

    def _current(sync: Connection) -> str | None:
        if not inspect(sync).has_table(_VERSION_TABLE):
            return None
        found = sorted(sync.execute(_READ_VERSION).scalars())
        if len(found) > 1:
            raise RuntimeError(f"database records several schema heads: {', '.join(found)}")
        return found[0] if found else None

    async with engine.connect() as connection:
        return await connection.run_sync(_current)
