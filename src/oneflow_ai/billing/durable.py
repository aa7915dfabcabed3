"""Where a settlement goes: the database, or the spool while the database cannot be reached.

Settlements, releases and usage records are what make "the client saw it complete" imply "it
is charged". When the database is known to be unreachable (its health flag is tripped), they
go straight to the spool (:mod:`oneflow_ai.storage.spool`, a local append-only, fsync-ed
file); when one is sent to the database and the transaction fails because the database cannot
be reached, it is spooled then. Either way it is durable before the caller is told so. Once
the database answers again the health probe replays the spool, in order, before the flag is
cleared, so new settlements never overtake spooled ones.

A spooled release is split in two: the release itself (idempotent: a reservation is resolved
once) and its usage record, written only if the request has none yet; a spooled settlement's
record is written only with its charge, which is keyed by the request id.
"""

from __future__ import annotations

import asyncio
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


class DurableWrites:
    """See the module documentation. Without a spool, failures are the caller's to handle."""

    def __init__(
        self,
        submit: Callable[[LedgerCommand], asyncio.Future[LedgerResult]],
        spool: SettlementSpool | None,
        health: Health | None,
    ) -> None:
        self._submit = submit
        self.spool = spool
        self.health = health
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def database_down(self) -> bool:
        return self.health is not None and self.health.down

    def submit(self, command: SpooledCommand) -> asyncio.Future[LedgerResult | None]:
        """The command's result once committed, or None once spooled instead."""
        outcome: asyncio.Future[LedgerResult | None] = asyncio.get_running_loop().create_future()
        if self.spool is not None and self.database_down:
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

    async def replay(self) -> int:
        """Apply what the spool holds, in order; raises (keeping the rest) if a batch fails."""
        if self.spool is None:
            return 0
        return await self.spool.replay(self._apply)

    async def _apply(self, commands: Sequence[SpooledCommand]) -> None:
        futures = [self._submit(command) for command in commands]
        results = await asyncio.gather(*futures, return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            raise failed[0]

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait for spooling under way (at shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


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
