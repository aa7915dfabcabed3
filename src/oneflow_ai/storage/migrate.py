"""Schema migrations (Alembic), run programmatically on a connection of ours.

`oneflow db upgrade|downgrade` and `oneflow serve` (on the embedded default) call these; the same
migrations run on SQLite and PostgreSQL.

Alembic is imported only to migrate. The serving process asks only which revisions this code
knows and which is the head (`/ready`, the startup check): those come from the `revision` and
`down_revision` lines of the migration files, read without Alembic (it and Mako cost a serving
worker about 10 MiB of resident memory).
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = ["current_revision", "downgrade", "head_revision", "known_revision", "upgrade"]

_MIGRATIONS = Path(__file__).parent / "migrations"
#: Alembic's default table of the applied revision.
_VERSION_TABLE = "alembic_version"
_READ_VERSION = text("SELECT version_num FROM alembic_version")


def _config(connection: Connection | None = None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


_REVISION_LINE = re.compile(r"^(down_revision|revision)\s*(?::[^=]*)?=\s*(.+?)\s*$", re.MULTILINE)


@functools.cache
def _revisions() -> dict[str, str | None]:
    """Each migration's revision and the one it follows, read once per process from the files
    that ship with the code (the chain is linear: no branches, no merges)."""
    chain: dict[str, str | None] = {}
    for path in sorted((_MIGRATIONS / "versions").glob("*.py")):
        text = path.read_text("utf-8")
        found = {m.group(1): m.group(2) for m in _REVISION_LINE.finditer(text)}
        if "revision" in found:
            down = found.get("down_revision", "None").strip("\"'")
            chain[found["revision"].strip("\"'")] = None if down == "None" else down
    return chain


def head_revision() -> str | None:
    """The revision no other migration follows (None: no migrations at all)."""
    chain = _revisions()
    heads = set(chain) - {down for down in chain.values() if down is not None}
    if len(heads) > 1:
        raise RuntimeError(f"the migrations have several heads: {', '.join(sorted(heads))}")
    return next(iter(heads), None)


def known_revision(revision: str) -> bool:
    """Whether this code has a migration of that revision (a newer release's is unknown)."""
    return revision in _revisions()


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    from alembic import command

    async with engine.begin() as connection:
        await connection.run_sync(lambda sync: command.upgrade(_config(sync), revision))


async def downgrade(engine: AsyncEngine, revision: str = "-1") -> None:
    from alembic import command

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
