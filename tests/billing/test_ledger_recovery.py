"""Reservations left behind expire and are reconciled; a crash leaves the ledger consistent."""

from __future__ import annotations

import asyncio

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from oneflow_ai.billing import PricingEngine
from oneflow_ai.billing.budgets import BudgetMode, BudgetSpec, Metric, Period
from oneflow_ai.billing.ledger import Ledger
from oneflow_ai.billing.reservation import Reservation
from oneflow_ai.domain.usage import Usage
from oneflow_ai.domain.usage_record import RequestOutcome
from oneflow_ai.storage.database import create_engine
from tests.support.ledger import FakeClock, assert_consistent, create_projects, make_ledger

PRICING = PricingEngine()
COST = PRICING.max_cost("gpt-4o", 1000, 1000)
CREDIT = 1_000_000


async def started(engine: AsyncEngine, clock: FakeClock, owner: str, **config: float) -> Ledger:
    ledger = make_ledger(engine, clock=clock, owner=owner, **config)
    await ledger.start()
    await ledger.wait_ready()
    return ledger


async def reserve(ledger: Ledger, request_id: str) -> Reservation:
    return await ledger.reserve(
        request_id=request_id, project_id="p1", max_cost=COST, provider="openai"
    )


async def limited_project(ledger: Ledger) -> str:
    """p1: prepaid with 100 credits and a hard monthly token budget."""
    await ledger.top_up("p1", 100 * CREDIT)
    [status] = await ledger.set_budgets(
        "p1",
        [
            BudgetSpec(
                id="",
                project_id="p1",
                metric=Metric.TOKENS,
                period=Period.MONTH,
                limit=1_000_000,
                mode=BudgetMode.HARD,
            )
        ],
    )
    return status.spec.id


async def test_expired_reservations_are_released_even_if_their_process_lives(
    engine: AsyncEngine,
) -> None:
    clock = FakeClock()
    await create_projects(engine, "p1")
    ledger = await started(engine, clock, "a", reservation_ttl=600)
    try:
        budget_id = await limited_project(ledger)
        held = [await reserve(ledger, f"r{i}") for i in range(3)]
        clock.advance(seconds=599)
        assert await ledger.reconcile() == 0
        clock.advance(seconds=2)
        assert await ledger.reconcile() == 3
        snap = (await assert_consistent(engine, ["p1"]))["p1"]
        assert (snap.reserved, snap.reservations, snap.counters[budget_id]) == (0, 0, (0, 0))

        # The request behind one of them completes after all: it is charged, exactly once,
        # and its (already released) holds are not released a second time.
        settled = await ledger.settle(held[0], Usage(input_tokens=1000, output_tokens=10))
        await ledger.release(held[1], RequestOutcome(status=504, error="timeout"))
        snap = (await assert_consistent(engine, ["p1"]))["p1"]
        assert snap.charges == {"r0": settled.cost.micro_credits}
        assert snap.balance == 100 * CREDIT - settled.cost.micro_credits
        assert snap.counters[budget_id] == (1010, 0)
    finally:
        await ledger.close()


