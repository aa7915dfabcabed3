"""The group-commit writer: shared transactions, durable on resolve, nothing lost on shutdown."""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import partial

import pytest
from sqlalchemy import Connection, text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from oneflow_ai.domain.usage_record import UsageRecord
from oneflow_ai.storage.database import create_engine
from oneflow_ai.storage.group_commit import (
    GroupCommitWriter,
    WriterClosedError,
    WriterOverloadedError,
    _set_exception,
    is_transient,
)
from oneflow_ai.storage.ledger_batch import apply_batch
from oneflow_ai.storage.ledger_commands import (
    EntryCommand,
    EntryRow,
    LedgerCommand,
    LedgerResult,
    RecordCommand,
    Recorded,
)
from oneflow_ai.storage.writer_thread import WriterThread

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def record(i: int) -> RecordCommand:
    return RecordCommand(
        UsageRecord(request_id=f"req-{i}", occurred_at=NOW, status=200, project_id="proj_admin")
    )


async def count_records(url: str) -> int:
    """Read through an engine of its own: what another process would see."""
    other = create_engine(url, pool_size=1)
    try:
        async with other.connect() as c:
            return int((await c.execute(text("SELECT COUNT(*) FROM usage_records"))).scalar_one())
    finally:
        await other.dispose()


def writer(engine: AsyncEngine, **options: float) -> GroupCommitWriter[LedgerCommand, LedgerResult]:
    w: GroupCommitWriter[LedgerCommand, LedgerResult] = GroupCommitWriter(
        engine,
        apply_batch,
        **options,  # type: ignore[arg-type]
    )
    w.start()
    return w


async def test_concurrent_writes_share_transactions_and_are_durable_when_resolved(
    engine: AsyncEngine, database_url: str
) -> None:
    w = writer(engine, max_delay=0.005)
    try:
        results = await asyncio.gather(*(w.submit(record(i)) for i in range(300)))
        assert all(isinstance(r, Recorded) for r in results)
        assert await count_records(database_url) == 300  # committed, visible to others
        assert w.commands == 300
        assert w.batches <= 3  # 300 writes, a handful of transactions
    finally:
        await w.close()


async def test_batches_are_capped_at_max_batch(engine: AsyncEngine) -> None:
    w = writer(engine, max_batch=50, max_delay=0.005)
    try:
        await asyncio.gather(*(w.submit(record(i)) for i in range(200)))
        assert w.batches >= 4
    finally:
        await w.close()


async def test_close_commits_everything_queued(engine: AsyncEngine, database_url: str) -> None:
    w = writer(engine, max_delay=0.05)
    futures = [w.submit(record(i)) for i in range(250)]
    assert w.pending == 250
    assert await w.close() == 0
    assert all(f.done() and not f.exception() for f in futures)
    assert await count_records(database_url) == 250
    with pytest.raises(WriterClosedError):
        w.submit(record(999))


async def test_flush_waits_for_what_was_submitted(engine: AsyncEngine, database_url: str) -> None:
    w = writer(engine, max_delay=0.05)
    try:
        futures = [w.submit(record(i)) for i in range(40)]
        await w.flush()
        assert all(f.done() for f in futures)
        assert await count_records(database_url) == 40
    finally:
        await w.close()


async def test_abandoning_loses_only_what_was_never_committed(
    engine: AsyncEngine, database_url: str
) -> None:
    w = writer(engine, max_delay=0.2)
    await asyncio.gather(*(w.submit(record(i)) for i in range(10)))  # committed
    queued = [w.submit(record(100 + i)) for i in range(10)]  # still gathering company
    w.abandon()
    await asyncio.sleep(0)
    assert all(isinstance(f.exception(), WriterClosedError) for f in queued)
    assert await count_records(database_url) == 10


