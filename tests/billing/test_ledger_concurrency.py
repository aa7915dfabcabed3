"""No interleaving of concurrent requests takes a project over its limit, across replicas.

1,000 requests race through four ledgers (four engines, four connection pools, four writers:
replicas as the database sees them) against a project whose prepaid balance, or hard budget,
covers exactly 100 of them. Exactly 100 must be admitted and charged, 900 refused, and the
balance must end at exactly zero, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import asyncio

import pytest

from oneflow_ai.billing import PricingEngine
from oneflow_ai.billing.budgets import BudgetMode, BudgetSpec, Metric, Period
from oneflow_ai.billing.ledger import Ledger
from oneflow_ai.billing.reservation import Reservation
from oneflow_ai.domain.usage import Usage
from oneflow_ai.domain.usage_record import RequestOutcome
from oneflow_ai.errors import InsufficientCreditsError, RateLimitedError
from oneflow_ai.storage.database import create_engine
from tests.support.ledger import FakeClock, assert_consistent, create_projects, make_ledger

PRICING = PricingEngine()
REQUESTS = 1_000
ADMITTED = 100
REPLICAS = 4
COST = PRICING.max_cost("gpt-4o", 1000, 1000)  # the worst case is also what each one uses
USAGE = Usage(input_tokens=1000, output_tokens=1000)


async def _race(database_url: str, limit_kind: str) -> None:
    clock = FakeClock()
    engines = [create_engine(database_url, pool_size=5) for _ in range(REPLICAS)]
    await create_projects(engines[0], "race")
    ledgers = [
        make_ledger(engine, clock=clock, owner=f"replica-{i}") for i, engine in enumerate(engines)
    ]
    for ledger in ledgers:
        await ledger.start()
        await ledger.wait_ready()
    budget_id = ""
    if limit_kind == "prepaid":
        await ledgers[0].top_up("race", ADMITTED * COST.micro_credits)
    else:
        [status] = await ledgers[0].set_budgets(
            "race",
            [
                BudgetSpec(
                    id="",
                    project_id="race",
                    metric=Metric.CREDITS if limit_kind == "budget" else Metric.REQUESTS,
                    period=Period.MONTH,
                    limit=ADMITTED * COST.micro_credits if limit_kind == "budget" else ADMITTED,
                    mode=BudgetMode.HARD,
                )
            ],
        )
        budget_id = status.spec.id
    for ledger in ledgers:
        await ledger.refresh()  # every replica sees the new limit

    async def one_request(i: int) -> str:
        ledger = ledgers[i % REPLICAS]
        try:
            reservation: Reservation = await ledger.reserve(
                request_id=f"req-{i}", project_id="race", max_cost=COST, provider="openai"
            )
        except InsufficientCreditsError:
            return "402"
        except RateLimitedError:
            return "429"
        await asyncio.sleep(0)  # the upstream call
        await ledger.settle(reservation, USAGE, outcome=RequestOutcome(status=200))
        return "200"

    try:
        outcomes = await asyncio.gather(*(one_request(i) for i in range(REQUESTS)))
        refused = "429" if limit_kind == "requests" else "402"
        assert outcomes.count("200") == ADMITTED
        assert outcomes.count(refused) == REQUESTS - ADMITTED
        hard = {budget_id: ADMITTED * COST.micro_credits} if limit_kind == "budget" else {}
        snap = (await assert_consistent(engines[0], ["race"], hard_limits=hard))["race"]
        assert len(snap.charges) == ADMITTED
        assert set(snap.charges.values()) == {COST.micro_credits}
        assert snap.reserved == 0 and snap.reservations == 0
        assert snap.usage_records == ADMITTED
        if limit_kind == "prepaid":
            assert snap.balance == 0  # exactly zero: not one micro-credit over or under
        else:
            assert snap.balance == -ADMITTED * COST.micro_credits  # postpaid, charged in full
            used, reserved = snap.counters[budget_id]
            assert reserved == 0
            assert used == (ADMITTED * COST.micro_credits if limit_kind == "budget" else ADMITTED)
    finally:
        for ledger in ledgers:
            await ledger.close()
        for engine in engines:
            await engine.dispose()


@pytest.mark.parametrize("limit_kind", ["prepaid", "budget", "requests"])
async def test_a_thousand_concurrent_requests_against_room_for_a_hundred(
    database_url: str, limit_kind: str
) -> None:
    await _race(database_url, limit_kind)


async def test_replicas_are_really_separate_writers(database_url: str) -> None:
    """The race above is only meaningful if the replicas commit independently."""
    clock = FakeClock()
    engines = [create_engine(database_url, pool_size=2) for _ in range(2)]
    ledgers: list[Ledger] = [make_ledger(e, clock=clock) for e in engines]
    for ledger in ledgers:
        await ledger.start()
        await ledger.wait_ready()
    try:
        assert ledgers[0].owner != ledgers[1].owner
        assert ledgers[0].writer is not ledgers[1].writer
        assert engines[0].pool is not engines[1].pool
    finally:
        for ledger in ledgers:
            await ledger.close()
        for engine in engines:
            await engine.dispose()
