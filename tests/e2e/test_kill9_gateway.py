"""kill -9 (and SIGTERM) of a real gateway process in the middle of a load of streamed chat
requests.

The fake providers run as a process of their own and stream slowly (a delay per token), so
that many answers are in flight when the gateway dies. The project is prepaid, so every
request holds credits in the database while it runs. Then, either a new gateway starts on the
same database (a restart), or the dead one never comes back and a replica that was running
beside it all along takes over; once the dead gateway's heartbeat is older than the owner
timeout, what it left is reconciled. In both cases:

- every request whose client saw the whole stream (OpenAI's final usage chunk and ``[DONE]``,
  Anthropic's ``message_delta`` and ``message_stop``) is charged exactly once, and exactly the
  credits that last usage event announced;
- nothing else is charged but requests that were in flight at the kill (a stream charged
  just before its last bytes were cut off), and no request twice;
- no reservation is left, nothing is held, and the balance is the sum of the entries (the
  top-up minus the charges).

A SIGTERM instead (a rolling deploy) lets the streams under way end whole (those longer than
the grace period are cut off and charged for what they delivered), and the gateway gives back
its own holds as it exits: nothing is left for anyone to reconcile.
"""

from __future__ import annotations

import asyncio
import signal
from decimal import Decimal
from pathlib import Path

import orjson
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from oneflow_ai.domain.money import MICRO_CREDITS_PER_CREDIT
from oneflow_ai.storage.database import create_engine
from tests.support.gateway_load import (
    DIALECTS,
    HANG_GUARD,
    StreamLoad,
    StreamRead,
    fake_process,
    gateway_env,
    new_prepaid_project,
    wait_reconciled,
)
from tests.support.gateway_process import GatewayProcess
from tests.support.ledger import Snapshot, assert_consistent, snapshot

PROJECT = "kill9"
TOP_UP = 100_000  # credits: far more than the load can spend
CLIENTS = 24
#: Streams the clients must have seen complete before the kill (the kill comes mid-load).
COMPLETE_BEFORE_KILL = 60
#: Streams that must be part-way through (content seen, not ended) at the kill.
MID_STREAM_AT_KILL = CLIENTS // 2
FAKE_OPTIONS = ("--chunk-delay-ms", "15", "--reply-words", "24")


def _ledger_timing(owner_timeout: int) -> dict[str, str]:
    """A dead gateway's reservations are reconciled `owner_timeout` seconds after its last
    heartbeat (live replicas heartbeat four times as often)."""
    return {
        "LEDGER_OWNER_TIMEOUT_SECONDS": str(owner_timeout),
        "LEDGER_MAINTENANCE_INTERVAL_SECONDS": str(owner_timeout / 4),
    }


@pytest.mark.parametrize(
    ("late", "write_behind"),
    [(False, False), (True, False), (False, True)],
    ids=["at-once", "after-the-owner-timeout", "write-behind"],
)
async def test_kill_9_mid_stream_then_restart_settles_everything(
    database_url: str, tmp_path: Path, late: bool, write_behind: bool
) -> None:
    """Restarted at once, the new gateway reconciles the dead one's holds in a later round of
    maintenance, once the owner timeout has passed; restarted after it, in its start-up round,
    which every request on a prepaid project waits for. With write-behind, what the dead one
    had spooled but not yet written is charged by the restart, from its spool."""
    owner_timeout = 2
    engine = create_engine(database_url, pool_size=2)
    try:
        with fake_process(tmp_path / "fakes.log", *FAKE_OPTIONS) as fakes:
            env = gateway_env(
                database_url,
                fakes,
                LEDGER_WRITE_BEHIND=str(write_behind).lower(),
                **_ledger_timing(owner_timeout),
            )
            first = await asyncio.to_thread(GatewayProcess, env, tmp_path / "gateway-1.log")
            try:
                key = await asyncio.to_thread(new_prepaid_project, first.url, PROJECT, str(TOP_UP))
                before = await _kill_mid_load(first, key)
            finally:
                first.stop()
            left = await _left_by_the_dead(engine)
            if late:
                await asyncio.sleep(owner_timeout + 0.5)  # the dead heartbeat is stale now

            # The restart, on the same database: it serves, and reconciles what the dead left.
            second = await asyncio.to_thread(GatewayProcess, env, tmp_path / "gateway-2.log")
            try:
                after = await _serve_more(second, key)
                if late:  # already done in the start-up round its requests waited for
                    now = await snapshot(engine, PROJECT)
                    assert now.reservations == now.leases, now  # the live one's leases alone
                await wait_reconciled(engine, PROJECT)
            finally:
                second.stop()
        await _assert_settled(engine, before, left, after)
    finally:
        await engine.dispose()


