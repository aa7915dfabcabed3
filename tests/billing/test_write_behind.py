"""Write-behind (``LEDGER_WRITE_BEHIND``), on SQLite and PostgreSQL: a settlement is durable in
the local spool when ``settle`` returns and reaches the database moments later, exactly once;
a lease is not given back while a charge on it waits; reads wait for this process's own
charges; budget alerts still fire; a stop writes everything."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from oneflow_ai.billing import PricingEngine
from oneflow_ai.billing.budgets import BudgetAlert, BudgetMode, BudgetSpec, Metric, Period
from oneflow_ai.billing.leases import LeaseConfig
from oneflow_ai.billing.ledger import Ledger
from oneflow_ai.billing.reservation import Reservation
from oneflow_ai.domain.usage import Usage
from oneflow_ai.storage.spool import SettlementSpool
from tests.support.ledger import FakeClock, assert_consistent, create_projects, make_ledger

PRICING = PricingEngine()
CREDIT = 1_000_000
WORST = PRICING.max_cost("gpt-4o", 1000, 1000)
USAGE = Usage(input_tokens=1000, output_tokens=100)  # 0.35 credits on gpt-4o
LEASES = LeaseConfig(enabled=True, share=8, min_requests=4, horizon=10, lifetime=60)


def behind(engine: AsyncEngine, folder: Path, **options: object) -> Ledger:
    config = make_ledger(engine, leases=LEASES, write_behind=True).config  # type: ignore[arg-type]
    return Ledger(
        engine,
        PRICING,
        config,
        clock=FakeClock(),
        owner="replica-a",
        spool=SettlementSpool(folder / "spool.jsonl"),
        **options,  # type: ignore[arg-type]
    )


@pytest.fixture
async def ledger(engine: AsyncEngine, tmp_path: Path) -> AsyncIterator[Ledger]:
    await create_projects(engine, "p1")
    running = behind(engine, tmp_path)
    await running.start()
    await running.wait_ready()
    try:
        yield running
    finally:
        await running.close()


async def reserve(ledger: Ledger, request_id: str) -> Reservation:
    return await ledger.reserve(
        request_id=request_id, project_id="p1", max_cost=WORST, provider="openai"
    )


async def test_a_settlement_is_spooled_then_written_once(
    engine: AsyncEngine, ledger: Ledger
) -> None:
    await ledger.top_up("p1", 100 * CREDIT)
    charged = 0
    for i in range(30):
        settled = await ledger.settle(await reserve(ledger, f"r{i}"), USAGE)
        assert settled.spooled and settled.charged
        charged += settled.cost.micro_credits
    await ledger.caught_up()
    await ledger.leases.settled()  # a refill asked for in the background, committed
    assert ledger.spool is not None and ledger.spool.pending == 0
    snap = (await assert_consistent(engine, ["p1"]))["p1"]
    assert len(snap.charges) == 30 and snap.duplicate_charges == 0
    assert snap.balance == 100 * CREDIT - charged
    assert snap.usage_records == 30
    assert ledger.spool.replayed == ledger.spool.appended  # every line written, none twice


async def test_a_read_waits_for_this_process_charges(ledger: Ledger) -> None:
    await ledger.top_up("p1", 100 * CREDIT)
    settled = await ledger.settle(await reserve(ledger, "read-1"), USAGE)
    account = await ledger.admin.account("p1")  # no explicit wait: the read catches up
    assert account.balance == 100 * CREDIT - settled.cost.micro_credits


async def test_a_lease_is_kept_until_its_spooled_charges_are_written(
    engine: AsyncEngine, ledger: Ledger
) -> None:
    await ledger.top_up("p1", 1000 * CREDIT)
    await ledger.settle(await reserve(ledger, "warm"), USAGE)  # asks for a lease
    await ledger.leases.settled()
    held = await reserve(ledger, "on-lease")
    assert held.lease is not None
    lease = held.lease
    await ledger.durable.stop_draining()  # the charge stays in the spool for now
    await ledger.settle(held, USAGE)
    assert lease.spooled == 1
    ledger.leases.forget("p1")  # retired, nothing in flight on it: returned only once written
    await ledger.leases.settled()
    assert not lease.returned
    await ledger.durable.replay()
    await ledger.leases.settled()
    assert lease.spooled == 0 and lease.returned
    snap = (await assert_consistent(engine, ["p1"]))["p1"]
    assert snap.leases == 0 and snap.reserved == 0
    assert snap.balance == 1000 * CREDIT - sum(snap.charges.values())


async def test_budget_alerts_fire_when_the_charges_are_written(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    await create_projects(engine, "p1")
    alerts: list[BudgetAlert] = []
    ledger = behind(engine, tmp_path, on_budget_alert=alerts.append)
    await ledger.start()
    try:
        await ledger.set_budgets(
            "p1",
            [
                BudgetSpec(
                    id="",
                    project_id="p1",
                    metric=Metric.CREDITS,
                    period=Period.MONTH,
                    limit=CREDIT,
                    mode=BudgetMode.SOFT,
                )
            ],
        )
        for i in range(4):  # 0.35 credits each: crosses 1 credit on the 3rd
            await ledger.settle(await reserve(ledger, f"soft-{i}"), USAGE)
        await ledger.caught_up()
    finally:
        await ledger.close()
    # One alert, once the crossing charge is written (the four may share one batch).
    assert len(alerts) == 1 and alerts[0].used >= CREDIT


async def test_a_stop_writes_what_the_spool_still_holds(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    await create_projects(engine, "p1")
    ledger = behind(engine, tmp_path)
    await ledger.start()
    await ledger.wait_ready()
    await ledger.top_up("p1", 100 * CREDIT)
    await ledger.durable.stop_draining()
    for i in range(5):
        await ledger.settle(await reserve(ledger, f"stop-{i}"), USAGE)
    assert ledger.spool is not None and ledger.spool.pending == 5
    await ledger.close()
    snap = (await assert_consistent(engine, ["p1"]))["p1"]
    assert len(snap.charges) == 5 and (snap.reserved, snap.reservations) == (0, 0)
    assert snap.balance == 100 * CREDIT - sum(snap.charges.values())
