"""Where a database's schema stands against this code's migrations, and a cheap watch of it.

The database records its Alembic revision; the code knows its head. `oneflow serve` compares the
two before it starts (it migrates, or refuses with one line), the other `oneflow` commands refuse
a database that is not at head, and `/ready` answers 503 until it is (`SchemaWatch`).
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from oneflow_ai.storage import migrate
from oneflow_ai.storage.database import sqlite_path

__all__ = ["SchemaState", "SchemaStatus", "SchemaWatch", "classify", "schema_status"]

#: What a person runs to bring a database to the code's head.
UPGRADE_COMMAND = "oneflow db upgrade"


class SchemaState(enum.StrEnum):
    CURRENT = "current"  # at the code's head
    EMPTY = "empty"  # no OneFlow schema at all (never migrated, or a missing SQLite file)
    BEHIND = "behind"  # an older revision: `oneflow db upgrade` brings it to head
    AHEAD = "ahead"  # a revision this code does not know: a newer release migrated it


@dataclass(frozen=True, slots=True)
class SchemaStatus:
    state: SchemaState
    revision: str | None
    head: str

    @property
    def current(self) -> bool:
        return self.state is SchemaState.CURRENT

    @property
    def needs_upgrade(self) -> bool:
        return self.state in (SchemaState.EMPTY, SchemaState.BEHIND)

    @property
    def reason(self) -> str:
        """A few words for `/ready`: `schema behind: run oneflow db upgrade`."""
        if self.state is SchemaState.CURRENT:
            return f"schema at revision {self.head}"
        if self.state is SchemaState.AHEAD:
            return (
                f"schema ahead of the code: revision {self.revision} is newer than this "
                f"release knows (its head is {self.head})"
            )
        return f"schema behind: run {UPGRADE_COMMAND}"

    def refusal(self, database: str) -> str:
        """One line saying what is wrong with `database` (a description) and what to run."""
        if self.state is SchemaState.EMPTY:
            return (
                f"database {database} has no OneFlow schema: create it with "
                f"`{UPGRADE_COMMAND}` (or start `oneflow serve --migrate`)"
            )
        if self.state is SchemaState.BEHIND:
            return (
                f"database {database} is at schema revision {self.revision}, this release needs "
                f"{self.head}: run `{UPGRADE_COMMAND}` (or start `oneflow serve --migrate`)"
            )
        if self.state is SchemaState.AHEAD:
            return (
                f"database {database} is at schema revision {self.revision}, newer than this "
                f"release knows (its head is {self.head}): run the release that migrated it, "
                "or downgrade the database with that release's `oneflow db downgrade`"
            )
        return f"database {database} is at schema revision {self.head}"


def classify(revision: str | None) -> SchemaStatus:
    head = migrate.head_revision() or ""
    if revision is None:
        state = SchemaState.EMPTY
    elif revision == head:
        state = SchemaState.CURRENT
    elif migrate.known_revision(revision):
        state = SchemaState.BEHIND
    else:
        state = SchemaState.AHEAD
    return SchemaStatus(state, revision, head)


async def schema_status(engine: AsyncEngine) -> SchemaStatus:
    """The database's schema against the code's head. A missing SQLite file is empty and stays
    missing (connecting to it would create it)."""
    path = sqlite_path(engine.url)
    if path is not None and not path.exists():
        return classify(None)
    return classify(await migrate.current_revision(engine))


class SchemaWatch:
    """The schema's state for `/ready`, read from the database at most once per `interval`
    until it reaches the head, then never again: a replica started before its release's
    migration job finished becomes ready once the job is done, and a later release migrating
    the database under a running one does not take it out of service."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engine = engine
        self._interval = interval
        self._clock = clock
        self._status: SchemaStatus | None = None
        self._checked_at = 0.0
        self._lock = asyncio.Lock()

    @property
    def last(self) -> SchemaStatus | None:
        """The last status read, without I/O (None before the first)."""
        return self._status

    def _fresh(self) -> SchemaStatus | None:
        status = self._status
        if status is not None and (
            status.current or self._clock() - self._checked_at < self._interval
        ):
            return status
        return None

    async def status(self) -> SchemaStatus:
        """The schema's state; raises when the database cannot be read."""
        fresh = self._fresh()
        if fresh is not None:
            return fresh
        async with self._lock:  # one read at a time; the others take its answer
            fresh = self._fresh()
            if fresh is None:
                fresh = await schema_status(self._engine)
                self._status, self._checked_at = fresh, self._clock()
            return fresh
