"""Credit leases: a replica's durable slice of a prepaid balance, reserved from in memory.

Without a lease, every request of a prepaid project writes its reservation (a group-committed
transaction) before the upstream call. With one, the replica has already held a slice of the
balance in the database (a reservation row of its own, ``storage/ledger_leases.py``), and a
request's worst case is taken from that slice in memory: no database round trip before the
call. Its settlement, group-committed as before the response's last byte, takes the charge out
of the lease's row in the same transaction that appends it.

The rules that keep it exact:

- A lease is written (durable) before anything is served from it; what it has free in memory
  is its size minus the worst cases of the requests in flight on it and the charges settled on
  it. Its row always holds at least the worst cases of those in flight, so the balance can
  never be overspent through it, and a crash leaves nothing that reconciliation cannot give
  back: a dead replica's leases are released with its other reservations (its streams'
  checkpoints are charged as before).
- Sizes come from what the project's requests hold at once and what they spend: twice the
  largest sum of worst cases in flight at once since the last lease was asked for (so that the
  requests in flight take at most half of a lease, and a lease is not refilled for them alone),
  plus ``LEDGER_LEASE_HORIZON_SECONDS`` of recent charges (at most
  ``LEDGER_LEASE_MAX_CREDITS``), and at least ``LEDGER_LEASE_MIN_REQUESTS`` worst cases of the
  request that asked; the database grants at most ``1 / LEDGER_LEASE_SHARE`` of what the
  balance has free, or nothing below that minimum. Near the end of a balance no lease is
  granted, and requests reserve one by one as before; a request whose worst case the lease
  cannot cover does too.
- A lease that runs low is refilled in the background (a new lease; the old one is retired).
  A retired lease serves nothing more and is returned (its row deleted, what it still holds
  given back) once the requests in flight on it have settled. Leases are retired when they
  are older than ``LEDGER_LEASE_LIFETIME_SECONDS``, when the project's funding or budgets
  change (the ``ledger:<project>`` message), and returned at shutdown.
- A lease with settlements in the spool (the database away, or ``LEDGER_WRITE_BEHIND``) is
  not returned until each of them is written: a settlement must find its lease's row, and
  the balance must not look freer than it is while its charge waits.
- A lease unused for a whole maintenance round is retired too: an idle replica holds no slice.
- Requests a hard budget applies to, and projects not prepaid, never use leases.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog

from oneflow_ai.storage.ledger_commands import (
    LedgerCommand,
    LedgerResult,
    ReleaseCommand,
    ReserveCommand,
    Reserved,
)
from oneflow_ai.storage.ledger_leases import LEASE_MODEL

__all__ = ["Lease", "LeaseConfig", "Leases"]

log = structlog.get_logger("oneflow.billing.ledger")


@dataclass(frozen=True, slots=True)
class LeaseConfig:
    """How leases are sized and kept (each field has a ``LEDGER_LEASE_*`` setting)."""

    enabled: bool = False
    share: int = 8  # a lease takes at most 1/share of what the balance has free
    min_requests: int = 16  # ... and at least this many worst cases of the request
    horizon: float = 10.0  # seconds of recent charges a lease is sized for
    lifetime: float = 60.0  # seconds a lease serves before it is retired
    max_micro_credits: int = 100_000_000  # 100 credits: at most this much for charges
    retry_after: float = 1.0  # seconds before asking again after a refusal


@dataclass(eq=False, slots=True)
class Lease:
    """One granted lease; ``free`` is what it can still take for new requests."""

    id: str
    project_id: str
    size: int
    free: int
    until: float  # monotonic: retired after
    in_flight: int = 0
    retired: bool = False
    spooled: int = 0  # its settlements in the spool, not yet written: kept until they are
    returned: bool = False
    used: bool = True  # served a request since the last maintenance round


@dataclass(slots=True)
class _Spend:
    since: float
    charged: int = 0  # charges settled on its leases since ``since``
    holding: int = 0  # worst cases in flight on its leases
    peak: int = 0  # the most held at once (with the request asking) since ``since``
    asking: bool = False
    refused_until: float = 0.0
    current: Lease | None = None
    retired: list[Lease] = field(default_factory=list)


class Leases:
    """A replica's leases, per project; see the module documentation."""

    def __init__(
        self,
        submit: Callable[[LedgerCommand], asyncio.Future[LedgerResult]],
        config: LeaseConfig,
        *,
        owner: str,
        reservation_ttl: float,
        clock: Callable[[], datetime],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self._submit = submit
        self._owner = owner
        self._ttl = timedelta(seconds=reservation_ttl)
        self._clock = clock
        self._monotonic = monotonic
        self._projects: dict[str, _Spend] = {}
        self._by_id: dict[str, Lease] = {}  # leases with settlements in the spool
        self._tasks: set[asyncio.Task[None]] = set()
        self.granted = 0  # leases granted since start (for tests and logs)
        self.returned = 0

    @property
    def enabled(self) -> bool:
        return self.config.enabled

    def take(self, project_id: str, amount: int) -> Lease | None:
        """Hold ``amount`` on the project's lease in memory (no I/O), or None: the caller
        reserves per request. Asks for a lease in the background when there is none, or
        when the one there is runs low."""
        now = self._monotonic()
        project = self._projects.get(project_id)
        if project is None:
            project = self._projects[project_id] = _Spend(since=now)
        demand = project.holding + amount
        if demand > project.peak:
            project.peak = demand
        lease = project.current
        if lease is not None and now >= lease.until:
            self._retire(project, lease)
            lease = None
        if lease is None or lease.free < lease.size // 2:
            self._ask(project_id, project, amount, now)
        if lease is None or lease.free < amount:
            return None
        lease.free -= amount
        lease.in_flight += 1
        lease.used = True
        project.holding = demand
        return lease

    def done(self, lease: Lease, held: int, charged: int, *, spooled: bool = False) -> None:
        """A request served from ``lease`` is settled (``charged``) or released (0); called
        once its settlement is committed (or spooled)."""
        lease.in_flight -= 1
        project = self._projects.get(lease.project_id)
        if project is not None:
            project.holding -= held
            project.charged += charged
        if spooled:
            lease.spooled += 1
            self._by_id[lease.id] = lease
        if not lease.retired:
            lease.free += held - min(charged, held) - max(charged - held, 0)
        elif lease.in_flight == 0:
            self._give_back(lease)

    def forget(self, project_id: str | None = None) -> None:
        """Retire the project's lease (every lease with None): its funding changed."""
        projects = (
            list(self._projects.values())
            if project_id is None
            else [p for p in (self._projects.get(project_id),) if p is not None]
        )
        for project in projects:
            if project.current is not None:
                self._retire(project, project.current)

    def maintain(self) -> None:
        """Retire leases past their lifetime or unused since the last round (an idle replica
        holds no slice); return retired ones nothing is in flight on (again, for those whose
        return failed)."""
        now = self._monotonic()
        for project in self._projects.values():
            lease = project.current
            if lease is not None and (now >= lease.until or not lease.used):
                self._retire(project, lease)
            elif lease is not None:
                lease.used = False
            for lease in list(project.retired):
                if lease.in_flight == 0:
                    self._give_back(lease)

    def written(self, lease_id: str) -> None:
        """A spooled settlement on ``lease_id`` is in the database now."""
        lease = self._by_id.get(lease_id)
        if lease is None:  # not this process's (a previous run spooled it)
            return
        lease.spooled -= 1
        if lease.spooled <= 0:
            lease.spooled = 0
            del self._by_id[lease_id]
            if lease.retired and lease.in_flight == 0:
                self._give_back(lease)

    def held(self, project_id: str) -> int:
        """What this replica's leases of the project hold for new requests (for tests)."""
        project = self._projects.get(project_id)
        lease = project.current if project is not None else None
        return lease.free if lease is not None else 0

    async def settled(self) -> None:
        """Wait for the leases being asked for or returned (for tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def abandon(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    # ---- asking and returning ---------------------------------------------------------------

    def _ask(self, project_id: str, project: _Spend, amount: int, now: float) -> None:
        if project.asking or now < project.refused_until:
            return
        rate = project.charged / max(now - project.since, 1.0)
        spend = min(int(rate * self.config.horizon), self.config.max_micro_credits)
        floor = amount * self.config.min_requests
        want = max(floor, 2 * project.peak + spend)
        project.asking = True
        project.since, project.charged, project.peak = now, 0, project.holding
        task = asyncio.get_running_loop().create_task(
            self._acquire(project_id, project, want, floor), name="ledger-lease"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _acquire(self, project_id: str, project: _Spend, want: int, floor: int) -> None:
        lease_id = uuid.uuid4().hex
        now = self._clock()
        command = ReserveCommand(
            reservation_id=lease_id,
            request_id=f"lease:{lease_id}",
            project_id=project_id,
            user_id=None,
            key_id=None,
            model=LEASE_MODEL,
            provider=LEASE_MODEL,
            account_hold=want,
            max_micro_credits=want,
            holds=(),
            owner=self._owner,
            created_at=now,
            expires_at=now + self._ttl,
            lease_share=self.config.share,
            lease_floor=floor,
        )
        try:
            result = await self._submit(command)
        except Exception as exc:
            log.warning("ledger_lease_failed", project_id=project_id, error=str(exc))
            result = Reserved(accepted=False)
        finally:
            project.asking = False
        assert isinstance(result, Reserved)
        if not result.accepted:
            project.refused_until = self._monotonic() + self.config.retry_after
            return
        lease = Lease(
            id=lease_id,
            project_id=project_id,
            size=result.account_hold,
            free=result.account_hold,
            until=self._monotonic() + self.config.lifetime,
        )
        self.granted += 1
        if project.current is not None:
            self._retire(project, project.current)
        project.current = lease
        log.info("ledger_lease_granted", project_id=project_id, micro_credits=lease.size)

    def _retire(self, project: _Spend, lease: Lease) -> None:
        lease.retired = True
        if project.current is lease:
            project.current = None
        if lease not in project.retired:
            project.retired.append(lease)
        if lease.in_flight == 0:
            self._give_back(lease)

    def _give_back(self, lease: Lease) -> None:
        if lease.spooled or lease.returned:
            return
        lease.returned = True
        task = asyncio.get_running_loop().create_task(self._return(lease), name="ledger-lease")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _return(self, lease: Lease) -> None:
        command = ReleaseCommand(
            reservation_id=lease.id,
            project_id=lease.project_id,
            account_hold=0,
            holds=(),
            record=None,
            lease=True,
        )
        try:
            await self._submit(command)
        except Exception as exc:  # the next maintenance round tries again
            lease.returned = False
            log.warning("ledger_lease_return_failed", project_id=lease.project_id, error=str(exc))
            return
        self.returned += 1
        project = self._projects.get(lease.project_id)
        if project is not None and lease in project.retired:
            project.retired.remove(lease)