async def test_a_crashed_process_reservations_are_released_after_its_heartbeat_stops(
    engine: AsyncEngine,
) -> None:
    clock = FakeClock()
    await create_projects(engine, "p1")
    crashed = await started(engine, clock, "crashed", owner_timeout=30)
    budget_id = await limited_project(crashed)
    held = [await reserve(crashed, f"r{i}") for i in range(6)]
    # Two requests completed before the crash: settled and durable.
    for reservation in held[:2]:
        await crashed.settle(reservation, Usage(input_tokens=1000, output_tokens=1000))
    # Two more were settling when the process died: their writes never committed.
    in_flight = [
        asyncio.ensure_future(crashed.settle(r, Usage(input_tokens=5, output_tokens=5)))
        for r in held[2:4]
    ]
    await asyncio.sleep(0)
    crashed.abandon()  # kill -9: nothing more is written, nothing is released
    await asyncio.gather(*in_flight, return_exceptions=True)

    survivor = await started(engine, clock, "survivor", owner_timeout=30)
    try:
        clock.advance(seconds=10)
        assert await survivor.reconcile() == 0  # the crashed process might still be alive
        clock.advance(seconds=25)
        assert await survivor.reconcile() == 4  # 35 s without a heartbeat: it is dead
        snap = (await assert_consistent(engine, ["p1"]))["p1"]
        assert snap.reservations == 0 and snap.reserved == 0
        assert snap.charges == {"r0": COST.micro_credits, "r1": COST.micro_credits}
        assert snap.balance == 100 * CREDIT - 2 * COST.micro_credits
        assert snap.counters[budget_id] == (4000, 0)
        async with engine.connect() as c:
            owners = (await c.execute(text("SELECT owner FROM ledger_owners"))).scalars().all()
        assert owners == ["survivor"]
    finally:
        await survivor.close()


async def test_a_restart_reconciles_at_start_up(engine: AsyncEngine, database_url: str) -> None:
    clock = FakeClock()
    await create_projects(engine, "p1")
    crashed = await started(engine, clock, "old", owner_timeout=30)
    await limited_project(crashed)
    for i in range(5):
        await reserve(crashed, f"r{i}")
    crashed.abandon()

    clock.advance(minutes=5)
    fresh_engine = create_engine(database_url, pool_size=2)  # a new process: a new pool
    restarted = make_ledger(fresh_engine, clock=clock, owner="new", owner_timeout=30)
    try:
        await restarted.start()
        await restarted.wait_ready()  # its first round of maintenance has reconciled
        snap = (await assert_consistent(fresh_engine, ["p1"]))["p1"]
        assert (snap.reservations, snap.reserved, snap.balance) == (0, 0, 100 * CREDIT)
        assert (await reserve(restarted, "after")).limited
    finally:
        await restarted.close()
        await fresh_engine.dispose()


async def test_a_live_replica_keeps_its_reservations(engine: AsyncEngine) -> None:
    clock = FakeClock()
    await create_projects(engine, "p1")
    first = await started(engine, clock, "first", owner_timeout=30)
    second = await started(engine, clock, "second", owner_timeout=30)
    try:
        await limited_project(first)
        await second.refresh()
        held = await reserve(first, "r1")
        for _ in range(5):  # both keep heartbeating while time passes
            clock.advance(seconds=20)
            await first.reconcile()
            assert await second.reconcile() == 0
        await first.settle(held, Usage(input_tokens=1, output_tokens=1))
        snap = (await assert_consistent(engine, ["p1"]))["p1"]
        assert list(snap.charges) == ["r1"] and snap.reserved == 0
    finally:
        await first.close()
        await second.close()


async def test_shutdown_commits_what_is_queued_and_releases_its_own_holds(
    engine: AsyncEngine,
) -> None:
    clock = FakeClock()
    await create_projects(engine, "p1")
    ledger = await started(engine, clock, "leaving")
    await limited_project(ledger)
    held = [await reserve(ledger, f"r{i}") for i in range(40)]
    settling = [
        asyncio.ensure_future(ledger.settle(r, Usage(input_tokens=100, output_tokens=100)))
        for r in held[:30]
    ]
    await asyncio.sleep(0)
    await ledger.close()  # 10 reservations were never settled: their requests were cut off
    settlements = await asyncio.gather(*settling)
    assert all(s.charged for s in settlements)
    snap = (await assert_consistent(engine, ["p1"]))["p1"]
    assert len(snap.charges) == 30 and snap.usage_records == 30
    assert (snap.reservations, snap.reserved) == (0, 0)
    async with engine.connect() as c:
        assert (await c.execute(text("SELECT COUNT(*) FROM ledger_owners"))).scalar_one() == 0
