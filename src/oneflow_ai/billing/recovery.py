"""Settling what a dead process left: streams charged for what they delivered.

When a gateway process dies in the middle of streamed answers, the provider has generated (and
billed) tokens, and the callers received part of them. Each such stream's reservation row holds
its last checkpoint (see :mod:`oneflow_ai.billing.checkpoints`). Reconciliation turns every
one into an ordinary settlement: a charge of the checkpointed amount, flagged estimated, the
usage added to the matching budgets, the reservation's holds released, and a usage record with
the error ``interrupted``. The charge is keyed by the request id like any other, so two
processes settling the same row (or the stream's own settlement arriving late) never charge
it twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

import structlog

from oneflow_ai.billing.budget_rules import increments
from oneflow_ai.billing.budgets import BudgetBook
from oneflow_ai.billing.ledger_config import LedgerConfig
from oneflow_ai.billing.reservation import Reservation
from oneflow_ai.domain.usage import Usage
from oneflow_ai.domain.usage_record import UsageRecord
from oneflow_ai.storage.ledger_commands import (
    CounterChange,
    EntryRow,
    Interrupted,
    LedgerCommand,
    LedgerResult,
    ReapCommand,
    Reaped,
    SettleCommand,
    Settled,
)

__all__ = ["INTERRUPTED", "INTERRUPTED_STATUS", "Reconciler", "interrupted_settlement"]

log = structlog.get_logger("oneflow.billing.ledger")

#: The usage record's ``error`` of a request its gateway died serving.
INTERRUPTED = "interrupted"
#: Its ``status``: the gateway went away in the middle of the answer.
INTERRUPTED_STATUS = 503


def interrupted_settlement(book: BudgetBook, row: Interrupted, now: datetime) -> SettleCommand:
    """The settlement of one interrupted stream, charged its last checkpoint."""
    usage = Usage(input_tokens=row.input_tokens, output_tokens=row.output_tokens, estimated=True)
    reservation = Reservation(
        id=row.reservation_id,
        request_id=row.request_id,
        project_id=row.project_id,
        model=row.model,
        provider=row.provider,
        max_cost=None,
        created_at=row.created_at,
        limited=True,
        user_id=row.user_id,
        key_id=row.key_id,
        hard_budgets=frozenset(hold.budget_id for hold in row.holds),
    )
    charge = EntryRow(
        project_id=row.project_id,
        kind="charge",
        amount=-row.micro_credits,
        created_at=now,
        request_id=row.request_id,
        model=row.model,
        provider=row.provider,
        input_tokens=row.input_tokens,
        output_tokens=row.output_tokens,
        price_table_version=row.price_table_version,
        estimated=True,
        user_id=row.user_id,
        key_id=row.key_id,
        note=INTERRUPTED,
    )
    record = UsageRecord(
        request_id=row.request_id,
        occurred_at=row.created_at,
        status=INTERRUPTED_STATUS,
        project_id=row.project_id,
        user_id=row.user_id,
        key_id=row.key_id,
        model=row.model,
        provider=row.provider,
        error=INTERRUPTED,
        stream=True,
        input_tokens=row.input_tokens,
        output_tokens=row.output_tokens,
        micro_credits=row.micro_credits,
        price_table_version=row.price_table_version,
        estimated=True,
    )
    return SettleCommand(
        charge=charge,
        reservation_id=row.reservation_id,
        account_hold=row.account_hold,
        holds=row.holds,
        usage_increments=increments(book, reservation, row.provider, usage, row.micro_credits),
        record=record,
    )


class _Ledger(Protocol):
    """What the reconciler needs of the ledger."""

    owner: str
    instance: str | None
    config: LedgerConfig

    @property
    def book(self) -> BudgetBook: ...

    @property
    def database_outages(self) -> int:
        """How many times the database was found unreachable so far."""
        ...

    async def refresh(self) -> BudgetBook: ...

    async def write(self, command: LedgerCommand) -> LedgerResult: ...

    def alert(self, changes: tuple[CounterChange, ...]) -> None: ...


class Reconciler:
    """Heartbeats, and settles or releases what dead owners left (see the ledger's module
    documentation).

    After an outage of the database (every replica lost it at once, so every heartbeat went
    stale together) no other owner is taken for dead until ``owner_timeout`` has passed with
    the database back: the live replicas heartbeat again meanwhile, and settle their own
    requests from their spools, which a reaper must not pre-empt with estimates.
    """

    def __init__(self, ledger: _Ledger, clock: Callable[[], datetime]) -> None:
        self._ledger = ledger
        self._clock = clock
        self._registered = False
        self._grace_until: datetime | None = None
        self._outages_seen = 0
        self._round_failed = False

    @property
    def registered(self) -> bool:
        return self._registered

    def database_returned(self) -> None:
        """The database answers again after an outage: give live owners time to heartbeat."""
        timeout = timedelta(seconds=self._ledger.config.owner_timeout)
        self._grace_until = self._clock() + timeout
        self._outages_seen = self._ledger.database_outages

    async def reconcile(self) -> int:
        """One round: heartbeat, reap; how many reservations were resolved. The first round
        (at start-up) takes every earlier incarnation of this instance for dead at once."""
        ledger, now = self._ledger, self._clock()
        outages = ledger.database_outages
        if self._round_failed or outages != self._outages_seen:  # the database was away
            self.database_returned()
            self._round_failed = False
        stale_before = now - timedelta(seconds=ledger.config.owner_timeout)
        if self._grace_until is not None and now < self._grace_until:
            stale_before = _LONG_AGO
        try:
            released, interrupted = await self.reap(
                ReapCommand(
                    owner=ledger.owner,
                    now=now,
                    stale_before=stale_before,
                    instance=ledger.instance,
                    previous_of=None if self._registered else ledger.instance,
                )
            )
        except Exception:
            self._round_failed = True
            raise
        self._registered = True
        if released or interrupted:
            log.info("ledger_reconciled", released=released + interrupted)
        return released + interrupted

    def command(self, *, previous_of: str | None = None, own: bool = False) -> ReapCommand:
        """Settle or release (without a heartbeat) what ``previous_of`` left, or, with
        ``own``, what this process still holds (a clean shutdown)."""
        ledger, now = self._ledger, self._clock()
        return ReapCommand(
            owner=ledger.owner,
            now=now,
            stale_before=now - timedelta(seconds=ledger.config.owner_timeout),
            release_own=own,
            retire=True,
            previous_of=previous_of,
        )

    async def reap(self, command: ReapCommand) -> tuple[int, int]:
        """Run ``command``; how many reservations it released and streams it settled."""
        reaped = await self._ledger.write(command)
        if not isinstance(reaped, Reaped):
            raise TypeError(f"ledger returned {type(reaped).__name__} for a ReapCommand")
        return reaped.released, await self._settle_interrupted(reaped.interrupted)

    async def _settle_interrupted(self, rows: tuple[Interrupted, ...]) -> int:
        if not rows:
            return 0
        ledger = self._ledger
        if ledger.book.loaded_at is None:  # the first round: budgets must count these too
            await ledger.refresh()
        now = self._clock()
        settled = await asyncio.gather(
            *(ledger.write(interrupted_settlement(ledger.book, row, now)) for row in rows)
        )
        charged = [
            row
            for row, result in zip(rows, settled, strict=True)
            if isinstance(result, Settled) and result.charged
        ]
        for result in settled:
            if isinstance(result, Settled):
                ledger.alert(result.counters)
        log.warning(
            "ledger_interrupted_settled",
            requests=len(rows),
            charged=len(charged),
            micro_credits=sum(row.micro_credits for row in charged),
        )
        return len(rows)


_LONG_AGO = datetime(2000, 1, 1, tzinfo=UTC)
