"""Is a dependency (the database, Redis) reachable? A flag tripped by failures, and a probe.

Waiting for a dependency that is down costs every request its timeout: a connection refused
is quick, but a host that does not answer takes the whole connect timeout, and retries
multiply it. So the first failure that says "unreachable" *trips* the flag; while it is
tripped, callers decide at once, without I/O (refuse with a 503, fall back to a local
decision, or write to the ledger's spool), and one background probe checks the dependency
every ``interval`` seconds. When the probe succeeds, the ``on_recovery`` steps run (the ledger
replays its spool there) and only then is the flag cleared. Each outage is logged once when it
starts and once when it ends.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import structlog
from sqlalchemy.exc import DBAPIError

from oneflow_ai.tasks import stop

__all__ = ["Health", "connection_lost", "is_transient", "is_unreachable"]

log = structlog.get_logger("oneflow.storage.health")

# PostgreSQL SQLSTATEs that mean "the server is not there": connection exceptions, and the
# operator intervention class's shutdowns and "cannot connect now" (57P01-57P03).
_UNREACHABLE_SQLSTATES = ("08", "57P01", "57P02", "57P03")
# SQLSTATE classes worth retrying: connection exceptions, transaction rollback (serialization
# failure, deadlock), insufficient resources, operator intervention.
_TRANSIENT_SQLSTATES = ("08", "40", "53", "57P")


def _sqlstate(exc: DBAPIError) -> str | None:
    sqlstate = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    return sqlstate if isinstance(sqlstate, str) else None


def _classify(exc: BaseException, sqlstates: tuple[str, ...], says: Callable[[str], bool]) -> bool:
    """Whether a database error is of the kind ``sqlstates`` name (a driver without SQLSTATEs,
    SQLite: whether its message ``says`` so); a connection error or timeout always is."""
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        sqlstate = _sqlstate(exc)
        if sqlstate is not None:
            return sqlstate.startswith(sqlstates)
        return says(str(exc.orig).lower())
    return isinstance(exc, OSError | ConnectionError | TimeoutError)


def is_unreachable(exc: BaseException) -> bool:
    """Whether a database error means the server cannot be reached (not a conflict to retry)."""
    return _classify(
        exc,
        _UNREACHABLE_SQLSTATES,
        lambda text: "connection" in text and ("closed" in text or "refused" in text),
    )


def is_transient(exc: BaseException) -> bool:
    """Whether a failed transaction is worth retrying as it is."""
    return _classify(
        exc,
        _TRANSIENT_SQLSTATES,
        lambda text: "database is locked" in text or "database is busy" in text,
    )


def connection_lost(exc: BaseException) -> bool:
    """Whether a transaction failed because its connection was gone (not its content)."""
    if isinstance(exc, DBAPIError):
        sqlstate = _sqlstate(exc)
        return exc.connection_invalidated or (sqlstate is not None and sqlstate.startswith("08"))
    return isinstance(exc, ConnectionError)


class Health:
    """The reachability of one dependency; see the module documentation."""

    def __init__(
        self,
        name: str,
        probe: Callable[[], Awaitable[object]],
        *,
        interval: float = 0.5,
        probe_timeout: float = 2.0,
        degraded: str = "",
    ) -> None:
        self.name = name
        self._probe = probe
        self.interval = interval
        self._probe_timeout = probe_timeout
        self._degraded = degraded  # what callers do meanwhile, for the log line
        self.down_since: float | None = None  # time.monotonic() of the first failure
        self.last_error: str | None = None
        self.outages = 0
        self.on_recovery: list[Callable[[], Awaitable[None]]] = []
        self.on_change: list[Callable[[bool], None]] = []  # told True when it goes down
        self._probing: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def down(self) -> bool:
        return self.down_since is not None

    def trip(self, exc: BaseException | str) -> None:
        """Mark the dependency unreachable (once per outage) and start probing it."""
        if self._closed:
            return
        error = exc if isinstance(exc, str) else _describe(exc)
        if self.down_since is None:
            self.down_since = time.monotonic()
            self.last_error = error
            self.outages += 1
            log.error(f"{self.name}_unreachable", error=error, meanwhile=self._degraded or None)
        if self._probing is None or self._probing.done():
            self._probing = asyncio.get_running_loop().create_task(
                self._probe_until_back(), name=f"{self.name}-probe"
            )

    async def _probe_until_back(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await asyncio.wait_for(self._probe(), self._probe_timeout)
                for step in self.on_recovery:
                    await step()
            except Exception as exc:
                self.last_error = _describe(exc)
                continue
            since = self.down_since
            self.down_since = None
            log.warning(
                f"{self.name}_recovered",
                down_seconds=round(time.monotonic() - since, 3) if since is not None else None,
            )
            self._tell(False)
            return

    def _tell(self, down: bool) -> None:
        for listener in self.on_change:
            try:
                listener(down)
            except Exception as exc:
                log.error("health_listener_failed", error=_describe(exc))

    async def close(self) -> None:
        self._closed = True
        await stop(self._probing)
        self._probing = None

    def status(self) -> dict[str, object]:
        """For readiness reports."""
        if self.down_since is None:
            return {"status": "ok"}
        return {
            "status": "unreachable",
            "down_seconds": round(time.monotonic() - self.down_since, 3),
            "error": self.last_error,
        }


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:300]
