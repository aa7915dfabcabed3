"""Helpers for ledger tests: a clock to move by hand, projects, and the ledger's invariants."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from oneflow_ai.billing.ledger import Ledger, LedgerConfig
from oneflow_ai.billing.pricing import PricingEngine
from oneflow_ai.storage.health import Health
from oneflow_ai.storage.spool import SettlementSpool

__all__ = [
    "FakeClock",
    "Snapshot",
    "assert_consistent",
    "create_projects",
    "make_ledger",
    "snapshot",
]

FAST = LedgerConfig(
    flush_interval=0.001,
    batch_max=500,
    reservation_ttl=3600,
    owner_timeout=30,
    maintenance_interval=3600,  # tests reconcile and refresh explicitly
    ready_timeout=10,
    shutdown_timeout=10,
)


class FakeClock:
    """A UTC clock that only moves when told to."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 11, 26, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


async def create_projects(engine: AsyncEngine, *project_ids: str) -> None:
    async with engine.begin() as connection:
        for project_id in project_ids:
            await connection.execute(
                text("INSERT INTO projects (id, name, created_at) VALUES (:id, :id, :at)"),
                {"id": project_id, "at": datetime.now(UTC)},
            )


def make_ledger(
    engine: AsyncEngine,
    *,
    pricing: PricingEngine | None = None,
    clock: FakeClock | None = None,
    owner: str | None = None,
    health: Health | None = None,
    spool: SettlementSpool | None = None,
    **config: float,
) -> Ledger:
    settings = LedgerConfig(**{**{f: getattr(FAST, f) for f in FAST.__slots__}, **config})
    return Ledger(
        engine,
        pricing or PricingEngine(),
        settings,
        clock=clock or FakeClock(),
        owner=owner,
        health=health,
        spool=spool,
    )


@dataclass(frozen=True)
class Snapshot:
    """What the database says about one project."""

    balance: int | None  # cached on the account row (None: no account)
    reserved: int | None
    mode: str | None
    entries_sum: int
    active_holds_sum: int  # SUM(ledger_reservations.amount)
    charges: dict[str, int]  # request id -> charged micro-credits (positive)
    duplicate_charges: int  # charges sharing a request id (must be 0)
    counters: dict[str, tuple[int, int]]  # budget id -> (used, reserved) summed over periods
    counter_holds: dict[str, int]  # budget id -> SUM(holds of active reservations)
    reservations: int  # rows of ledger_reservations, credit leases included
    usage_records: int
    leases: int = 0  # of which credit leases (a replica's slice of the balance)
    leased: int = 0  # what those leases hold


async def snapshot(engine: AsyncEngine, project_id: str) -> Snapshot:
    params = {"p": project_id}
    async with engine.connect() as c:
        account = (
            await c.execute(
                text("SELECT balance, reserved, mode FROM ledger_accounts WHERE project_id = :p"),
                params,
            )
        ).first()
        entries_sum = (
            await c.execute(
                text("SELECT COALESCE(SUM(amount), 0) FROM ledger_entries WHERE project_id = :p"),
                params,
            )
        ).scalar_one()
        holds_sum, count, leases, leased = (
            await c.execute(
                text(
                    "SELECT COALESCE(SUM(amount), 0), COUNT(*), "
                    "COALESCE(SUM(CASE WHEN model = 'lease' THEN 1 ELSE 0 END), 0), "
                    "COALESCE(SUM(CASE WHEN model = 'lease' THEN amount ELSE 0 END), 0) "
                    "FROM ledger_reservations WHERE project_id = :p"
                ),
                params,
            )
        ).one()
        charge_rows = (
            await c.execute(
                text(
                    "SELECT request_id, amount FROM ledger_entries "
                    "WHERE project_id = :p AND kind = 'charge'"
                ),
                params,
            )
        ).all()
        counter_rows = (
            await c.execute(
                text(
                    "SELECT c.budget_id, SUM(c.used), SUM(c.reserved) FROM budget_counters c "
                    "JOIN budgets b ON b.id = c.budget_id WHERE b.project_id = :p "
                    "GROUP BY c.budget_id"
                ),
                params,
            )
        ).all()
        hold_rows = (
            await c.execute(
                text(
                    "SELECT h.budget_id, SUM(h.amount) FROM reservation_holds h "
                    "JOIN ledger_reservations r ON r.id = h.reservation_id "
                    "WHERE r.project_id = :p GROUP BY h.budget_id"
                ),
                params,
            )
        ).all()
        records = (
            await c.execute(
                text("SELECT COUNT(*) FROM usage_records WHERE project_id = :p"), params
            )
        ).scalar_one()
    charges: dict[str, int] = {}
    for request_id, amount in charge_rows:
        charges[request_id] = charges.get(request_id, 0) - int(amount)
    return Snapshot(
        balance=int(account[0]) if account else None,
        reserved=int(account[1]) if account else None,
        mode=account[2] if account else None,
        entries_sum=int(entries_sum),
        active_holds_sum=int(holds_sum),
        charges=charges,
        duplicate_charges=len(charge_rows) - len(charges),
        counters={row[0]: (int(row[1]), int(row[2])) for row in counter_rows},
        counter_holds={row[0]: int(row[1]) for row in hold_rows},
        reservations=int(count),
        usage_records=int(records),
        leases=int(leases),
        leased=int(leased),
    )


async def assert_consistent(
    engine: AsyncEngine, project_ids: Iterable[str], *, hard_limits: dict[str, int] | None = None
) -> dict[str, Snapshot]:
    """The invariants that hold after every operation, whatever the order:

    the cached balance is the sum of the entries, the cached reserved amount is the sum of
    the active reservations' holds (on accounts and on budget counters), no request id is
    charged twice, a prepaid balance never goes below what is reserved, and a hard budget's
    usage plus holds never passes its limit.
    """
    found: dict[str, Snapshot] = {}
    for project_id in project_ids:
        snap = await snapshot(engine, project_id)
        found[project_id] = snap
        assert (snap.balance or 0) == snap.entries_sum, (project_id, snap)
        assert (snap.reserved or 0) == snap.active_holds_sum, (project_id, snap)
        assert snap.duplicate_charges == 0, (project_id, snap)
        for budget_id, (_, reserved) in snap.counters.items():
            assert reserved == snap.counter_holds.get(budget_id, 0), (project_id, snap)
        if snap.mode == "prepaid":
            assert (snap.balance or 0) - (snap.reserved or 0) >= 0, (project_id, snap)
        for budget_id, limit in (hard_limits or {}).items():
            used, reserved = snap.counters.get(budget_id, (0, 0))
            assert used + reserved <= limit, (project_id, budget_id, snap)
    return found
