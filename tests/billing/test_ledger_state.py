"""What a replica knows of projects' funding and budgets: forgotten on a message, read before
it decides again, reloaded when too old, and never guessed when the database cannot be read.

The loaders here are functions of the test (no database): they count their calls and can be
held open, so the races between a read and a message are played out step by step.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from oneflow_ai.auth.invalidation import InvalidationBus
from oneflow_ai.billing.budgets import BudgetBook, BudgetMode, BudgetSpec, Metric, Period
from oneflow_ai.billing.cost import Cost
from oneflow_ai.billing.ledger import Ledger, LedgerConfig
from oneflow_ai.billing.ledger_state import LedgerState, ProjectFunding, change_message
from oneflow_ai.billing.pricing import PricingEngine
from oneflow_ai.billing.reservation import Reservation
from oneflow_ai.errors import InsufficientCreditsError, RateLimitedError, ServiceUnavailableError
from tests.support.ledger import create_projects

MAX_AGE = 10.0
PRICING = PricingEngine()
BUDGET = BudgetSpec("b1", "p1", Metric.CREDITS, Period.DAY, 100, BudgetMode.HARD)


class Database:
    """What the loaders read: prepaid projects and budgets; calls counted; may fail or wait."""

    def __init__(self) -> None:
        self.prepaid: set[str] = set()
        self.budgets: list[BudgetSpec] = []
        self.full_loads = 0
        self.project_loads = 0
        self.down = False
        self.gate: asyncio.Event | None = None  # loads wait for it when set
        self.began = asyncio.Event()  # a load has read what it returns

    async def _wait(self) -> None:
        self.began.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.down:
            raise ConnectionError("database unreachable")

    async def load_all(self) -> BudgetBook:
        self.full_loads += 1
        prepaid, budgets = set(self.prepaid), list(self.budgets)  # read when the load begins
        await self._wait()
        return BudgetBook.build(budgets, prepaid, loaded_at=datetime.now(UTC))

    async def load_one(self, project_id: str) -> ProjectFunding:
        self.project_loads += 1
        funded = project_id in self.prepaid
        budgets = tuple(b for b in self.budgets if b.project_id == project_id)
        await self._wait()
        return budgets, funded


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def db() -> Database:
    return Database()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def state_of(db: Database, clock: Clock, *, fail_open: bool = False) -> LedgerState:
    return LedgerState(
        db.load_all, db.load_one, max_age=MAX_AGE, fail_open=fail_open, monotonic=clock
    )


async def test_a_fresh_book_decides_without_io(db: Database, clock: Clock) -> None:
    state = state_of(db, clock)
    assert state.usable("p1") is None  # never loaded: nothing is known
    await state.reload()
    clock.now += MAX_AGE - 0.1
    assert state.usable("p1") is state.book
    assert (await state.for_project("p1")) is state.book
    assert (db.full_loads, db.project_loads) == (1, 0)


async def test_a_changed_project_is_read_once_before_its_next_request(
    db: Database, clock: Clock
) -> None:
    state = state_of(db, clock)
    await state.reload()
    db.prepaid.add("p1")
    db.budgets.append(BUDGET)
    state.on_message(change_message("p1"))
    assert state.usable("p1") is None and state.usable("p2") is state.book
    books = await asyncio.gather(*(state.for_project("p1") for _ in range(50)))
    assert db.project_loads == 1  # fifty requests, one read
    assert all("p1" in book.prepaid for book in books)
    assert state.usable("p1") is state.book
    assert state.book.matching("p1", None, None, "openai") == (BUDGET,)
    # Budgets removed and back to postpaid: the project has no limit again.
    db.prepaid.clear()
    db.budgets.clear()
    state.on_message(change_message("p1"))
    book = await state.for_project("p1")
    assert "p1" not in book.prepaid and book.matching("p1", None, None, "openai") == ()


async def test_a_message_during_a_read_is_not_lost(db: Database, clock: Clock) -> None:
    state = state_of(db, clock)
    await state.reload()
    state.on_message(change_message("p1"))
    db.began.clear()
    db.gate = asyncio.Event()
    reading = asyncio.ensure_future(state.for_project("p1"))
    await db.began.wait()  # the read has begun, with what the database held then
    db.prepaid.add("p1")
    state.on_message(change_message("p1"))  # a change committed after the read began
    db.gate.set()
    assert "p1" not in (await reading).prepaid  # what the first request read
    assert state.usable("p1") is None  # ... is not what the next one uses
    assert "p1" in (await state.for_project("p1")).prepaid


async def test_a_message_during_a_reload_keeps_its_project_forgotten(
    db: Database, clock: Clock
) -> None:
    state = state_of(db, clock)
    db.gate = asyncio.Event()
    reloading = asyncio.ensure_future(state.reload())
    await db.began.wait()
    db.prepaid.add("p1")
    state.on_message(change_message("p1"))
    db.gate.set()
    await reloading
    assert state.fresh and state.usable("p2") is state.book
    assert state.usable("p1") is None
    assert "p1" in (await state.for_project("p1")).prepaid


async def test_a_book_older_than_its_bound_is_reloaded_first(db: Database, clock: Clock) -> None:
    state = state_of(db, clock)
    await state.reload()
    db.prepaid.add("p1")  # changed, and the message lost
    clock.now += MAX_AGE
    assert state.usable("p1") is None
    assert "p1" in (await state.for_project("p1")).prepaid
    assert db.full_loads == 2


async def test_when_the_database_cannot_be_read_it_fails_closed(db: Database, clock: Clock) -> None:
    state = state_of(db, clock)
    await state.reload()
    db.down = True
    state.on_message(change_message("p1"))
    with pytest.raises(ServiceUnavailableError):
        await state.for_project("p1")
    clock.now += MAX_AGE
    with pytest.raises(ServiceUnavailableError):
        await state.for_project("p2")
    db.down = False
    assert (await state.for_project("p2")) is state.book and state.fresh


async def test_failing_open_decides_on_the_last_state_known(db: Database, clock: Clock) -> None:
    db.prepaid.add("p1")
    state = state_of(db, clock, fail_open=True)
    await state.reload()
    db.down = True
    clock.now += MAX_AGE
    assert "p1" in (await state.for_project("p1")).prepaid


async def test_everything_is_reloaded_after_a_reconnection(db: Database, clock: Clock) -> None:
    state = state_of(db, clock)
    await state.reload()
    db.prepaid.add("p1")
    state.on_message("*")  # messages may have been lost while the listener was away
    assert state.usable("p1") is None and state.usable("p2") is None
    assert "p1" in (await state.for_project("p2")).prepaid
    assert db.full_loads == 2


async def test_other_messages_are_ignored(db: Database, clock: Clock) -> None:
    state = state_of(db, clock)
    await state.reload()
    for message in ("key:abc", "project:p1", "ledger:"):
        state.on_message(message)
    assert state.usable("p1") is state.book


async def test_a_change_on_one_ledger_limits_the_next_request_on_another(
    engine: AsyncEngine,
) -> None:
    """Two ledgers on one database and one bus (two replicas, in one process here), neither
    reloading by itself: a top-up on one makes the project prepaid on the other at once, and a
    hard budget set on one holds on the other."""
    await create_projects(engine, "p1", "p2")
    bus = InvalidationBus()
    config = LedgerConfig(maintenance_interval=3600, state_max_age=3600)
    first, second = (Ledger(engine, PRICING, config, bus=bus) for _ in range(2))
    cost = PRICING.max_cost("gpt-4o", 1000, 1000)
    try:
        for ledger in (first, second):
            await ledger.start()
            await ledger.wait_ready()
        assert not (await reserve(second, "p1", cost)).limited  # postpaid: no limit
        await first.top_up("p1", cost.micro_credits)
        held = await reserve(second, "p1", cost)
        assert held.limited and held.account_hold == cost.micro_credits
        with pytest.raises(InsufficientCreditsError):
            await reserve(second, "p1", cost)

        budget = BudgetSpec("", "p2", Metric.REQUESTS, Period.DAY, 1, BudgetMode.HARD)
        await second.set_budgets("p2", [budget])
        assert (await reserve(first, "p2", cost)).limited
        with pytest.raises(RateLimitedError):
            await reserve(first, "p2", cost)
    finally:
        for ledger in (first, second):
            await ledger.close()


async def reserve(ledger: Ledger, project_id: str, cost: Cost) -> Reservation:
    return await ledger.reserve(
        request_id=uuid.uuid4().hex, project_id=project_id, max_cost=cost, provider="openai"
    )