async def test_a_bad_command_fails_alone(engine: AsyncEngine, database_url: str) -> None:
    w = writer(engine, max_delay=0.01)
    bad = EntryCommand(
        EntryRow(project_id="no-such-project", kind="topup", amount=1, created_at=NOW)
    )
    try:
        futures = [w.submit(record(i)) for i in range(5)]
        futures.insert(2, w.submit(bad))
        outcomes = await asyncio.gather(*futures, return_exceptions=True)
    finally:
        await w.close()
    assert isinstance(outcomes[2], IntegrityError)  # the project does not exist
    assert all(isinstance(o, Recorded) for i, o in enumerate(outcomes) if i != 2)
    assert await count_records(database_url) == 5


async def test_transient_failures_are_retried_whole(engine: AsyncEngine, database_url: str) -> None:
    failures = 2
    attempts = 0

    def flaky(connection: Connection, commands: Sequence[LedgerCommand]) -> list[LedgerResult]:
        nonlocal attempts
        attempts += 1
        results = apply_batch(connection, commands)  # written, then rolled back below
        if attempts <= failures:
            raise OperationalError("INSERT", {}, Exception("database is locked"))
        return results

    w: GroupCommitWriter[LedgerCommand, LedgerResult] = GroupCommitWriter(
        engine, flaky, max_delay=0.01, retry_initial=0.01
    )
    w.start()
    try:
        await asyncio.gather(*(w.submit(record(i)) for i in range(20)))
    finally:
        await w.close()
    assert attempts == failures + 1
    assert await count_records(database_url) == 20  # once each: the failed tries rolled back


async def test_too_many_waiting_writes_are_refused(engine: AsyncEngine) -> None:
    w = writer(engine, max_pending=3, max_delay=0.05)
    try:
        for i in range(3):
            w.submit(record(i))
        with pytest.raises(WriterOverloadedError):
            w.submit(record(3))
    finally:
        await w.close()


def test_what_counts_as_transient() -> None:
    class PgError(Exception):
        def __init__(self, sqlstate: str) -> None:
            super().__init__(sqlstate)
            self.sqlstate = sqlstate

    assert is_transient(OperationalError("x", {}, PgError("40P01")))  # deadlock detected
    assert is_transient(OperationalError("x", {}, PgError("40001")))  # serialization failure
    assert is_transient(OperationalError("x", {}, PgError("08006")))  # connection failure
    assert not is_transient(IntegrityError("x", {}, PgError("23505")))  # unique violation
    assert is_transient(OperationalError("x", {}, Exception("database is locked")))
    assert not is_transient(OperationalError("x", {}, Exception("no such table: t")))
    assert is_transient(ConnectionRefusedError())
    assert not is_transient(ValueError())


async def test_a_future_failed_after_its_submitter_left_is_not_logged_as_unretrieved() -> None:
    loop = asyncio.get_running_loop()
    unretrieved: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _, context: unretrieved.append(context))
    try:
        future: asyncio.Future[int] = loop.create_future()
        _set_exception(future, WriterClosedError("stopped before committing"))
        with pytest.raises(WriterClosedError):  # a waiter still gets it
            await future
        abandoned: asyncio.Future[int] = loop.create_future()
        _set_exception(abandoned, WriterClosedError("stopped before committing"))
        del abandoned
        gc.collect()
        assert unretrieved == []
    finally:
        loop.set_exception_handler(None)


@pytest.mark.postgres
async def test_a_kept_connection_the_server_dropped_is_replaced_not_taken_for_an_outage(
    postgres_url: str,
) -> None:
    """PostgreSQL: the writer keeps its connection between batches; one the server closed
    while idle costs the next batch a reconnect, not an error or an unreachable database."""
    engine = create_engine(postgres_url, pool_size=2)
    unreachable: list[BaseException] = []
    w: GroupCommitWriter[LedgerCommand, LedgerResult] = GroupCommitWriter(
        engine, apply_batch, on_unreachable=unreachable.append, unreachable=lambda exc: True
    )
    w.start()
    try:
        assert await w.run(record(1)) == Recorded()
        held = w._held
        assert held is not None
        pid = await held.run_sync(lambda c: c.connection.driver_connection.get_server_pid())
        async with engine.connect() as other:
            await other.execute(text(f"SELECT pg_terminate_backend({int(pid)})"))
        assert await w.run(record(2)) == Recorded()
        assert w._held is not None and w._held is not held
        assert unreachable == []
    finally:
        await w.close()
        await engine.dispose()
    assert await count_records(postgres_url) == 2


