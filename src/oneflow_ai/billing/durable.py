"""Where a settlement goes: the database, or the spool while the database cannot be reached.

Settlements, releases and usage records are what make "the client saw it complete" imply "it
is charged". When the database is known to be unreachable (its health flag is tripped), they
go straight to the spool (:mod:`oneflow_ai.storage.spool`, a local append-only, fsync-ed
file); when one is sent to the database and the transaction fails because the database cannot
be reached, it is spooled then. Either way it is durable before the caller is told so. Once
the database answers again the health probe replays the spool, in order, before the flag is
cleared, so new settlements never overtake spooled ones.

With ``write_behind`` (``LEDGER_WRITE_BEHIND``, PostgreSQL) every settlement, release and
usage record goes to the spool first, even with the database up: the caller waits for one
local ``fsync`` (shared by the appends that arrive together) instead of a transaction's round
trips, and a background drain replays the spool into the database in group-committed batches
moments later. The rule stays the same (durable before the caller is told), only the place
differs. Until a settlement is drained the database shows its hold, not its charge, so a
balance or budget read there looks as spent as the worst case, never less; ``caught_up``
waits for what this process spooled before it, for reads that must see their own writes.

A spooled release is split in two: the release itself (idempotent: a reservation is resolved
once) and its usage record, written only if the request has none yet; a spooled settlement's
record is written only with its charge, which is keyed by the request id.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import structlog

from oneflow_ai.storage.group_commit import DatabaseUnreachableError
from oneflow_ai.storage.health import Health
from oneflow_ai.storage.ledger_commands import (
    LedgerCommand,
    LedgerResult,
    RecordCommand,
    ReleaseCommand,
    SettleCommand,
)
from oneflow_ai.storage.spool import SettlementSpool, SpooledCommand

__all__ = ["DurableWrites"]

log = structlog.get_logger("oneflow.billing.ledger")

_CATCH_UP_WAIT = 5.0  # seconds a read waits for this process's spooled settlements


class DurableWrites:
    """See the module documentation. Without a spool, failures are the caller's to handle."""

    def __init__(
        self,
        submit: Callable[[LedgerCommand], asyncio.Future[LedgerResult]],
        spool: SettlementSpool | None,
        health: Health | None,
        *,
        write_behind: bool = False,
        on_written: Callable[[SpooledCommand, LedgerResult], None] | None = None,
    ) -> None:
        self._submit = submit
        self.spool = spool
        self.health = health
        self.write_behind = write_behind and spool is not None
        self._on_written = on_written
        self._tasks: set[asyncio.Task[None]] = set()
        self._drain_wanted = asyncio.Event()
        self._draining: asyncio.Task[None] | None = None
        self._drain_stopped = False
        self._spooled = 0  # appended by this process (write-behind)
        self._drained = 0  # ... and in the database
        self._drain_waiters: list[tuple[int, asyncio.Future[None]]] = []

    @property
    def database_down(self) -> bool:
        return self.health is not None and self.health.down

    def submit(self, command: SpooledCommand) -> asyncio.Future[LedgerResult | None]:
        """The command's result once committed, or None once spooled instead."""
        outcome: asyncio.Future[LedgerResult | None] = asyncio.get_running_loop().create_future()
        if self.spool is not None and (self.write_behind or self.database_down):
            self._spawn(self._spool(command, outcome))
            return outcome
        written = self._submit(command)

        def done(future: asyncio.Future[LedgerResult]) -> None:
            if future.cancelled():
                outcome.cancel()
                return
            exc = future.exception()
            if exc is None:
                outcome.set_result(future.result())
            elif isinstance(exc, DatabaseUnreachableError) and self.spool is not None:
                self._spawn(self._spool(command, outcome))
            else:
                outcome.set_exception(exc)
                outcome.exception()  # the caller may be gone: never "never retrieved"

        written.add_done_callback(done)
        return outcome

    async def _spool(
        self, command: SpooledCommand, outcome: asyncio.Future[LedgerResult | None]
    ) -> None:
        assert self.spool is not None
        try:
            for part in _parts(command):
                await self.spool.append(part)
        except Exception as exc:
            if not outcome.done():
                outcome.set_exception(exc)
                outcome.exception()
            return
        if not outcome.done():
            outcome.set_result(None)
        if self.write_behind:
            self._spooled += 1
            self._drain_wanted.set()
            if not self._drain_stopped and (self._draining is None or self._draining.done()):
                self._draining = asyncio.get_running_loop().create_task(
                    self._drain(), name="ledger-drain"
                )

    async def _drain(self) -> None:
        """Write-behind: replay the spool into the database whenever it has something; while
        the database is away its health probe replays it instead, when it returns."""
        backoff = 0.05
        while True:
            await self._drain_wanted.wait()
            self._drain_wanted.clear()
            if self.database_down:
                continue
            target = self._spooled
            try:
                await self.replay(routine=True)
            except Exception as exc:
                log.warning("ledger_drain_failed", error=f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                self._drain_wanted.set()
                continue
            backoff = 0.05
            self._caught_up_to(target)

    def _caught_up_to(self, count: int) -> None:
        self._drained = max(self._drained, count)
        waiting, self._drain_waiters = self._drain_waiters, []
        for wanted, future in waiting:
            if wanted <= self._drained:
                if not future.done():
                    future.set_result(None)
            else:
                self._drain_waiters.append((wanted, future))

    async def caught_up(self) -> None:
        """Return once what this process spooled before the call is in the database (at once
        without write-behind); a read of usage or balances after its own requests waits here."""
        if not self.write_behind or self._drained >= self._spooled or self.database_down:
            return  # (with the database away the read fails on its own)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._drain_waiters.append((self._spooled, future))
        self._drain_wanted.set()
        with contextlib.suppress(TimeoutError):  # a slow drain delays a read, never blocks it
            await asyncio.wait_for(asyncio.shield(future), _CATCH_UP_WAIT)

    async def replay(self, *, routine: bool = False) -> int:
        """Apply what the spool holds, in order; raises (keeping the rest) if a batch fails."""
        if self.spool is None:
            return 0
        return await self.spool.replay(self._apply, routine=routine)

    async def _apply(self, commands: Sequence[SpooledCommand]) -> None:
        futures = [self._submit(command) for command in commands]
        results = await asyncio.gather(*futures, return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            raise failed[0]
        if self._on_written is not None:
            for command, result in zip(commands, results, strict=True):
                assert not isinstance(result, BaseException)
                self._on_written(command, result)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait for spooling under way (at shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def abandon(self) -> None:
        self._cancel_drain()

    async def stop_draining(self) -> None:
        """Stop the write-behind drain for good (the caller replays what is left itself)."""
        task = self._cancel_drain()
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)

    def _cancel_drain(self) -> asyncio.Task[None] | None:
        self._drain_stopped = True
        task, self._draining = self._draining, None
        if task is not None:
            task.cancel()
        return task


def _parts(command: SpooledCommand) -> tuple[SpooledCommand, ...]:
    """What is spooled for a command: a release without its record, and the record alone."""
    if isinstance(command, ReleaseCommand) and command.record is not None:
        return (
            ReleaseCommand(
                reservation_id=command.reservation_id,
                project_id=command.project_id,
                account_hold=command.account_hold,
                holds=command.holds,
                record=None,
            ),
            RecordCommand(command.record, once=True),
        )
    if isinstance(command, RecordCommand) and not command.once:
        return (RecordCommand(command.record, once=True),)
    assert isinstance(command, SettleCommand | ReleaseCommand | RecordCommand)
    return (command,)
