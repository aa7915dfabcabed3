"""The ledger's writes after the upstream call: settle, release, record (and what they share
with reserving: queuing a command and turning its failure into the caller's error).

What each costs and when it is durable is in :mod:`oneflow_ai.billing.ledger`.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from datetime import datetime

import structlog

from oneflow_ai.billing.budget_rules import crossings, increments
from oneflow_ai.billing.budgets import BudgetAlert, BudgetBook
from oneflow_ai.billing.checkpoints import Checkpoints, Probe
from oneflow_ai.billing.cost import Cost
from oneflow_ai.billing.durable import DurableWrites
from oneflow_ai.billing.leases import Leases
from oneflow_ai.billing.ledger_config import LedgerConfig
from oneflow_ai.billing.ledger_errors import (
    describe,
    unavailable,
    unavailable_error,
    unreachable_error,
    usage_record,
)
from oneflow_ai.billing.ledger_state import LedgerState
from oneflow_ai.billing.pricing import PricingEngine
from oneflow_ai.billing.reservation import Reservation, ReservationState, Settlement
from oneflow_ai.domain.usage import Usage
from oneflow_ai.domain.usage_record import RequestOutcome, UsageRecord
from oneflow_ai.errors import GatewayError, ServiceUnavailableError
from oneflow_ai.storage.group_commit import DatabaseUnreachableError, GroupCommitWriter
from oneflow_ai.storage.ledger_commands import (
    CounterChange,
    EntryRow,
    LedgerCommand,
    LedgerResult,
    RecordCommand,
    ReleaseCommand,
    SettleCommand,
    Settled,
)

log = structlog.get_logger("oneflow.billing.ledger")

__all__ = ["LedgerWrites"]


class LedgerWrites:
    """The part of :class:`~oneflow_ai.billing.ledger.Ledger` that settles and releases."""

    config: LedgerConfig
    pricing: PricingEngine
    owner: str
    state: LedgerState
    durable: DurableWrites
    checkpoints: Checkpoints
    leases: Leases
    _ready: asyncio.Event
    _writer: GroupCommitWriter[LedgerCommand, LedgerResult]
    _clock: Callable[[], datetime]
    _on_budget_alert: Callable[[BudgetAlert], None] | None

    @property
    def book(self) -> BudgetBook:
        return self.state.book

    async def wait_ready(self) -> None:
        """Wait for the first reconciliation and budget load; 503 if the database is away
        (at once when it is known to be unreachable)."""
        if self._ready.is_set():
            return
        if self.durable.database_down:
            raise unreachable_error()
        try:
            await asyncio.wait_for(self._ready.wait(), self.config.ready_timeout)
        except TimeoutError:
            raise ServiceUnavailableError(
                "Billing is not ready: the ledger database does not answer"
            ) from None

    async def write(self, command: LedgerCommand) -> LedgerResult:
        """Queue ``command`` and wait until it is committed (503 if it cannot be)."""
        return await self._outcome(asyncio.shield(self._enqueue(command)))

    def alert(self, changes: tuple[CounterChange, ...]) -> None:
        self._alert(changes)

    async def settle(
        self,
        reservation: Reservation,
        usage: Usage,
        *,
        model: str | None = None,
        provider: str | None = None,
        outcome: RequestOutcome | None = None,
        cost: Cost | None = None,
    ) -> Settlement:
        """Charge what ``usage`` costs on ``model`` (default: the reserved one) exactly once.

        ``cost`` is that cost when the caller has priced it already (the pipeline has).

        Releases what the reservation held beyond it, adds the usage to the matching budgets
        and writes the request's usage record, all in one group commit; returns once durable.
        A caller cancelled while waiting does not cancel the charge. Settling again returns
        the first settlement; a request id that already has a charge (settled by another
        process) is not charged again (``charged`` is false). Raises ``UnpricedModelError``
        for a model that has no price and is not free (nothing is written then).
        """
        if reservation.settlement is not None:
            return reservation.settlement
        if reservation._settling is not None:
            return await asyncio.shield(reservation._settling)
        if cost is None:
            cost = self.pricing.price(model or reservation.model, usage)
        provider = provider or reservation.provider
        self.checkpoints.untrack(reservation)
        future = self._durably(
            self._settle_command(reservation, usage, cost, provider, outcome or RequestOutcome())
        )
        settling: asyncio.Future[Settlement] = asyncio.get_running_loop().create_future()
        reservation._settling = settling
        future.add_done_callback(functools.partial(self._committed, reservation, cost, settling))
        return await asyncio.shield(settling)

    def _settle_command(
        self,
        reservation: Reservation,
        usage: Usage,
        cost: Cost,
        provider: str,
        outcome: RequestOutcome,
    ) -> SettleCommand:
        """The charge of ``cost`` for ``usage``, with what it releases of the reservation's
        holds (when they were written), the budget increments and the usage record."""
        durable = reservation.active and reservation.written
        charge = EntryRow(
            project_id=reservation.project_id,
            kind="charge",
            amount=-cost.micro_credits,
            created_at=self._clock(),
            request_id=reservation.request_id,
            model=cost.model,
            provider=provider,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            images=usage.images,
            characters=usage.characters,
            audio_seconds=usage.audio_seconds,
            price_table_version=cost.price_table_version,
            estimated=cost.estimated,
            user_id=reservation.user_id,
            key_id=reservation.key_id,
        )
        return SettleCommand(
            charge=charge,
            reservation_id=reservation.id if durable else None,
            account_hold=reservation.account_hold if durable else 0,
            holds=reservation.holds if durable else (),
            usage_increments=increments(
                self.book, reservation, provider, usage, cost.micro_credits
            ),
            record=usage_record(reservation, outcome, usage, cost, provider),
            lease_id=reservation.lease.id if reservation.lease is not None else None,
        )

    def _committed(
        self,
        reservation: Reservation,
        cost: Cost,
        settling: asyncio.Future[Settlement],
        done: asyncio.Future[LedgerResult | None],
    ) -> None:
        """The settle command of ``reservation`` is done: resolve ``settling``."""
        if done.cancelled() or done.exception() is not None:
            reservation._settling = None
            settling.set_exception(unavailable(done))
            return
        settled = done.result()
        reservation.state = ReservationState.SETTLED
        if settled is None:  # spooled: charged when the spool is replayed
            self._lease_done(reservation, cost.micro_credits, spooled=True)
            reservation.settlement = Settlement(reservation.request_id, cost, True, True)
            settling.set_result(reservation.settlement)
            return
        assert isinstance(settled, Settled)
        self._lease_done(reservation, cost.micro_credits if settled.charged else 0)
        reservation.settlement = Settlement(reservation.request_id, cost, settled.charged)
        settling.set_result(reservation.settlement)
        if reservation.limited and cost.micro_credits > reservation.max_micro_credits:
            log.warning(
                "ledger_overrun",
                request_id=reservation.request_id,
                project_id=reservation.project_id,
                reserved=reservation.max_micro_credits,
                charged=cost.micro_credits,
            )
        self._alert(settled.counters)

    async def release(self, reservation: Reservation, outcome: RequestOutcome) -> None:
        """Give back everything held for a request that produced nothing billable, and
        write its usage record (``outcome`` says how it failed). No-op once settled."""
        if not reservation.active or reservation._settling is not None:
            return
        self.checkpoints.untrack(reservation)
        reservation.state = ReservationState.RELEASED
        self._lease_done(reservation, 0)  # nothing is drawn from the lease for it
        durable = reservation.written
        future = self._durably(
            ReleaseCommand(
                reservation_id=reservation.id if durable else None,
                project_id=reservation.project_id,
                account_hold=reservation.account_hold,
                holds=reservation.holds if reservation.limited else (),
                record=usage_record(reservation, outcome, Usage(), None, reservation.provider),
            )
        )
        await self._outcome_or_spooled(future)

    def track(self, reservation: Reservation, probe: Probe) -> asyncio.Future[None] | None:
        """Checkpoint a running stream's progress (``probe``) until it is settled or released;
        the stream waits for the future (its first checkpoint) before it sends anything."""
        return self.checkpoints.track(reservation, probe)

    async def record(self, record: UsageRecord) -> None:
        """Write the usage record of a request that never got a reservation (refused,
        unauthenticated, invalid); returns once durable."""
        await self._outcome_or_spooled(self._durably(RecordCommand(record)))

    def _durably(
        self, command: SettleCommand | ReleaseCommand | RecordCommand
    ) -> asyncio.Future[LedgerResult | None]:
        """To the database, or to the spool when it cannot be reached (None: spooled)."""
        try:
            return self.durable.submit(command)
        except Exception as exc:
            raise unavailable_error(exc) from exc

    async def _outcome_or_spooled(self, waiting: asyncio.Future[LedgerResult | None]) -> None:
        try:
            await asyncio.shield(waiting)
        except (GatewayError, asyncio.CancelledError):
            raise
        except Exception as exc:
            raise unavailable_error(exc) from exc

    def _enqueue(self, command: LedgerCommand) -> asyncio.Future[LedgerResult]:
        try:
            return self._writer.submit(command)
        except Exception as exc:
            raise unavailable_error(exc) from exc

    async def _outcome(self, waiting: asyncio.Future[LedgerResult]) -> LedgerResult:
        try:
            return await waiting
        except (GatewayError, asyncio.CancelledError):
            raise
        except DatabaseUnreachableError:
            raise unreachable_error() from None
        except Exception as exc:
            raise unavailable_error(exc) from exc

    def _lease_done(self, reservation: Reservation, charged: int, *, spooled: bool = False) -> None:
        if reservation.lease is not None:
            self.leases.done(
                reservation.lease, reservation.max_micro_credits, charged, spooled=spooled
            )

    def _alert(self, changes: tuple[CounterChange, ...]) -> None:
        for alert in crossings(self.book, changes):
            budget = alert.budget
            log.warning(
                "budget_limit_reached",
                budget_id=budget.id,
                project_id=budget.project_id,
                scope=budget.scope,
                metric=budget.metric.value,
                period=budget.period.value,
                mode=budget.mode.value,
                limit=budget.limit,
                used=alert.used,
                period_start=alert.period_start.isoformat(),
            )
            if self._on_budget_alert is not None:
                try:
                    self._on_budget_alert(alert)
                except Exception as exc:
                    log.error("budget_alert_hook_failed", error=describe(exc))