async def test_the_writer_thread_runs_calls_in_order_off_the_loop_and_ends_at_stop() -> None:
    thread = WriterThread("oneflow-test-writer")
    ran: list[tuple[int, str]] = []

    def call(i: int) -> int:
        ran.append((i, threading.current_thread().name))
        if i == 2:
            raise IntegrityError("INSERT", {}, Exception("bad"))
        return i * 10

    futures = [thread.run(partial(call, i)) for i in range(4)]
    outcomes = await asyncio.gather(*futures, return_exceptions=True)
    assert outcomes[:2] == [0, 10] and outcomes[3] == 30
    assert isinstance(outcomes[2], IntegrityError)  # an error comes back as the call's outcome
    assert ran == [(i, "oneflow-test-writer") for i in range(4)]  # in order, on its thread
    thread.stop()
    await asyncio.to_thread(ran_thread(thread).join, 5)
    assert not ran_thread(thread).is_alive()


async def test_a_call_whose_waiter_left_runs_to_its_end_and_is_dropped_quietly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    thread = WriterThread("oneflow-test-writer")
    release = threading.Event()
    finished = threading.Event()

    def commit() -> str:
        release.wait(5)
        finished.set()
        return "committed"

    waiter = asyncio.ensure_future(thread.run(commit))
    await asyncio.sleep(0)
    waiter.cancel()  # what abandon() does to the writer task awaiting its transaction
    release.set()
    assert await asyncio.to_thread(finished.wait, 5)
    assert (await thread.run(lambda: "next")) == "next"  # the outcome was dropped, no error
    thread.stop()
    assert "Exception in callback" not in caplog.text


async def test_closing_a_sqlite_writer_ends_its_thread(engine: AsyncEngine) -> None:
    w = writer(engine)
    await w.run(record(1))
    thread = w._thread
    await w.close()
    if thread is not None:  # SQLite: the writer had a thread of its own
        await asyncio.to_thread(ran_thread(thread).join, 5)
        assert not ran_thread(thread).is_alive()


def ran_thread(thread: WriterThread) -> threading.Thread:
    """The OS thread behind ``thread``, which has run at least one call."""
    assert thread._thread is not None
    return thread._thread


async def gathering(
    w: GroupCommitWriter[LedgerCommand, LedgerResult],
) -> asyncio.Future[LedgerResult]:
    """Bring ``w`` to wait for company: a command arrives while another one commits."""
    first = w.submit(record(0))
    await asyncio.sleep(0)  # the writer takes it: its transaction is in flight
    second = w.submit(record(1))
    await first
    for _ in range(10):
        if w._full is not None:
            break
        await asyncio.sleep(0)
    assert w._full is not None, "the writer waits for company"
    return second


async def test_a_full_batch_ends_the_wait_for_company_at_once(
    engine: AsyncEngine, database_url: str
) -> None:
    w = writer(engine, max_batch=3, max_delay=30)
    try:
        second = await gathering(w)
        more = [w.submit(record(2))]
        await asyncio.sleep(0.05)
        assert not second.done()  # company that does not fill the batch does not end the wait
        more.append(w.submit(record(3)))  # the batch is full
        await asyncio.wait_for(asyncio.gather(second, *more), 5)
        assert await count_records(database_url) == 4
    finally:
        await w.close()


async def test_closing_ends_the_wait_for_company_and_commits_it(
    engine: AsyncEngine, database_url: str
) -> None:
    w = writer(engine, max_delay=30)
    second = await gathering(w)
    assert await asyncio.wait_for(w.close(), 5) == 0
    assert second.done() and not second.exception()
    assert await count_records(database_url) == 2
