"""Reserving before the upstream call: from the in-process book (no limits), from a credit
lease (:mod:`oneflow_ai.billing.leases`), or one group-committed write per request.

What each costs and when it is durable is in :mod:`oneflow_ai.billing.ledger`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog

from oneflow_ai.billing.budget_rules import hold_amount, refusal
from oneflow_ai.billing.budgets import BudgetBook, BudgetSpec, Metric, period_start
from oneflow_ai.billing.cost import Cost
from oneflow_ai.billing.ledger_errors import (
    unreachable_error,
)
from oneflow_ai.billing.ledger_writes import LedgerWrites
from oneflow_ai.billing.reservation import Reservation, ReservationState
from oneflow_ai.domain.ids import uuid4_hex
from oneflow_ai.errors import ServiceUnavailableError
from oneflow_ai.storage.ledger_commands import (
    HoldRow,
    LedgerResult,
    ReleaseCommand,
    ReserveCommand,
    Reserved,
)

log = structlog.get_logger("oneflow.billing.ledger")

__all__ = ["LedgerReserve"]


def _model_of(max_cost: Cost | Callable[[], Cost]) -> str:
    if isinstance(max_cost, Cost):
        return max_cost.model
    raise TypeError("reserve(): give `model` when `max_cost` is a function")


@dataclass(frozen=True, slots=True)
class _Request:
    """Who a reservation is for: the arguments of :meth:`LedgerReserve.reserve` that every
    reservation carries as they are."""

    request_id: str
    project_id: str
    provider: str
    user_id: str | None
    key_id: str | None

    def reservation(
        self,
        *,
        model: str,
        max_cost: Cost | None,
        created_at: datetime,
        limited: bool,
        output_limit: bool = True,
        hard: Sequence[BudgetSpec] = (),
    ) -> Reservation:
        """A new reservation for this request. ``output_limit``: whether it covers
        ``max_cost``'s output tokens (``output_token_limit``); ``hard`` the hard budgets that
        apply to it."""
        output = max_cost.line("output") if max_cost is not None and output_limit else None
        return Reservation(
            id=uuid4_hex(),
            request_id=self.request_id,
            project_id=self.project_id,
            model=model,
            provider=self.provider,
            max_cost=max_cost,
            created_at=created_at,
            limited=limited,
            user_id=self.user_id,
            key_id=self.key_id,
            output_token_limit=output.quantity if output is not None else None,
            hard_budgets=frozenset(b.id for b in hard) if hard else frozenset(),
        )


class LedgerReserve(LedgerWrites):
    """The part of :class:`~oneflow_ai.billing.ledger.Ledger` that reserves."""

    # ---- the hot path ----------------------------------------------------------------------

    async def reserve(
        self,
        *,
        request_id: str,
        project_id: str,
        max_cost: Cost | Callable[[], Cost],
        provider: str,
        model: str | None = None,
        user_id: str | None = None,
        key_id: str | None = None,
    ) -> Reservation:
        """Hold ``max_cost`` (from ``pricing.max_cost``) for one request.

        ``max_cost`` may be a function that computes it: it is then called only when a limit
        applies (a postpaid request without a hard budget holds nothing, so pricing its worst
        case would be wasted work); ``model`` names the model in that case.

        Raises :class:`InsufficientCreditsError` (402) when the prepaid balance or a hard
        credits budget cannot cover it, :class:`RateLimitedError` (429) when a hard tokens or
        requests quota is used up, :class:`ServiceUnavailableError` (503) when the ledger's
        database cannot be reached for a project that has limits.
        """
        await self.wait_ready()
        now = self._clock()
        request = _Request(request_id, project_id, provider, user_id, key_id)
        book = self.state.usable(project_id) or await self.state.for_project(project_id)
        hard = [b for b in book.matching(project_id, user_id, key_id, provider) if b.hard]
        prepaid = project_id in book.prepaid
        if not (prepaid or hard):
            return request.reservation(
                model=model or _model_of(max_cost),
                max_cost=max_cost if isinstance(max_cost, Cost) else None,
                created_at=now,
                limited=False,
            )
        if not isinstance(max_cost, Cost):
            max_cost = max_cost()
        if max_cost.micro_credits == 0 and all(b.metric is Metric.CREDITS for b in hard):
            # Free at worst (a free model, an answer from the response cache): nothing to hold
            # on the balance or a credits budget, so no round trip to the database for it.
            return request.reservation(
                model=max_cost.model,
                max_cost=max_cost,
                created_at=now,
                limited=False,
                output_limit=False,
            )
        if self.durable.database_down:
            return self._degraded(request, max_cost, hard)
        reservation = request.reservation(
            model=max_cost.model, max_cost=max_cost, created_at=now, limited=True, hard=hard
        )
        if prepaid and not hard and self.leases.enabled:
            reservation.lease = self.leases.take(project_id, max_cost.micro_credits)
            if reservation.lease is not None:  # held in memory on a durable lease
                return reservation
        return await self._hold(reservation, request, max_cost, book, hard, prepaid=prepaid)

    async def _hold(
        self,
        reservation: Reservation,
        request: _Request,
        max_cost: Cost,
        book: BudgetBook,
        hard: Sequence[BudgetSpec],
        *,
        prepaid: bool,
    ) -> Reservation:
        """Write ``reservation``'s holds (the balance when ``prepaid``, each of ``hard``) in
        one group-committed transaction; refuse it when one of them does not fit."""
        now = reservation.created_at
        holds = tuple(
            HoldRow(b.id, period_start(b.period, now), hold_amount(b.metric, max_cost))
            for b in hard
        )
        for budget, hold in zip(hard, holds, strict=True):
            if hold.amount > budget.limit:  # can never fit: no need to ask the database
                raise refusal(book, budget.id, max_cost, now)
        future = self._enqueue(self._reserve_command(reservation, holds, prepaid=prepaid))
        try:
            reserved = await self._outcome(asyncio.shield(future))
        except ServiceUnavailableError:
            if self.durable.database_down and self.config.degraded_postpaid:
                return self._degraded(request, max_cost, hard)
            raise
        except asyncio.CancelledError:
            # The caller is gone but the hold may still commit: give it back when it does.
            future.add_done_callback(lambda done: self._release_abandoned(reservation, done))
            raise
        assert isinstance(reserved, Reserved)
        if not reserved.accepted:
            raise refusal(book, reserved.refused_by, max_cost, now)
        reservation.account_hold = reserved.account_hold
        reservation.holds = reserved.holds
        return reservation

    def _reserve_command(
        self, reservation: Reservation, holds: tuple[HoldRow, ...], *, prepaid: bool
    ) -> ReserveCommand:
        now = reservation.created_at
        return ReserveCommand(
            reservation_id=reservation.id,
            request_id=reservation.request_id,
            project_id=reservation.project_id,
            user_id=reservation.user_id,
            key_id=reservation.key_id,
            model=reservation.model,
            provider=reservation.provider,
            account_hold=reservation.max_micro_credits if prepaid else 0,
            max_micro_credits=reservation.max_micro_credits,
            holds=holds,
            owner=self.owner,
            created_at=now,
            expires_at=now + timedelta(seconds=self.config.reservation_ttl),
        )

    def _degraded(
        self, request: _Request, max_cost: Cost, hard: Sequence[BudgetSpec]
    ) -> Reservation:
        """The database is unreachable: with LEDGER_DEGRADED_POSTPAID the request is served
        without a hold (charged through the spool), else it is refused at once."""
        if not self.config.degraded_postpaid:
            raise unreachable_error()
        return request.reservation(
            model=max_cost.model,
            max_cost=max_cost,
            created_at=self._clock(),
            limited=False,
            hard=hard,
        )

    def _release_abandoned(
        self, reservation: Reservation, done: asyncio.Future[LedgerResult]
    ) -> None:
        if done.cancelled() or done.exception() is not None:
            return
        result = done.result()
        if not (isinstance(result, Reserved) and result.accepted):
            return
        reservation.account_hold = result.account_hold
        reservation.holds = result.holds
        reservation.state = ReservationState.RELEASED
        with contextlib.suppress(Exception):
            self._enqueue(
                ReleaseCommand(
                    reservation_id=reservation.id,
                    project_id=reservation.project_id,
                    account_hold=result.account_hold,
                    holds=result.holds,
                    record=None,
                )
            )
