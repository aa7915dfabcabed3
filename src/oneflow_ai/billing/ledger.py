"""The credits ledger: reserve before the upstream call, settle or release after.

The hot path is in :mod:`oneflow_ai.billing.ledger_reserve` and
:mod:`oneflow_ai.billing.ledger_writes`; this module is the life cycle (start, maintenance,
shutdown) and what administration changes at once in this process.

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
- ``reserve`` on a prepaid project without a hard budget for this caller, with credit leases on
  (``LEDGER_LEASES``): no I/O while this replica's lease on the balance covers the worst case
  (the lease itself is a group-committed write, in the background;
  :mod:`oneflow_ai.billing.leases`).
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
from collections.abc import Callable
from datetime import datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from oneflow_ai.billing.budgets import (
    BudgetAlert,
    BudgetBook,
    BudgetSpec,
)
from oneflow_ai.billing.checkpoints import Checkpoints
from oneflow_ai.billing.durable import DurableWrites
from oneflow_ai.billing.leases import Leases
from oneflow_ai.billing.ledger_admin import AccountView, BudgetStatus, LedgerAdmin, spec_from_row
from oneflow_ai.billing.ledger_config import LedgerConfig
from oneflow_ai.billing.ledger_errors import (
    describe,
)
from oneflow_ai.billing.ledger_reserve import LedgerReserve
from oneflow_ai.billing.ledger_state import Announcer, LedgerState, ProjectFunding, change_message
from oneflow_ai.billing.pricing import PricingEngine
from oneflow_ai.billing.recovery import Reconciler
from oneflow_ai.errors import GatewayError
from oneflow_ai.storage import ledger_store
from oneflow_ai.storage.group_commit import DatabaseUnreachableError, GroupCommitWriter
from oneflow_ai.storage.health import Health, is_unreachable
from oneflow_ai.storage.ledger_batch import apply_batch
from oneflow_ai.storage.ledger_commands import (
    LedgerCommand,
    LedgerResult,
    SettleCommand,
    Settled,
)
from oneflow_ai.storage.spool import SettlementSpool, SpooledCommand
from oneflow_ai.storage.tables import utcnow
from oneflow_ai.tasks import stop

__all__ = ["Ledger", "LedgerConfig"]


log = structlog.get_logger("oneflow.billing.ledger")


def _default_owner(instance: str | None) -> str:
    """This process's owner id: unique per process, naming its instance when it has one."""
    return f"{(instance or socket.gethostname())[:80]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _group_writer(
    engine: AsyncEngine, config: LedgerConfig, health: Health | None
) -> GroupCommitWriter[LedgerCommand, LedgerResult]:
    """The writer that group-commits every ledger command (``apply_batch``); with ``health``,
    an unreachable database trips it."""
    return GroupCommitWriter(
        engine,
        apply_batch,
        max_batch=config.batch_max,
        max_delay=config.flush_interval,
        max_pending=config.max_pending,
        name="ledger",
        unreachable=is_unreachable if health is not None else None,
        on_unreachable=health.trip if health is not None else None,
    )


class Ledger(LedgerReserve):
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
            bus.subscribe(self._on_message)
        self._ready = asyncio.Event()
        self._writer = _group_writer(engine, self.config, health)
        self._maintenance: asyncio.Task[None] | None = None
        self.durable = DurableWrites(
            self._writer.submit,
            spool,
            health,
            write_behind=self.config.write_behind,
            on_written=self._written,
        )
        self.admin = LedgerAdmin(
            engine, clock=clock, announce=self._announce, before_read=self.durable.caught_up
        )
        self._reconciler = Reconciler(self, clock)
        if health is not None:
            health.on_recovery.append(self._database_returned)
        self.leases = Leases(
            self._writer.submit,
            self.config.leases,
            owner=self.owner,
            reservation_ttl=self.config.reservation_ttl,
            clock=clock,
        )
        self.checkpoints = Checkpoints(
            self._writer.submit,
            owner=self.owner,
            interval=self.config.checkpoint_interval,
            reservation_ttl=self.config.reservation_ttl,
            clock=clock,
        )

    # ---- life cycle ------------------------------------------------------------------------

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

    async def close(self) -> None:
        """Stop maintenance, settle or release this process's remaining reservations, flush,
        stop."""
        await stop(self._maintenance)
        self._maintenance = None
        await self.checkpoints.stop()
        await self.durable.drain()
        await self.durable.stop_draining()  # what it has not written is replayed below
        if self._reconciler.registered and not self.durable.database_down:
            try:
                await asyncio.wait_for(self._flush_spool(), self.config.shutdown_timeout)
                self.leases.forget()  # returned with every other hold of this process
                await asyncio.wait_for(self.leases.settled(), self.config.shutdown_timeout)
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
        self.leases.abandon()
        self.durable.abandon()
        self._writer.abandon()

    def _written(self, command: SpooledCommand, result: LedgerResult) -> None:
        """A spooled command reached the database: its lease may go, its budgets may alert."""
        if isinstance(command, SettleCommand) and isinstance(result, Settled):
            if command.lease_id is not None:
                self.leases.written(command.lease_id)
            self._alert(result.counters)

    async def caught_up(self) -> None:
        """Return once this process's own settlements are in the database (write-behind
        drains them moments later; at once otherwise): for reads of usage and balances."""
        await self.durable.caught_up()

    async def reconcile(self) -> int:
        """Heartbeat, then release dead owners' and expired reservations, and settle their
        checkpointed streams; how many reservations were resolved (see billing.recovery)."""
        return await self._reconciler.reconcile()

    async def release_instance(self, instance: str) -> tuple[int, int]:
        """Settle or release everything the instance ``instance`` holds, at once (by hand, for
        an instance that is known to be dead), and what any dead owner left: how many
        reservations were released, and how many interrupted streams were settled."""
        return await self._reconciler.reap(self._reconciler.command(previous_of=instance))

    def _on_message(self, message: str) -> None:
        """A funding change (``ledger:<project>``, ``*``): forget what was known of it, and
        retire the leases taken on what it was."""
        self.state.on_message(message)
        kind, _, project_id = message.partition(":")
        if message == "*":
            self.leases.forget()
        elif kind == "ledger" and project_id:
            self.leases.forget(project_id)

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
        self.leases.maintain()
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
                self.leases.maintain()
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
            self._on_message(message)
        with contextlib.suppress(GatewayError):  # committed: the next request reads it
            await self.state.for_project(project_id)
