"""Group commit: many small writes from concurrent requests, one transaction per batch.

A request hands its write (a *command*) to :meth:`GroupCommitWriter.submit` and awaits the
returned future, which resolves once the transaction holding it has **committed** (or fails
with the reason it could not). One background task drains the queue: it waits up to
``max_delay`` for company (never longer than it takes to gather ``max_batch`` commands),
applies the whole batch in one transaction through ``apply`` and commits. While a transaction
is in flight the next batch gathers, so under load batches grow by themselves and the database
sees a few transactions per flush interval instead of one per request. The wait for company
is only worth it when there is company: when no command arrived while the previous
transaction was committing (a lone caller, low concurrency), the next one is committed at once
instead of waiting ``max_delay`` for nobody; as soon as commands arrive during a commit, the
writer waits again.

Failures:

- a *transient* error (connection lost, deadlock, serialization failure, SQLite busy) rolls
  the batch back and retries it whole with exponential backoff; ``apply`` must therefore be
  safe to re-run, which it is because nothing it did survived the rollback;
- any other error (a constraint violated by one bad command) splits the batch: each command
  is retried in a transaction of its own, so one bad command fails alone;
- with ``unreachable`` given, an error it recognises (the database cannot be reached) is not
  retried: the whole batch fails at once with :class:`DatabaseUnreachableError`, and
  ``on_unreachable`` is told (it trips the database's health flag), so that callers can fall
  back (refuse fast, spool) instead of waiting out an outage.

Durability: a resolved future means committed (PostgreSQL: durable on disk with the default
``synchronous_commit``; SQLite in WAL with ``synchronous=NORMAL``: survives a process crash).
Commands not yet committed when the process dies are lost; callers that must not lose a write
await its future before acknowledging anything to their own caller.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from functools import partial
from typing import Generic, TypeVar

import structlog
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from oneflow_ai.storage.database import begin_immediate, sqlite_file_engine
from oneflow_ai.storage.health import connection_lost, is_transient
from oneflow_ai.storage.writer_thread import WriterThread, resolve
from oneflow_ai.tasks import stop

__all__ = [
    "DatabaseUnreachableError",
    "GroupCommitWriter",
    "WriterClosedError",
    "WriterOverloadedError",
    "is_transient",
]

C = TypeVar("C")
R = TypeVar("R")

log = structlog.get_logger("oneflow.storage.group_commit")


class WriterClosedError(RuntimeError):
    """The writer is closed (or was abandoned); the command was not written."""


class WriterOverloadedError(RuntimeError):
    """Too many commands wait for the database; the command was not accepted."""


class DatabaseUnreachableError(RuntimeError):
    """The database could not be reached; the command was not written."""


class GroupCommitWriter(Generic[C, R]):
    """Batches commands into transactions; see the module documentation.

    ``apply(connection, commands)`` is synchronous code that runs inside an open transaction
    and returns one result per command, in order. It runs again from the start when a batch is
    retried. On PostgreSQL it runs on the event loop through SQLAlchemy's ``run_sync``, on a
    connection kept between batches (no pool checkout or liveness ping per batch; one the server
    dropped while idle is replaced and the batch tried again at once, not taken for an outage).
    On a SQLite file it runs on a thread of its own with the plain ``sqlite3`` driver, so a
    batch costs the event loop one hand-off instead of one per statement.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        apply: Callable[[Connection, Sequence[C]], Sequence[R]],
        *,
        max_batch: int = 500,
        max_delay: float = 0.002,
        max_pending: int = 100_000,
        retry_initial: float = 0.05,
        retry_max: float = 2.0,
        name: str = "writer",
        unreachable: Callable[[BaseException], bool] | None = None,
        on_unreachable: Callable[[BaseException], None] | None = None,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        self._engine = engine
        self._apply = apply
        self._file_engine = sqlite_file_engine(engine)
        self._thread = WriterThread(f"oneflow-{name}") if self._file_engine is not None else None
        self._connection: Connection | None = None  # the thread's, between batches
        self._held: AsyncConnection | None = None  # PostgreSQL's, between batches
        self._release: asyncio.Task[None] | None = None
        self._max_batch = max_batch
        self._max_delay = max(0.0, max_delay)
        self._max_pending = max_pending
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self._name = name
        self._unreachable = unreachable
        self._on_unreachable = on_unreachable
        self._pending: list[tuple[C, asyncio.Future[R]]] = []
        self._wakeup = asyncio.Event()
        self._full: asyncio.Future[None] | None = None  # while gathering company, see there
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._closed = False
        self.batches = 0
        self.commands = 0
        self._company = False  # did commands arrive while the previous batch committed?

    # ---- life cycle ------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"group-commit-{self._name}"
            )

    @property
    def pending(self) -> int:
        """Commands accepted but not yet committed (including the batch in flight)."""
        return len(self._pending) + (0 if self._idle.is_set() else 1)

    async def flush(self) -> None:
        """Return once every command submitted before the call has been committed or failed."""
        futures = [future for _, future in self._pending]
        while not self._idle.is_set():
            await self._idle.wait()
        if futures:
            await asyncio.gather(*futures, return_exceptions=True)

    async def close(self, grace: float | None = 10.0) -> int:
        """Commit what is queued (waiting at most ``grace`` seconds) and stop.

        Returns how many commands could not be committed in time (their futures fail with
        :class:`WriterClosedError`); 0 on a clean shutdown.
        """
        if self._closed:
            return 0
        self._closing = True
        self._wakeup.set()
        if self._full is not None:
            resolve(self._full, None, None)
        task = self._task
        if task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(task), grace)
            except TimeoutError:
                await stop(task)
        self._closed = True
        lost = self._fail_pending(WriterClosedError(f"{self._name} closed before committing"))
        if lost:
            log.error("group_commit_lost", writer=self._name, commands=lost)
        await self._stop_thread()
        await self._release_held()
        return lost

    async def _stop_thread(self) -> None:
        """Close the file engine on its thread, after any transaction still running there."""
        if self._thread is None or self._file_engine is None:
            return
        thread, self._thread = self._thread, None
        try:
            await thread.run(self._dispose)
        finally:
            thread.stop()

    def abandon(self) -> None:
        """Stop at once without committing anything queued: what a killed process does.

        The transaction in flight, if any, is abandoned: on the event loop it is cancelled
        (the database rolls it back); on SQLite's writer thread it runs to its end and may
        commit, as a transaction may when a process dies during its commit. The queued commands
        are dropped and their futures fail with :class:`WriterClosedError`.
        """
        self._closed = True
        self._closing = True
        if self._task is not None:
            self._task.cancel()
        self._fail_pending(WriterClosedError(f"{self._name} abandoned"))
        held, self._held = self._held, None
        if held is not None:  # idle between batches: nothing of it is in flight
            try:
                self._release = asyncio.get_running_loop().create_task(held.close())
            except RuntimeError:  # no loop running any more: drop the connection at once
                if held.sync_connection is not None:
                    with contextlib.suppress(Exception):
                        held.sync_connection.invalidate()
        if self._thread is not None:
            self._thread.stop()
            self._thread = None

    # ---- submitting ------------------------------------------------------------------------

    def submit(self, command: C) -> asyncio.Future[R]:
        """Queue ``command``; the future resolves with its result once committed."""
        if self._closing or self._closed:
            raise WriterClosedError(f"{self._name} is closed")
        if len(self._pending) >= self._max_pending:
            raise WriterOverloadedError(
                f"{self._name}: {len(self._pending)} writes are waiting for the database"
            )
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((command, future))
        if self._full is None:
            self._wakeup.set()
        elif len(self._pending) >= self._max_batch:
            resolve(self._full, None, None)
        return future

    async def run(self, command: C) -> R:
        """Submit ``command`` and wait until it is committed."""
        return await self.submit(command)

    # ---- the writer task -------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            if not self._pending:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            if (
                self._max_delay
                and self._company
                and len(self._pending) < self._max_batch
                and not self._closing
            ):
                await self._gather_company()
            batch = self._pending[: self._max_batch]
            del self._pending[: len(batch)]
            self._idle.clear()
            try:
                await self._commit(batch)
            except asyncio.CancelledError:
                stopped = WriterClosedError(f"{self._name} stopped before committing")
                for _, future in batch:
                    _set_exception(future, stopped)
                raise
            finally:
                self._idle.set()
            self._company = bool(self._pending)

    async def _gather_company(self) -> None:
        """Wait ``max_delay``, or less if a full batch gathers or the writer closes first.

        One timer and one future per batch: a command arriving meanwhile wakes the writer only
        when it fills the batch, not each time (a timed wait per command cost a task and a timer
        each under load).
        """
        loop = asyncio.get_running_loop()
        self._full = full = loop.create_future()
        timer = loop.call_later(self._max_delay, resolve, full, None, None)
        try:
            await full
        finally:
            timer.cancel()
            self._full = None

    async def _commit(self, batch: list[tuple[C, asyncio.Future[R]]]) -> None:
        live = [(command, future) for command, future in batch if not future.cancelled()]
        if not live:
            return
        try:
            results = await self._transaction([command for command, _ in live])
        except DatabaseUnreachableError as exc:
            for _, future in live:
                _set_exception(future, exc)
            return
        except Exception as exc:
            if len(live) == 1:
                log.error(
                    "group_commit_failed", writer=self._name, error=f"{type(exc).__name__}: {exc}"
                )
                _set_exception(live[0][1], exc)
                return
            log.warning(
                "group_commit_split",
                writer=self._name,
                commands=len(live),
                error=f"{type(exc).__name__}: {exc}",
            )
            for item in live:
                await self._commit([item])
            return
        self.batches += 1
        self.commands += len(live)
        for (_, future), result in zip(live, results, strict=True):
            if not future.done():
                future.set_result(result)

    async def _transaction(self, commands: list[C]) -> Sequence[R]:
        """Run one batch to commit, retrying transient failures; raise anything else."""
        delay = self._retry_initial
        while True:
            try:
                if self._thread is not None:
                    results = await self._thread.run(partial(self._on_thread, commands))
                else:
                    results = await self._on_loop(commands)
                if len(results) != len(commands):
                    raise RuntimeError("apply returned a different number of results")
                return results
            except Exception as exc:
                if self._unreachable is not None and self._unreachable(exc):
                    if self._on_unreachable is not None:
                        self._on_unreachable(exc)
                    raise DatabaseUnreachableError(f"{type(exc).__name__}: {exc}") from exc
                if not is_transient(exc) or (self._closing and self._closed):
                    raise
                log.warning(
                    "group_commit_retry",
                    writer=self._name,
                    commands=len(commands),
                    retry_in_s=round(delay, 3),
                    error=f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._retry_max)

    async def _on_loop(self, commands: list[C]) -> Sequence[R]:
        """One transaction on the kept connection (see the class documentation)."""
        reused = self._held is not None
        try:
            return await self._on_held(commands)
        except Exception as exc:
            if not (reused and connection_lost(exc)):
                raise
        return await self._on_held(commands)  # dropped while idle: once more, on a new one

    async def _on_held(self, commands: list[C]) -> Sequence[R]:
        if self._held is None:
            self._held = await self._engine.connect()
        connection = self._held
        try:
            return await connection.run_sync(self._in_transaction, commands)
        except BaseException:
            await self._release_held()  # a failed batch never leaves its connection kept
            raise

    def _in_transaction(self, connection: Connection, commands: list[C]) -> Sequence[R]:
        """Begin, apply and commit in one ``run_sync``: one greenlet for the whole transaction
        instead of one each for its begin, its statements and its commit."""
        with connection.begin():
            return self._apply(connection, commands)

    async def _release_held(self) -> None:
        connection, self._held = self._held, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()

    def _on_thread(self, commands: list[C]) -> Sequence[R]:
        """One transaction on the writer's own connection, kept open between batches (a
        failed batch closes it; the next one opens a new one)."""
        assert self._file_engine is not None
        if self._connection is None:
            self._connection = self._file_engine.connect()
        try:
            with self._connection.begin():
                begin_immediate(self._connection)
                return self._apply(self._connection, commands)
        except BaseException:
            self._close_connection()
            raise

    def _close_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.close()

    def _dispose(self) -> None:
        self._close_connection()
        if self._file_engine is not None:
            self._file_engine.dispose()

    def _fail_pending(self, exc: BaseException) -> int:
        failed = 0
        for _, future in self._pending:
            if not future.done():
                _set_exception(future, exc)
                failed += 1
        self._pending.clear()
        return failed


def _set_exception(future: asyncio.Future[R], exc: BaseException) -> None:
    """Fail ``future``; its submitter may be gone already (cancelled, or shut down).

    A waiter still gets the exception when it awaits; marking it retrieved here keeps asyncio
    from logging "Future exception was never retrieved" for a submitter that stopped waiting.
    """
    if not future.done():
        future.set_exception(exc)
        future.exception()