async def test_kill_9_without_restart_another_replica_reconciles(
    database_url: str, tmp_path: Path
) -> None:
    engine = create_engine(database_url, pool_size=2)
    try:
        with fake_process(tmp_path / "fakes.log", *FAKE_OPTIONS) as fakes:
            # A longer owner timeout: the survivor must not reconcile before the snapshot of
            # what the dead gateway left, even on a busy machine.
            env = gateway_env(database_url, fakes, LOG_LEVEL="INFO", **_ledger_timing(6))
            doomed = await asyncio.to_thread(GatewayProcess, env, tmp_path / "doomed.log")
            survivor: GatewayProcess | None = None
            try:
                key = await asyncio.to_thread(new_prepaid_project, doomed.url, PROJECT, str(TOP_UP))
                # Running through the whole load: its periodic reconciliation must leave the
                # live gateway's reservations alone, and take over the dead one's.
                survivor = await asyncio.to_thread(GatewayProcess, env, tmp_path / "survivor.log")
                before = await _kill_mid_load(doomed, key)
                left = await _left_by_the_dead(engine)
                after = await _serve_more(survivor, key)
                await wait_reconciled(engine, PROJECT)
            finally:
                doomed.stop()
                if survivor is not None:
                    survivor.stop()
            # What the survivor released is exactly what the dead gateway left: it never took
            # a hold from under the live one.
            assert _released_by(survivor) == left.reservations
        await _assert_settled(engine, before, left, after)
    finally:
        await engine.dispose()


def _released_by(gateway: GatewayProcess) -> int:
    """Reservations the gateway's reconciliation released, from its log."""
    events = (orjson.loads(line) for line in gateway.log_path.read_text().splitlines())
    return sum(e["released"] for e in events if e.get("event") == "ledger_reconciled")


async def test_sigterm_mid_stream_ends_the_streams_and_leaves_nothing_held(
    database_url: str, tmp_path: Path
) -> None:
    """A graceful stop (a rolling deploy) in the middle of the same load: the streams under
    way end whole and are charged, and the gateway gives back its own holds as it exits,
    so nothing waits for another process's reconciliation."""
    engine = create_engine(database_url, pool_size=2)
    try:
        with fake_process(tmp_path / "fakes.log", *FAKE_OPTIONS) as fakes:
            env = gateway_env(database_url, fakes, **_ledger_timing(60))
            gateway = await asyncio.to_thread(GatewayProcess, env, tmp_path / "gateway.log")
            try:
                key = await asyncio.to_thread(
                    new_prepaid_project, gateway.url, PROJECT, str(TOP_UP)
                )
                before = await _kill_mid_load(gateway, key, signal.SIGTERM)
            finally:
                gateway.stop()
        left = await snapshot(engine, PROJECT)
        assert left.reservations == 0 and left.reserved == 0, left
        await _assert_settled(engine, before, left)
    finally:
        await engine.dispose()


async def test_sigterm_past_the_grace_period_charges_what_was_delivered(
    database_url: str, tmp_path: Path
) -> None:
    """Streams longer than the gateway's grace period (5 s here) are cut off by the stop: each
    is charged once, for what it delivered, before the gateway gives back what it held."""
    engine = create_engine(database_url, pool_size=2)
    clients = 8
    try:
        # 24 chunks, 0.5 s apart: each answer takes twice the grace period.
        slow = ("--chunk-delay-ms", "500", "--reply-words", "24")
        with fake_process(tmp_path / "fakes.log", *slow) as fakes:
            env = gateway_env(database_url, fakes, **_ledger_timing(60))
            gateway = await asyncio.to_thread(GatewayProcess, env, tmp_path / "gateway.log")
            try:
                key = await asyncio.to_thread(
                    new_prepaid_project, gateway.url, PROJECT, str(TOP_UP)
                )
                load = StreamLoad(gateway.url, key, "long", clients)

                def stop_when_all_stream(load: StreamLoad) -> bool:
                    if len(load.mid_stream()) < clients:
                        return False
                    gateway.process.terminate()
                    return True

                await load.run(until=stop_when_all_stream)
                assert await asyncio.to_thread(gateway.process.wait, HANG_GUARD) == -signal.SIGTERM
            finally:
                gateway.stop()
        assert len(load.reads) == clients and not load.complete()
        snap = (await assert_consistent(engine, [PROJECT]))[PROJECT]
        assert snap.reservations == 0 and snap.reserved == 0, snap
        assert set(snap.charges) == {read.gateway_id for read in load.reads}
        assert all(amount > 0 for amount in snap.charges.values()), snap.charges
        assert snap.balance == TOP_UP * MICRO_CREDITS_PER_CREDIT - sum(snap.charges.values())
    finally:
        await engine.dispose()


