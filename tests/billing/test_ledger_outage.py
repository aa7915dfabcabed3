"""The ledger while its database is unreachable (its health flag tripped): a request that needs
a hold is refused at once with 503 and Retry-After (or, in degraded postpaid mode, served
without one); settlements go to the spool and are charged exactly once when the database
answers, however many times the spool is replayed."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from oneflow_ai.billing import PricingEngine
from oneflow_ai.billing.durable import DurableWrites
from oneflow_ai.billing.ledger import Ledger
from oneflow_ai.domain.usage import Usage
from oneflow_ai.errors import ServiceUnavailableError
from oneflow_ai.storage.health import Health
from oneflow_ai.storage.spool import SettlementSpool
from tests.support.ledger import assert_consistent, create_projects, make_ledger, snapshot

PRICING = PricingEngine()
COST = PRICING.max_cost("gpt-4o", 1000, 1000)
USAGE = Usage(input_tokens=100, output_tokens=50)
CHARGE = PRICING.price("gpt-4o", USAGE).micro_credits


class Database:
    """Whether the (real) database counts as reachable, for the health probe."""

    def __init__(self) -> None:
        self.reachable = True

    async def probe(self) -> None:
        if not self.reachable:
            raise ConnectionRefusedError("the database is away")


async def _ledger(
    engine: AsyncEngine, tmp_path: Path, database: Database, **config: float
) -> Ledger:
    await create_projects(engine, "p")
    health = Health("database", database.probe, interval=0.01)
    ledger = make_ledger(
        engine, health=health, spool=SettlementSpool(tmp_path / "spool.jsonl"), **config
    )
    await ledger.start()
    await ledger.top_up("p", 10**9)
    await ledger.wait_ready()
    return ledger


async def _back(ledger: Ledger, database: Database) -> None:
    database.reachable = True
    assert ledger.health is not None
    while ledger.health.down:
        await asyncio.sleep(0.01)


async def test_holds_are_refused_at_once_and_settlements_spooled_then_charged_once(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    database = Database()
    ledger = await _ledger(engine, tmp_path, database)
    try:
        held = await ledger.reserve(
            request_id="before", project_id="p", max_cost=COST, provider="openai"
        )
        assert held.limited
        database.reachable = False
        assert ledger.health is not None
        ledger.health.trip("the database went away")
        with pytest.raises(ServiceUnavailableError) as refused:
            await ledger.reserve(
                request_id="during", project_id="p", max_cost=COST, provider="openai"
            )
        assert refused.value.retry_after and refused.value.code == "ledger_unavailable"
        settlement = await ledger.settle(held, USAGE)  # the answer completed meanwhile
        assert settlement.spooled and ledger.spool is not None and ledger.spool.pending == 1
        assert (await snapshot(engine, "p")).charges == {}  # not in the database yet

        spooled = ledger.spool.path.read_bytes()

        await _back(ledger, database)  # the probe replays the spool before clearing the flag
        snap = (await assert_consistent(engine, ["p"]))["p"]
        assert snap.charges == {"before": CHARGE}
        assert snap.reservations == 0 and snap.usage_records == 1

        # The same spool again (as if the process had died before deleting it).
        again = tmp_path / "again.jsonl"
        again.write_bytes(spooled)
        assert await DurableWrites(ledger.writer.submit, SettlementSpool(again), None).replay()
        snap = (await assert_consistent(engine, ["p"]))["p"]
        assert snap.charges == {"before": CHARGE} and snap.usage_records == 1
    finally:
        await ledger.close()


async def test_degraded_postpaid_serves_without_a_hold_and_charges_later(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    database = Database()
    ledger = await _ledger(engine, tmp_path, database, degraded_postpaid=True)
    try:
        await ledger.refresh()  # the project's funding is known when the database goes away
        database.reachable = False
        assert ledger.health is not None
        ledger.health.trip("the database went away")
        served = await ledger.reserve(
            request_id="during", project_id="p", max_cost=COST, provider="openai"
        )
        assert not served.limited  # no hold: nothing to write
        assert (await ledger.settle(served, USAGE)).spooled
        await _back(ledger, database)
        snap = (await assert_consistent(engine, ["p"]))["p"]
        assert snap.charges == {"during": CHARGE} and snap.reservations == 0
    finally:
        await ledger.close()
