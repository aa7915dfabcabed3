"""Credit leases, on SQLite and PostgreSQL: a replica reserves from a durable slice of a prepaid
balance in memory, never overspends it, returns it, and a dead replica's lease is reclaimed.
On PostgreSQL its settlements, and streams' checkpoints, are one statement alone."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from asyncpg.transaction import Transaction
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from oneflow_ai.billing import PricingEngine
from oneflow_ai.billing.leases import LeaseConfig
from oneflow_ai.billing.ledger import Ledger
from oneflow_ai.billing.reservation import Reservation
from oneflow_ai.domain.usage import Usage
from oneflow_ai.domain.usage_record import RequestOutcome
from oneflow_ai.errors import InsufficientCreditsError
from oneflow_ai.storage.ledger_commands import CheckpointCommand, Checkpointed, StreamProgress
from tests.conftest import POSTGRES
from tests.support.ledger import FakeClock, assert_consistent, create_projects, make_ledger
from tests.support.pg_statements import record_statements

PRICING = PricingEngine()
CREDIT = 1_000_000
WORST = PRICING.max_cost("gpt-4o", 1000, 1000)  # 1.25 credits
LEASES = LeaseConfig(enabled=True, share=8, min_requests=4, horizon=10, lifetime=60)


async def started(engine: AsyncEngine, clock: FakeClock, owner: str) -> Ledger:
    ledger = make_ledger(engine, clock=clock, owner=owner, leases=LEASES)  # type: ignore[arg-type]
    await ledger.start()
    await ledger.wait_ready()
    return ledger


@pytest.fixture
async def ledger(engine: AsyncEngine) -> AsyncIterator[Ledger]:
    await create_projects(engine, "p1")
    running = await started(engine, FakeClock(), "replica-a")
    try:
        yield running
    finally:
        await running.close()


async def reserve(ledger: Ledger, request_id: str) -> Reservation:
    return await ledger.reserve(
        request_id=request_id, project_id="p1", max_cost=WORST, provider="openai"
    )


async def settle(ledger: Ledger, reservation: Reservation, output_tokens: int = 100) -> int:
    settled = await ledger.settle(
        reservation, Usage(input_tokens=1000, output_tokens=output_tokens)
    )
    return settled.cost.micro_credits


async def test_a_lease_serves_requests_without_a_write_before_the_call(
    engine: AsyncEngine, ledger: Ledger
) -> None:
    await ledger.top_up("p1", 1000 * CREDIT)
    first = await reserve(ledger, "r1")  # no lease yet: one reservation row, and it asks
    assert first.lease is None and first.account_hold == WORST.micro_credits
    await ledger.leases.settled()
    assert ledger.leases.granted == 1
    lease_size = ledger.leases.held("p1")
    assert 4 * WORST.micro_credits <= lease_size <= 125 * CREDIT  # 1/8 of what is free

    second = await reserve(ledger, "r2")
    assert second.lease is not None and second.account_hold == 0
    snap = (await assert_consistent(engine, ["p1"]))["p1"]
    assert snap.reservations == 2  # r1's row and the lease's: nothing was written for r2
    assert snap.reserved == WORST.micro_credits + lease_size

    charged = await settle(ledger, first) + await settle(ledger, second)
    snap = (await assert_consistent(engine, ["p1"]))["p1"]
    assert snap.balance == 1000 * CREDIT - charged
    assert snap.reserved == lease_size - (charged - 350_000)  # r2's charge came out of it
    assert ledger.leases.held("p1") == snap.reserved

    await ledger.close()  # the lease is returned
    snap = (await assert_consistent(engine, ["p1"]))["p1"]
    assert (snap.reserved, snap.reservations) == (0, 0)
    assert snap.balance == 1000 * CREDIT - charged


async def test_near_the_end_of_a_balance_no_lease_is_granted(
    engine: AsyncEngine, ledger: Ledger
) -> None:
    await ledger.top_up("p1", 30 * WORST.micro_credits)  # 1/8 of it is under 4 worst cases
    held = [await reserve(ledger, f"r{i}") for i in range(3)]
    await ledger.leases.settled()
    assert ledger.leases.granted == 0 and all(r.lease is None for r in held)
    for reservation in held:
        await settle(ledger, reservation)
    await assert_consistent(engine, ["p1"])


async def test_a_funding_change_retires_the_lease_and_returns_it(
    engine: AsyncEngine, ledger: Ledger
) -> None:
    await ledger.top_up("p1", 1000 * CREDIT)
    await reserve(ledger, "r0")
    await ledger.leases.settled()
    on_lease = await reserve(ledger, "r1")
    assert on_lease.lease is not None
    await ledger.adjust("p1", -900 * CREDIT)  # retired; returned once r1 is settled
    assert ledger.leases.held("p1") == 0
    await ledger.release(on_lease, RequestOutcome(status=502, error="provider_error"))
    await ledger.leases.settled()
    snap = (await assert_consistent(engine, ["p1"]))["p1"]
    assert snap.reserved == WORST.micro_credits  # r0's own hold only
    assert ledger.leases.returned == 1


async def test_a_lease_is_sized_for_the_requests_in_flight_at_once(engine: AsyncEngine) -> None:
    """Ten requests in flight at once, each holding a worst case (16,000 output tokens) far
    above its charge, take at most half of the lease the first rounds taught it, whatever
    ``max_micro_credits`` caps for charges: the next ten are all served from it, and none of
    them asks for another."""
    await create_projects(engine, "p1")
    worst = PRICING.max_cost("gpt-4o", 1000, 16_000)
    config = dataclasses.replace(LEASES, max_micro_credits=worst.micro_credits)
    ledger = make_ledger(engine, clock=FakeClock(), owner="replica-a", leases=config)  # type: ignore[arg-type]
    await ledger.start()
    await ledger.wait_ready()
    await ledger.top_up("p1", 100_000 * CREDIT)  # 1/8 of it is no limit here

    async def in_flight(name: str) -> list[Reservation]:
        return [
            await ledger.reserve(
                request_id=f"{name}-{i}", project_id="p1", max_cost=worst, provider="openai"
            )
            for i in range(10)
        ]

    for round_ in range(3):
        held = await in_flight(f"r{round_}")
        await ledger.leases.settled()
        for reservation in held:
            await settle(ledger, reservation)
        await ledger.leases.settled()
    granted = ledger.leases.granted
    held = await in_flight("last")
    assert all(r.lease is not None for r in held)
    await ledger.leases.settled()
    assert ledger.leases.granted == granted  # no refill for what is only in flight
    for reservation in held:
        await settle(ledger, reservation)
    await ledger.close()
    snap = (await assert_consistent(engine, ["p1"]))["p1"]
    assert (snap.reserved, snap.reservations) == (0, 0)


async def test_two_replicas_racing_on_leases_never_overspend(engine: AsyncEngine) -> None:
    await create_projects(engine, "p1")
    clock = FakeClock()
    replicas = [
        await started(engine, clock, "replica-a"),
        await started(engine, clock, "replica-b"),
    ]
    try:
        await replicas[0].top_up("p1", 300 * WORST.micro_credits)
        await replicas[1].refresh()  # no bus between them here: it reads the change
        rng = random.Random(7)
        answered = refused = 0

        async def one(index: int) -> None:
            nonlocal answered, refused
            ledger = replicas[index % 2]
            try:
                reservation = await reserve(ledger, f"r{index}")
            except InsufficientCreditsError:
                refused += 1
                return
            await asyncio.sleep(rng.random() / 100)
            await settle(ledger, reservation, output_tokens=1000)  # the worst case: 1.25
            answered += 1

        for wave in range(8):
            await asyncio.gather(*(one(wave * 100 + i) for i in range(100)))
        assert answered + refused == 800
        assert sum(r.leases.granted for r in replicas) >= 2
        snap = (await assert_consistent(engine, ["p1"]))["p1"]
        assert answered * WORST.micro_credits == 300 * WORST.micro_credits - (snap.balance or 0)
        assert answered <= 300 and (snap.balance or 0) >= 0
        for replica in replicas:
            await replica.close()
        snap = (await assert_consistent(engine, ["p1"]))["p1"]
        assert (snap.reserved, snap.reservations) == (0, 0)
        left = (snap.balance or 0) // WORST.micro_credits
        assert answered + left == 300  # what was not spent is all there again
    finally:
        for replica in replicas:
            await replica.close()


async def test_a_dead_replicas_lease_is_reclaimed(engine: AsyncEngine) -> None:
    await create_projects(engine, "p1")
    clock = FakeClock()
    crashed = await started(engine, clock, "crashed")
    await crashed.top_up("p1", 1000 * CREDIT)
    await reserve(crashed, "r0")
    await crashed.leases.settled()
    in_flight = await reserve(crashed, "r1")
    assert in_flight.lease is not None
    crashed.abandon()  # kill -9: the lease and r0's hold stay in the database
    survivor = await started(engine, clock, "survivor")
    try:
        snap = (await assert_consistent(engine, ["p1"]))["p1"]
        assert snap.reserved and snap.reserved > WORST.micro_credits
        clock.advance(seconds=35)
        assert await survivor.reconcile() == 2  # r0 and the lease
        snap = (await assert_consistent(engine, ["p1"]))["p1"]
        assert (snap.balance, snap.reserved, snap.reservations) == (1000 * CREDIT, 0, 0)
    finally:
        await survivor.close()
        await crashed.writer.close(1)


async def test_an_idle_lease_is_returned_by_the_next_maintenance_rounds(
    engine: AsyncEngine, ledger: Ledger
) -> None:
    await ledger.top_up("p1", 1000 * CREDIT)
    await settle(ledger, await reserve(ledger, "r0"))
    await ledger.leases.settled()
    await settle(ledger, await reserve(ledger, "r1"))  # served from the lease
    ledger.leases.maintain()  # it served since the last round: kept
    assert ledger.leases.held("p1") > 0
    ledger.leases.maintain()  # nothing since: retired and returned
    await ledger.leases.settled()
    snap = (await assert_consistent(engine, ["p1"]))["p1"]
    assert (snap.reserved, snap.reservations, ledger.leases.returned) == (0, 0, 1)


async def served_from_the_lease(ledger: Ledger) -> Reservation:
    """A reservation of ``p1`` served from a lease (the first request asks for it)."""
    await ledger.top_up("p1", 1000 * CREDIT)
    await settle(ledger, await reserve(ledger, "r1"))  # no lease yet
    await ledger.leases.settled()
    served = await reserve(ledger, "r2")
    assert served.lease is not None
    return served


def record_transactions(monkeypatch: pytest.MonkeyPatch, into: list[str]) -> None:
    """Each statement executed from now on (its first word), and each ``BEGIN``."""
    record_statements(monkeypatch, into)
    start = Transaction.start

    async def recording(self: Transaction) -> None:
        into.append("BEGIN")
        await start(self)

    monkeypatch.setattr(Transaction, "start", recording)


@pytest.mark.parametrize("database_url", [POSTGRES], indirect=True)
async def test_on_postgresql_a_settlement_from_a_lease_is_one_statement_alone(
    engine: AsyncEngine, ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The charge, the lease's draw, the balance and the usage record and rollups: one
    statement in a transaction of its own (no BEGIN, no COMMIT)."""
    served = await served_from_the_lease(ledger)
    before = (await assert_consistent(engine, ["p1"]))["p1"]
    executed: list[str] = []
    record_transactions(monkeypatch, executed)
    charged = await settle(ledger, served)
    monkeypatch.undo()
    assert executed == ["WITH"]
    snap = (await assert_consistent(engine, ["p1"]))["p1"]
    assert charged > 0 and snap.charges["r2"] == charged
    assert snap.balance == (before.balance or 0) - charged
    assert snap.reserved == ledger.leases.held("p1") == (before.reserved or 0) - charged
    assert snap.usage_records == 2


