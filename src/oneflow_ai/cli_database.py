"""The configured database as the `oneflow` commands open it: named, and never created by accident.

Every command that reads or writes the database says which one it opened (on stderr, at
`LOG_LEVEL` INFO or below: `oneflow: database /home/me/.local/share/oneflow/oneflow.db`), and
refuses in one line, saying how to create it, a database that does not exist or is not at this
release's schema. Only `oneflow db upgrade`, `oneflow db reset` and `oneflow serve` create or
migrate one: `serve` migrates an SQLite file by default and PostgreSQL with `--migrate`;
otherwise it refuses a database behind the code, or with `--wait-for-schema` starts and answers
`/ready` with 503 until a migration job has brought it to head. A database ahead of the code
(a newer release migrated it) is always refused.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import typer
from sqlalchemy.ext.asyncio import AsyncEngine

from oneflow_ai.settings import Settings
from oneflow_ai.storage import migrate
from oneflow_ai.storage.database import create_engine, describe_database, sqlite_path
from oneflow_ai.storage.schema import SchemaState, SchemaStatus, classify, schema_status

__all__ = [
    "DatabaseNotReady",
    "announce_database",
    "database_error",
    "earlier_database_notice",
    "opened_database",
    "prepare_for_serving",
    "require_file",
]

#: Where releases before the per-user data folder kept the embedded database (relative to the
#: folder a command ran from).
_EARLIER_EMBEDDED = Path("var") / "oneflow.db"


class DatabaseNotReady(Exception):
    """`str()` is one line: the database, what is wrong with it and what to run."""


def announce_database(settings: Settings) -> None:
    """Say on stderr which database a command opened (quiet above `LOG_LEVEL=INFO`)."""
    if logging.getLevelNamesMapping()[settings.log_level] <= logging.INFO:
        description = describe_database(settings.effective_database_url)
        origin = "" if settings.database_url is not None else " (embedded; DATABASE_URL unset)"
        typer.echo(f"oneflow: database {description}{origin}", err=True)


def database_error(exc: BaseException, settings: Settings) -> str:
    """One line for a database that failed: the error's first line and which database."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    return f"database error: {first} ({describe_database(settings.effective_database_url)})"


def _missing(path: Path, settings: Settings) -> str:
    message = (
        f"no database at {path}: create it with `oneflow db upgrade` "
        "(or start the gateway with `oneflow serve`)"
    )
    earlier = earlier_database_notice(settings)
    return f"{message}; {earlier}" if earlier else message


def earlier_database_notice(settings: Settings) -> str | None:
    """A word about the embedded database an earlier release kept in `./var`, when the default
    one does not exist yet: before a fresh, empty one is created, say how to keep the old."""
    if settings.database_url is not None or settings.embedded_database_path.exists():
        return None
    earlier = _EARLIER_EMBEDDED.absolute()
    if not earlier.is_file():
        return None
    return (
        f"an earlier release's embedded database is at {earlier}: set "
        f"DATABASE_URL=sqlite:///{earlier} to keep using it, or move it to "
        f"{settings.embedded_database_path}"
    )


def require_file(settings: Settings) -> None:
    """Refuse (`DatabaseNotReady`) an SQLite database whose file does not exist."""
    path = sqlite_path(settings.effective_database_url)
    if path is not None and not path.is_file():
        raise DatabaseNotReady(_missing(path, settings))


@asynccontextmanager
async def opened_database(settings: Settings, *, pool_size: int = 1) -> AsyncIterator[AsyncEngine]:
    """An engine on the configured database once it is found at the code's head (then named on
    stderr); raises `DatabaseNotReady`, creating nothing, when it is missing, cannot be read or
    is not migrated."""
    require_file(settings)
    engine = create_engine(settings.effective_database_url, pool_size=pool_size)
    try:
        try:
            status = await schema_status(engine)
        except Exception as exc:
            raise DatabaseNotReady(database_error(exc, settings)) from None
        if not status.current:
            description = describe_database(settings.effective_database_url)
            raise DatabaseNotReady(status.refusal(description))
        announce_database(settings)
        yield engine
    finally:
        await engine.dispose()


async def prepare_for_serving(
    settings: Settings, *, migrate_schema: bool | None, wait: bool
) -> SchemaStatus:
    """Bring the database to the code's head before the gateway starts, or refuse.

    `migrate_schema` None: migrate an SQLite file, not PostgreSQL. Behind (or empty) and not
    migrating: `DatabaseNotReady`, unless `wait` (a migration job will do it; `/ready` answers
    503 meanwhile). Ahead of the code: always `DatabaseNotReady`.
    """
    url = settings.effective_database_url
    description = describe_database(url)
    path = sqlite_path(url)
    apply = migrate_schema if migrate_schema is not None else path is not None
    if path is not None and not path.is_file() and not (apply or wait):
        raise DatabaseNotReady(_missing(path, settings))
    engine = create_engine(url, pool_size=1)
    try:
        status = await schema_status(engine)
        if status.state is SchemaState.AHEAD or (status.needs_upgrade and not (apply or wait)):
            raise DatabaseNotReady(status.refusal(description))
        if status.needs_upgrade and apply:
            await migrate.upgrade(engine)
            status = classify(await migrate.current_revision(engine))
        return status
    finally:
        await engine.dispose()