async def _kill_mid_load(
    gateway: GatewayProcess, key: str, how: signal.Signals = signal.SIGKILL
) -> StreamLoad:
    """Stream through `gateway`; send it `how` (SIGKILL: no shutdown, no release, no flush)
    once enough streams ended and many are midway; wait for it to exit."""
    load = StreamLoad(gateway.url, key, "before", CLIENTS)
    midway: list[StreamRead] = []

    def kill_when_busy(load: StreamLoad) -> bool:
        if len(load.complete()) < COMPLETE_BEFORE_KILL:
            return False
        midway[:] = load.mid_stream()
        if len(midway) < MID_STREAM_AT_KILL:
            return False
        gateway.process.send_signal(how)
        return True

    await load.run(until=kill_when_busy)
    exit_code = await asyncio.to_thread(gateway.process.wait, HANG_GUARD)
    # After a graceful stop uvicorn re-raises the signal it caught: the exit says -SIGTERM.
    assert exit_code == -how
    assert len(load.complete()) >= COMPLETE_BEFORE_KILL
    if how is signal.SIGTERM:  # a graceful stop lets the streams under way end whole
        assert all(read.complete for read in midway), [r.request_id for r in midway]
    else:
        assert len(load.cut_off()) >= MID_STREAM_AT_KILL
    # Before the kill every answer came whole: nothing refused, nothing broken.
    refused = [
        (r.request_id, r.status, r.body[:200]) for r in load.reads if r.status not in (0, 200)
    ]
    assert not refused, refused
    return load


async def _left_by_the_dead(engine: AsyncEngine) -> Snapshot:
    left = await snapshot(engine, PROJECT)
    assert left.reservations > 0 and left.reserved, left  # the dead gateway held credits
    return left


async def _serve_more(gateway: GatewayProcess, key: str) -> StreamLoad:
    """A round of streams through the gateway that carries on: every one comes whole."""
    load = StreamLoad(gateway.url, key, "after", CLIENTS)
    await load.run(until=lambda load: len(load.complete()) >= CLIENTS)
    assert not load.cut_off(), [(r.request_id, r.status, r.error) for r in load.cut_off()]
    return load


async def _assert_settled(
    engine: AsyncEngine, before: StreamLoad, left: Snapshot, after: StreamLoad | None = None
) -> None:
    """`before` ran into the stop, which left `left` behind; `after` ran on the successor."""
    snap = (await assert_consistent(engine, [PROJECT]))[PROJECT]
    assert snap.reservations == 0 and snap.reserved == 0, snap
    assert snap.duplicate_charges == 0, snap
    # Every answer a client saw complete is charged exactly what its last chunk announced.
    seen_complete = [*before.complete(), *(after.complete() if after is not None else ())]
    assert {read.dialect for read in before.complete()} == set(DIALECTS)
    for read in seen_complete:
        assert read.credits is not None
        charged = read.gateway_id
        assert charged in snap.charges, f"completed but not charged: {read.request_id}"
        assert snap.charges[charged] == read.credits * MICRO_CREDITS_PER_CREDIT
    # Anything else charged was in flight at the stop (settled before its end was cut off, or
    # charged its prompt from its first checkpoint, which a stream writes before its first
    # byte: the kill may come before that byte, and the headers with its id, reach the client).
    charged_unseen = set(snap.charges) - {read.gateway_id for read in seen_complete}
    cut_ids = {read.gateway_id for read in before.cut_off() if read.gateway_id}
    headless = sum(1 for read in before.cut_off() if not read.gateway_id)
    assert len(charged_unseen - cut_ids) <= headless, (charged_unseen, cut_ids, headless)
    assert snap.balance == TOP_UP * MICRO_CREDITS_PER_CREDIT - sum(snap.charges.values())
    credits = sum((read.credits or Decimal(0) for read in before.complete()), Decimal(0))
    print(
        f"\n{len(before.complete())} streams seen complete before the stop ({credits} credits), "
        f"{len(before.cut_off())} cut off ({len(charged_unseen)} of them charged before the "
        f"cut), {left.reservations} reservations left by the stopped gateway"
    )