@pytest.mark.parametrize("database_url", [POSTGRES], indirect=True)
async def test_a_charge_already_appended_makes_the_one_statement_fail_whole(
    engine: AsyncEngine, ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An earlier attempt's charge (a spool replayed after its commit, say): the one statement
    violates the charge's uniqueness and writes nothing, and the batch's ordinary path finds
    the charge there and charges nothing again, draws nothing and records nothing."""
    served = await served_from_the_lease(ledger)
    async with engine.begin() as c:  # r2's charge, as an earlier attempt appended it
        await c.execute(
            text(
                "INSERT INTO ledger_entries (project_id, kind, amount, request_id, estimated,"
                " input_tokens, output_tokens, images, characters, price_table_version, created_at)"
                " VALUES ('p1', 'charge', -5, 'r2', false, 0, 0, 0, 0, 'v1', now())"
            )
        )
        await c.execute(text("UPDATE ledger_accounts SET balance = balance - 5"))
    before = (await assert_consistent(engine, ["p1"]))["p1"]
    executed: list[str] = []
    record_transactions(monkeypatch, executed)
    settled = await ledger.settle(served, Usage(input_tokens=1000, output_tokens=100))
    monkeypatch.undo()
    assert executed[0] == "WITH" and executed[1] == "BEGIN"  # then the ordinary path
    assert not settled.charged
    snap = (await assert_consistent(engine, ["p1"]))["p1"]
    assert snap.charges["r2"] == 5 and snap.usage_records == 1
    assert (snap.balance, snap.reserved) == (before.balance, before.reserved)  # nothing drawn


@pytest.mark.parametrize("database_url", [POSTGRES], indirect=True)
@pytest.mark.parametrize("lease_left", [0, 7, None], ids=["emptied", "short", "reclaimed"])
async def test_a_lease_holding_less_makes_the_one_statement_fail_whole(
    engine: AsyncEngine,
    ledger: Ledger,
    monkeypatch: pytest.MonkeyPatch,
    lease_left: int | None,
) -> None:
    """The lease's row holds less than the charge, or is gone (reclaimed by another replica):
    the one statement's draw changes no row and it writes nothing; the ordinary path takes
    what the lease still holds and charges the rest to the balance alone."""
    served = await served_from_the_lease(ledger)
    assert served.lease is not None
    lease_id = served.lease.id
    async with engine.begin() as c:  # what a reaper or another writer left of the lease
        held = (
            await c.execute(
                text("SELECT amount FROM ledger_reservations WHERE id = :i"), {"i": lease_id}
            )
        ).scalar_one()
        if lease_left is None:
            await c.execute(text("DELETE FROM ledger_reservations WHERE id = :i"), {"i": lease_id})
        else:
            await c.execute(
                text("UPDATE ledger_reservations SET amount = :a WHERE id = :i"),
                {"a": lease_left, "i": lease_id},
            )
        gone = held - (lease_left or 0)
        await c.execute(text("UPDATE ledger_accounts SET reserved = reserved - :g"), {"g": gone})
    before = (await assert_consistent(engine, ["p1"]))["p1"]
    executed: list[str] = []
    record_transactions(monkeypatch, executed)
    charged = await settle(ledger, served)
    monkeypatch.undo()
    assert executed[:2] == ["WITH", "BEGIN"]
    snap = (await assert_consistent(engine, ["p1"]))["p1"]
    assert charged > (lease_left or 0) and snap.charges["r2"] == charged
    assert snap.balance == (before.balance or 0) - charged
    assert snap.reserved == (before.reserved or 0) - (lease_left or 0)  # the lease emptied
    assert snap.usage_records == 2


def _progress(stream: str, output_tokens: int) -> StreamProgress:
    now = datetime.now(UTC)
    return StreamProgress(
        reservation_id=f"res-{stream}",
        request_id=stream,
        project_id="p1",
        user_id=None,
        key_id=None,
        model="gpt-4o",
        provider="openai",
        input_tokens=12,
        output_tokens=output_tokens,
        micro_credits=30 + output_tokens,
        price_table_version="v1",
        owner="replica-a",
        created_at=now,
        expires_at=now + timedelta(minutes=5),
        at=now,
    )


@pytest.mark.parametrize("database_url", [POSTGRES], indirect=True)
async def test_on_postgresql_stream_checkpoints_are_one_statement_alone(
    engine: AsyncEngine, ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch of streams' checkpoints (a stream's first byte waits for its first): one
    statement and no BEGIN or COMMIT, for one stream or several; a batch holding one stream
    twice takes a transaction, which writes them in order."""
    executed: list[str] = []
    record_transactions(monkeypatch, executed)
    assert await ledger.writer.run(CheckpointCommand((_progress("s1", 0),))) == Checkpointed(1)
    both = CheckpointCommand((_progress("s1", 5), _progress("s2", 0)))
    assert await ledger.writer.run(both) == Checkpointed(2)
    assert executed == ["INSERT", "INSERT"]
    twice = CheckpointCommand((_progress("s1", 7), _progress("s1", 9)))
    assert await ledger.writer.run(twice) == Checkpointed(2)
    assert executed[2] == "BEGIN"
    monkeypatch.undo()
    async with engine.connect() as c:
        rows = await c.execute(
            text(
                "SELECT id, amount, output_tokens, progress_micro_credits FROM ledger_reservations"
                " WHERE id LIKE 'res-s%' ORDER BY id"
            )
        )
        assert [tuple(row) for row in rows] == [("res-s1", 0, 9, 39), ("res-s2", 0, 0, 30)]


@pytest.mark.parametrize("database_url", [POSTGRES], indirect=True)
@pytest.mark.parametrize("row_left", [True, False], ids=["row-there", "row-gone"])
async def test_on_postgresql_a_leased_streams_settlement_is_one_statement_alone(
    engine: AsyncEngine, ledger: Ledger, monkeypatch: pytest.MonkeyPatch, row_left: bool
) -> None:
    """A stream served from the lease has a row of its own, written by its checkpoints and
    holding nothing: the one statement deletes it too. A row already gone (released by
    another replica) makes it fail whole, and the ordinary path settles the stream alone."""
    served = await served_from_the_lease(ledger)
    progress = dataclasses.replace(
        _progress("s", 3), reservation_id=served.id, request_id=served.request_id
    )
    assert await ledger.writer.run(CheckpointCommand((progress,))) == Checkpointed(1)
    served.checkpointed = True
    if not row_left:
        async with engine.begin() as c:
            await c.execute(text("DELETE FROM ledger_reservations WHERE id = :i"), {"i": served.id})
    before = (await assert_consistent(engine, ["p1"]))["p1"]
    executed: list[str] = []
    record_transactions(monkeypatch, executed)
    charged = await settle(ledger, served)
    monkeypatch.undo()
    assert executed[:2] == (["WITH"] if row_left else ["WITH", "BEGIN"])
    snap = (await assert_consistent(engine, ["p1"]))["p1"]
    assert charged > 0 and snap.charges["r2"] == charged
    assert snap.balance == (before.balance or 0) - charged
    assert snap.reserved == (before.reserved or 0) - charged == ledger.leases.held("p1")
    assert snap.reservations == 1  # the lease's row alone


@pytest.mark.parametrize("database_url", [POSTGRES], indirect=True)
async def test_on_postgresql_settlements_from_several_leases_are_one_statement_alone(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch of settlements of two projects, each served from its own lease: one statement
    draws from both leases and moves both accounts."""
    await create_projects(engine, "p1", "p2")
    ledger = await started(engine, FakeClock(), "replica-a")
    try:
        served = []
        for project in ("p1", "p2"):
            await ledger.top_up(project, 1000 * CREDIT)
            first = await ledger.reserve(
                request_id=f"{project}-r1", project_id=project, max_cost=WORST, provider="openai"
            )
            await settle(ledger, first)
            await ledger.leases.settled()
            reservation = await ledger.reserve(
                request_id=f"{project}-r2", project_id=project, max_cost=WORST, provider="openai"
            )
            assert reservation.lease is not None
            served.append(reservation)
        before = await assert_consistent(engine, ["p1", "p2"])
        batches = ledger.writer.batches
        executed: list[str] = []
        record_transactions(monkeypatch, executed)
        charged = await asyncio.gather(*(settle(ledger, r) for r in served))
        monkeypatch.undo()
        assert ledger.writer.batches == batches + 1 and executed == ["WITH"]
        after = await assert_consistent(engine, ["p1", "p2"])
        for project, amount in zip(("p1", "p2"), charged, strict=True):
            assert after[project].charges[f"{project}-r2"] == amount > 0
            assert after[project].balance == (before[project].balance or 0) - amount
            assert after[project].reserved == (before[project].reserved or 0) - amount
            assert after[project].reserved == ledger.leases.held(project)
    finally:
        await ledger.close()
