"""The credits ledger on the hot path: reserve before the upstream call, settle or release after.

Integration (one request)::

    cost = ledger.pricing.max_cost(model, input_tokens, max_tokens)   # UnpricedModelError
    reservation = await ledger.reserve(request_id=rid, project_id=p, max_cost=cost,
                                       provider=provider, user_id=u, key_id=k)  # 402 / 429
    ... upstream call; while streaming: if reservation.would_exceed(output_tokens): end it ...
    await ledger.settle(reservation, usage, outcome=RequestOutcome(...))  # before the last byte
    # or, when nothing billable came back:
    await ledger.release(reservation, RequestOutcome(status=502, error="provider_error"))

What costs I/O, and when it is durable:

- ``reserve`` on a project without limits (postpaid, no hard budget for this caller): no I/O;
  the decision comes from the in-process :class:`BudgetBook`.
- ``reserve`` on a project with limits: one group-committed write (the conditional updates
  and the reservation row), durable before it returns, so a crash cannot leak the hold.
- ``settle``/``release``/``record``: one group-committed write shared with every request of the
  same few milliseconds; it returns once committed. Awaiting it before the response's last
  byte is what makes "the client saw it complete" imply "it is charged".

Streams: while a streamed answer runs, its progress (what the caller has received, priced) is
checkpointed every ``LEDGER_CHECKPOINT_INTERVAL_MS`` on its reservation row, many streams in one
write (:mod:`oneflow_ai.billing.checkpoints`).

Reconciliation: every ``LEDGER_MAINTENANCE_INTERVAL_SECONDS`` (and at start-up) the ledger
heartbeats its owner row, releases reservations whose owner stopped heartbeating for
``LEDGER_OWNER_TIMEOUT_SECONDS`` (a crashed replica) or that outlived
``LEDGER_RESERVATION_TTL_SECONDS``, and reloads which projects are prepaid and their budgets
(how changes reach every replica at once, and what happens when that reload is late:
``billing/ledger_state.py``). At start-up it releases at once what the earlier incarnations of
its own *instance* left (a stable identity: the same instance restarted knows its predecessor
is dead). A crashed process's requests without a checkpoint are released, never charged; its
checkpointed streams are charged what they had delivered at the last checkpoint, flagged
estimated, with a usage record whose error is ``interrupted`` (:mod:`oneflow_ai.billing.recovery`;
"Crash recovery" in docs/reliability.md).

Database outages: the first write that finds the database unreachable trips its health flag
(:mod:`oneflow_ai.storage.health`). While it is tripped, a request that needs a hold is refused
at once (503 with ``Retry-After``; or, with ``LEDGER_DEGRADED_POSTPAID``, served without one),
and settlements, releases and usage records go to the spool, durably, to be replayed when the
database answers again (:mod:`oneflow_ai.billing.durable`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from oneflow_ai.billing.budget_rules import crossings, hold_amount, increments, refusal
from oneflow_ai.billing.budgets import (
    BudgetAlert,
    BudgetBook,
    BudgetSpec,
    Metric,
    period_start,
)
from oneflow_ai.billing.checkpoints import Checkpoints, Probe
from oneflow_ai.billing.cost import Cost
from oneflow_ai.billing.durable import DurableWrites
from oneflow_ai.billing.ledger_admin import AccountView, BudgetStatus, LedgerAdmin, spec_from_row
from oneflow_ai.billing.ledger_config import LedgerConfig
from oneflow_ai.billing.ledger_errors import (
    describe,
    unavailable,
    unavailable_error,
    unreachable_error,
    usage_record,
)
from oneflow_ai.billing.ledger_state import Announcer, LedgerState, ProjectFunding, change_message
from oneflow_ai.billing.pricing import PricingEngine
from oneflow_ai.billing.recovery import Reconciler
from oneflow_ai.billing.reservation import Reservation, ReservationState, Settlement
from oneflow_ai.domain.usage import Usage
from oneflow_ai.domain.usage_record import RequestOutcome, UsageRecord
from oneflow_ai.errors import GatewayError, ServiceUnavailableError
from oneflow_ai.storage import ledger_store
from oneflow_ai.storage.group_commit import DatabaseUnreachableError, GroupCommitWriter
from oneflow_ai.storage.health import Health, is_unreachable
from oneflow_ai.storage.ledger_batch import apply_batch
from oneflow_ai.storage.ledger_commands import (
    CounterChange,
    EntryRow,
    HoldRow,
    LedgerCommand,
    LedgerResult,
    RecordCommand,
    ReleaseCommand,
    ReserveCommand,
    Reserved,
    SettleCommand,
    Settled,
)
from oneflow_ai.storage.spool import SettlementSpool
from oneflow_ai.storage.tables import utcnow
from oneflow_ai.tasks import stop

__all__ = ["Ledger", "LedgerConfig"]


def _model_of(max_cost: Cost | Callable[[], Cost]) -> str:
    if isinstance(max_cost, Cost):
        return max_cost.model
    raise TypeError("reserve(): give `model` when `max_cost` is a function")


log = structlog.get_logger("oneflow.billing.ledger")


def _default_owner(instance: str | None) -> str:
    """This process's owner id: unique per process, naming its instance when it has one."""
    return f"{(instance or socket.gethostname())[:80]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Ledger:
    """Reserve, settle, release and record; see the module documentation."""

    def __init__(
        self,
        engine: AsyncEngine,
        pricing: PricingEngine,
        config: LedgerConfig | None = None,
        *,
        clock: Callable[[], datetime] = utcnow,
        owner: str | None = None,
        instance: str | None = None,
        on_budget_alert: Callable[[BudgetAlert], None] | None = None,
        bus: Announcer | None = None,
        health: Health | None = None,
        spool: SettlementSpool | None = None,
    ) -> None:
        self.config = config or LedgerConfig()
        self.pricing = pricing
        self.engine = engine
        self.instance = instance
        self.owner = owner or _default_owner(instance)
        self.admin = LedgerAdmin(engine, clock=clock, announce=self._announce)
        self._clock = clock
        self._on_budget_alert = on_budget_alert
        self.state = LedgerState(
            self._load_book,
            self._load_project,
            max_age=self.config.state_max_age,
            fail_open=self.config.state_fail_open,
        )
        self._bus = bus
        if bus is not None:
            bus.subscribe(self.state.on_message)
        self._ready = asyncio.Event()
        self._writer: GroupCommitWriter[LedgerCommand, LedgerResult] = GroupCommitWriter(
            engine,
            apply_batch,
            max_batch=self.config.batch_max,
            max_delay=self.config.flush_interval,
            max_pending=self.config.max_pending,
            name="ledger",
            unreachable=is_unreachable if health is not None else None,
            on_unreachable=health.trip if health is not None else None,
        )
        self._maintenance: asyncio.Task[None] | None = None
        self.durable = DurableWrites(self._writer.submit, spool, health)
        self._reconciler = Reconciler(self, clock)
        if health is not None:
            health.on_recovery.append(self._database_returned)
        self.checkpoints = Checkpoints(
            self._writer.submit,
            owner=self.owner,
            interval=self.config.checkpoint_interval,
            reservation_ttl=self.config.reservation_ttl,
            clock=clock,
        )

    # ---- life cycle ------------------------------------------------------------------------

    @property
    def book(self) -> BudgetBook:
        return self.state.book

    @property
    def writer(self) -> GroupCommitWriter[LedgerCommand, LedgerResult]:
        return self._writer

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    @property
    def health(self) -> Health | None:
        return self.durable.health

    @property
    def spool(self) -> SettlementSpool | None:
        return self.durable.spool

    @property
    def database_outages(self) -> int:
        return self.health.outages if self.health is not None else 0

    async def start(self) -> None:
        """Start the writer, the checkpoints and the maintenance loop (whose first round
        reconciles)."""
        self._writer.start()
        self.checkpoints.start()
        log.info("ledger_started", instance=self.instance, owner=self.owner)
        if self._maintenance is None:
            self._maintenance = asyncio.get_running_loop().create_task(
                self._maintain(), name="ledger-maintenance"
            )

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

    async def close(self) -> None:
        """Stop maintenance, settle or release this process's remaining reservations, flush,
        stop."""
        await stop(self._maintenance)
        self._maintenance = None
        await self.checkpoints.stop()
        await self.durable.drain()
        if self._reconciler.registered and not self.durable.database_down:
            try:
                await asyncio.wait_for(self._flush_spool(), self.config.shutdown_timeout)
                reaped = self._reconciler.reap(self._reconciler.command(own=True))
                released = sum(await asyncio.wait_for(reaped, self.config.shutdown_timeout))
                if released:
                    log.info("ledger_released_at_shutdown", reservations=released)
            except Exception as exc:
                log.warning("ledger_shutdown_release_failed", error=describe(exc))
        await self._writer.close(self.config.shutdown_timeout)
        if self.health is not None:
            await self.health.close()
        if self.spool is not None:
            if self.spool.pending:
                log.error(
                    "ledger_spool_left", commands=self.spool.pending, path=str(self.spool.path)
                )
            await self.spool.close()

    def abandon(self) -> None:
        """Stop at once, committing nothing more (what ``kill -9`` does; for tests)."""
        if self._maintenance is not None:
            self._maintenance.cancel()
            self._maintenance = None
        self.checkpoints.abandon()
        self._writer.abandon()

    async def reconcile(self) -> int:
        """Heartbeat, then release dead owners' and expired reservations, and settle their
        checkpointed streams; how many reservations were resolved (see billing.recovery)."""
        return await self._reconciler.reconcile()

    async def release_instance(self, instance: str) -> tuple[int, int]:
        """Settle or release everything the instance ``instance`` holds, at once (by hand, for
        an instance that is known to be dead), and what any dead owner left: how many
        reservations were released, and how many interrupted streams were settled."""
        return await self._reconciler.reap(self._reconciler.command(previous_of=instance))

    async def write(self, command: LedgerCommand) -> LedgerResult:
        """Queue ``command`` and wait until it is committed (503 if it cannot be)."""
        return await self._outcome(asyncio.shield(self._enqueue(command)))

    def alert(self, changes: tuple[CounterChange, ...]) -> None:
        self._alert(changes)

    async def _flush_spool(self) -> int:
        """Replay what the spool holds (before anything else reads the ledger's state)."""
        replayed = await self.durable.replay()
        if replayed:
            log.warning("ledger_spool_flushed", commands=replayed)
        return replayed

    async def _database_returned(self) -> None:
        """The database answers again: replay the spool (the health flag stays tripped, and
        new settlements keep going to the spool, until this is done)."""
        await self._flush_spool()
        self._reconciler.database_returned()

    async def refresh(self) -> BudgetBook:
        """Reload budgets and prepaid projects from the database."""
        return await self.state.reload()

    async def _load_book(self) -> BudgetBook:
        self._refuse_while_unreachable()
        async with self.engine.connect() as connection:
            rows = await ledger_store.load_budgets(connection)
            prepaid = await ledger_store.prepaid_projects(connection)
        return BudgetBook.build(
            (spec_from_row(row) for row in rows), prepaid, loaded_at=self._clock()
        )

    async def _load_project(self, project_id: str) -> ProjectFunding:
        self._refuse_while_unreachable()
        async with self.engine.connect() as connection:
            rows = await ledger_store.load_budgets(connection, project_id)
            account = await ledger_store.get_account(connection, project_id)
        prepaid = account is not None and account.mode == "prepaid"
        return tuple(spec_from_row(row) for row in rows), prepaid

    def _refuse_while_unreachable(self) -> None:
        """A read would wait for a database known to be away: fail at once instead."""
        if self.durable.database_down:
            raise DatabaseUnreachableError("the ledger database is unreachable")

    async def _maintain(self) -> None:
        backoff = 0.25
        while True:
            try:
                if not self._ready.is_set():  # what a previous run spooled comes first
                    await self._flush_spool()
                await self.reconcile()
                await self.refresh()
                self._ready.set()
                backoff = 0.25
                delay = self.config.maintenance_interval
            except Exception as exc:
                log.warning("ledger_maintenance_failed", error=describe(exc))
                delay = min(backoff, self.config.maintenance_interval)
                backoff *= 2
            await asyncio.sleep(delay)

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
        book = self.state.usable(project_id) or await self.state.for_project(project_id)
        hard = [b for b in book.matching(project_id, user_id, key_id, provider) if b.hard]
        prepaid = project_id in book.prepaid
        if not (prepaid or hard):
            output = max_cost.line("output") if isinstance(max_cost, Cost) else None
            return Reservation(
                id=uuid.uuid4().hex,
                request_id=request_id,
                project_id=project_id,
                model=model or _model_of(max_cost),
                provider=provider,
                max_cost=max_cost if isinstance(max_cost, Cost) else None,
                created_at=now,
                limited=False,
                user_id=user_id,
                key_id=key_id,
                output_token_limit=output.quantity if output is not None else None,
            )
        if not isinstance(max_cost, Cost):
            max_cost = max_cost()
        if max_cost.micro_credits == 0 and all(b.metric is Metric.CREDITS for b in hard):
            # Free at worst (a free model, an answer from the response cache): nothing to hold
            # on the balance or a credits budget, so no round trip to the database for it.
            return Reservation(
                id=uuid.uuid4().hex,
                request_id=request_id,
                project_id=project_id,
                model=max_cost.model,
                provider=provider,
                max_cost=max_cost,
                created_at=now,
                limited=False,
                user_id=user_id,
                key_id=key_id,
            )
        if self.durable.database_down:
            return self._degraded(request_id, project_id, max_cost, provider, user_id, key_id, hard)
        output = max_cost.line("output")
        reservation = Reservation(
            id=uuid.uuid4().hex,
            request_id=request_id,
            project_id=project_id,
            model=max_cost.model,
            provider=provider,
            max_cost=max_cost,
            created_at=now,
            limited=True,
            user_id=user_id,
            key_id=key_id,
            output_token_limit=output.quantity if output is not None else None,
            hard_budgets=frozenset(b.id for b in hard),
        )
        holds = tuple(
            HoldRow(b.id, period_start(b.period, now), hold_amount(b.metric, max_cost))
            for b in hard
        )
        for budget, hold in zip(hard, holds, strict=True):
            if hold.amount > budget.limit:  # can never fit: no need to ask the database
                raise refusal(book, budget.id, max_cost, now)
        future = self._enqueue(
            ReserveCommand(
                reservation_id=reservation.id,
                request_id=request_id,
                project_id=project_id,
                user_id=user_id,
                key_id=key_id,
                model=max_cost.model,
                provider=provider,
                account_hold=max_cost.micro_credits if prepaid else 0,
                max_micro_credits=max_cost.micro_credits,
                holds=holds,
                owner=self.owner,
                created_at=now,
                expires_at=now + timedelta(seconds=self.config.reservation_ttl),
            )
        )
        try:
            reserved = await self._outcome(asyncio.shield(future))
        except ServiceUnavailableError:
            if self.durable.database_down and self.config.degraded_postpaid:
                return self._degraded(
                    request_id, project_id, max_cost, provider, user_id, key_id, hard
                )
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
        durable = reservation.active and (reservation.limited or reservation.checkpointed)
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
        future = self._durably(
            SettleCommand(
                charge=charge,
                reservation_id=reservation.id if durable else None,
                account_hold=reservation.account_hold if durable else 0,
                holds=reservation.holds if durable else (),
                usage_increments=increments(
                    self.book, reservation, provider, usage, cost.micro_credits
                ),
                record=usage_record(
                    reservation, outcome or RequestOutcome(), usage, cost, provider
                ),
            )
        )
        settling: asyncio.Future[Settlement] = asyncio.get_running_loop().create_future()
        reservation._settling = settling

        def committed(done: asyncio.Future[LedgerResult | None]) -> None:
            if done.cancelled() or done.exception() is not None:
                reservation._settling = None
                settling.set_exception(unavailable(done))
                return
            settled = done.result()
            reservation.state = ReservationState.SETTLED
            if settled is None:  # spooled: charged when the spool is replayed
                reservation.settlement = Settlement(reservation.request_id, cost, True, True)
                settling.set_result(reservation.settlement)
                return
            assert isinstance(settled, Settled)
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

        future.add_done_callback(committed)
        return await asyncio.shield(settling)

    async def release(self, reservation: Reservation, outcome: RequestOutcome) -> None:
        """Give back everything held for a request that produced nothing billable, and
        write its usage record (``outcome`` says how it failed). No-op once settled."""
        if not reservation.active or reservation._settling is not None:
            return
        self.checkpoints.untrack(reservation)
        reservation.state = ReservationState.RELEASED
        durable = reservation.limited or reservation.checkpointed
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

    # ---- administration that takes effect at once in this process -------------------------

    async def top_up(
        self,
        project_id: str,
        micro_credits: int,
        *,
        prepaid: bool = True,
        note: str | None = None,
        user_id: str | None = None,
        key_id: str | None = None,
    ) -> AccountView:
        return await self.admin.top_up(
            project_id, micro_credits, prepaid=prepaid, note=note, user_id=user_id, key_id=key_id
        )

    async def adjust(
        self,
        project_id: str,
        micro_credits: int,
        *,
        note: str | None = None,
        user_id: str | None = None,
        key_id: str | None = None,
    ) -> AccountView:
        return await self.admin.adjust(
            project_id, micro_credits, note=note, user_id=user_id, key_id=key_id
        )

    async def set_mode(self, project_id: str, mode: str) -> AccountView:
        return await self.admin.set_mode(project_id, mode)

    async def set_budgets(self, project_id: str, specs: list[BudgetSpec]) -> list[BudgetStatus]:
        return await self.admin.set_budgets(project_id, specs)

    async def _announce(self, project_id: str) -> None:
        """After a committed change: every replica (this one first) forgets the project and
        reads it again; this one reads it now, so its next request need not wait."""
        message = change_message(project_id)
        if self._bus is not None:
            await self._bus.publish(message)
        else:
            self.state.on_message(message)
        with contextlib.suppress(GatewayError):  # committed: the next request reads it
            await self.state.for_project(project_id)

    # ---- helpers ---------------------------------------------------------------------------

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

    def _degraded(
        self,
        request_id: str,
        project_id: str,
        max_cost: Cost,
        provider: str,
        user_id: str | None,
        key_id: str | None,
        hard: Sequence[BudgetSpec],
    ) -> Reservation:
        """The database is unreachable: with LEDGER_DEGRADED_POSTPAID the request is served
        without a hold (charged through the spool), else it is refused at once."""
        if not self.config.degraded_postpaid:
            raise unreachable_error()
        output = max_cost.line("output")
        return Reservation(
            id=uuid.uuid4().hex,
            request_id=request_id,
            project_id=project_id,
            model=max_cost.model,
            provider=provider,
            max_cost=max_cost,
            created_at=self._clock(),
            limited=False,
            user_id=user_id,
            key_id=key_id,
            output_token_limit=output.quantity if output is not None else None,
            hard_budgets=frozenset(b.id for b in hard),
        )

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
