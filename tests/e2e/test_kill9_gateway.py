"""kill -9 of a real gateway process in the middle of a load of streamed chat requests.

The fake providers run as a process of their own and stream slowly (a delay per token), so
that many answers are in flight when the gateway dies. The project is prepaid, so every
request holds credits in the database while it runs. A new gateway then starts on the same
database and, once the dead one's heartbeat is older than the owner timeout, reconciles what
it left. Then:

- every request whose client saw the whole stream (final usage chunk and ``[DONE]``) is
  charged exactly once, and exactly the credits that chunk announced;
- nothing else is charged but requests that were in flight at the kill (a stream charged
  just before its last bytes were cut off), and no request twice;
- no reservation is left, nothing is held, and the balance is the sum of the entries (the
  top-up minus the charges).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import aiohttp
from sqlalchemy.ext.asyncio import AsyncEngine

from oneflow_ai.domain.money import MICRO_CREDITS_PER_CREDIT
from oneflow_ai.storage.database import create_engine
from tests.support.gateway_load import (
    HANG_GUARD,
    StreamRead,
    fake_process,
    gateway_env,
    new_prepaid_project,
    stream_chat,
)
from tests.support.gateway_process import GatewayProcess
from tests.support.ledger import assert_consistent, snapshot

PROJECT = "kill9"
TOP_UP = 100_000  # credits: far more than the load can spend
CLIENTS = 24
#: Streams the clients must have seen complete before the kill (the kill comes mid-load).
COMPLETE_BEFORE_KILL = 60
#: Streams that must be part-way through (content seen, not ended) at the kill.
MID_STREAM_AT_KILL = CLIENTS // 2
STAGGER = 0.013  # seconds between the clients' first requests
FAKE_OPTIONS = ("--chunk-delay-ms", "15", "--reply-words", "24")
LEDGER_TIMING = {
    # A dead gateway's reservations are reconciled two seconds after its last heartbeat.
    "LEDGER_OWNER_TIMEOUT_SECONDS": "2",
    "LEDGER_MAINTENANCE_INTERVAL_SECONDS": "0.5",
}


class Load:
    """`CLIENTS` clients streaming one request after another through one gateway."""

    def __init__(self, url: str, key: str, prefix: str) -> None:
        self.url, self.key, self.prefix = url, key, prefix
        self.reads: list[StreamRead] = []
        self.stopped = False

    def complete(self) -> list[StreamRead]:
        return [read for read in self.reads if read.complete]

    def mid_stream(self) -> list[StreamRead]:
        return [read for read in self.reads if read.started and not read.done and not read.error]

    async def run(self, until: Callable[[Load], bool]) -> None:
        """Stream until `until(self)` holds (checked as reads progress), then let every
        client finish the request it has in hand."""
        connector = aiohttp.TCPConnector(limit=CLIENTS)
        timeout = aiohttp.ClientTimeout(total=HANG_GUARD)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

            async def client(index: int) -> None:
                # Staggered starts: streams end at different moments, so the kill finds some
                # between their charge and their last bytes.
                await asyncio.sleep(index * STAGGER)
                while not self.stopped:
                    read = StreamRead(f"{self.prefix}-{len(self.reads)}")
                    self.reads.append(read)
                    await stream_chat(session, self.url, self.key, read)

            clients = asyncio.gather(*(client(i) for i in range(CLIENTS)))
            deadline = time.monotonic() + HANG_GUARD
            while not until(self):
                assert time.monotonic() < deadline, "the load did not get going"
                await asyncio.sleep(0.005)
            self.stopped = True
            await clients


async def test_kill_9_mid_stream_then_restart_settles_everything(
    database_url: str, tmp_path: Path
) -> None:
    engine = create_engine(database_url, pool_size=2)
    try:
        with fake_process(tmp_path / "fakes.log", *FAKE_OPTIONS) as fakes:
            env = gateway_env(database_url, fakes, **LEDGER_TIMING)
            await _run(engine, env, tmp_path)
    finally:
        await engine.dispose()


async def _run(engine: AsyncEngine, env: dict[str, str], tmp_path: Path) -> None:
    first = await asyncio.to_thread(GatewayProcess, env, tmp_path / "gateway-1.log")
    try:
        key = await asyncio.to_thread(new_prepaid_project, first.url, PROJECT, str(TOP_UP))
        load = Load(first.url, key, "before")

        def kill_when_busy(load: Load) -> bool:
            if len(load.complete()) < COMPLETE_BEFORE_KILL:
                return False
            if len(load.mid_stream()) < MID_STREAM_AT_KILL:
                return False
            first.process.kill()  # SIGKILL: no shutdown, no release, no flush
            return True

        await load.run(until=kill_when_busy)
        assert first.process.wait(timeout=HANG_GUARD) == -9
    finally:
        first.stop()

    seen_complete = load.complete()
    cut_off = [read for read in load.reads if not read.complete]
    assert len(seen_complete) >= COMPLETE_BEFORE_KILL
    assert len(cut_off) >= MID_STREAM_AT_KILL
    # Before the kill every answer came whole: nothing refused, nothing broken.
    assert all(read.status == 200 for read in load.reads if read.status), [
        (read.request_id, read.status, read.body[:200]) for read in load.reads if read.status != 200
    ]
    left = await snapshot(engine, PROJECT)
    assert left.reservations > 0 and left.reserved, left  # the dead gateway held credits

    # The restart, on the same database: it serves, and it reconciles what the dead one left.
    second = await asyncio.to_thread(GatewayProcess, env, tmp_path / "gateway-2.log")
    try:
        after = Load(second.url, key, "after")
        await after.run(until=lambda load: len(load.complete()) >= CLIENTS)
        assert all(read.complete for read in after.reads), [
            (r.request_id, r.status, r.error) for r in after.reads if not r.complete
        ]
        deadline = time.monotonic() + HANG_GUARD
        while (await snapshot(engine, PROJECT)).reservations:
            assert time.monotonic() < deadline, (
                "the dead gateway's reservations were never reconciled"
            )
            await asyncio.sleep(0.2)
    finally:
        second.stop()

    snap = (await assert_consistent(engine, [PROJECT]))[PROJECT]
    assert snap.reservations == 0 and snap.reserved == 0, snap
    assert snap.duplicate_charges == 0, snap
    # Every answer a client saw complete is charged exactly what its last chunk announced.
    for read in [*seen_complete, *after.reads]:
        assert read.credits is not None
        assert read.request_id in snap.charges, f"completed but not charged: {read.request_id}"
        assert snap.charges[read.request_id] == read.credits * MICRO_CREDITS_PER_CREDIT
    # Anything else charged was in flight at the kill (settled before its end was cut off).
    charged_unseen = set(snap.charges) - {
        read.request_id for read in [*seen_complete, *after.reads]
    }
    assert charged_unseen <= {read.request_id for read in cut_off}
    assert snap.balance == TOP_UP * MICRO_CREDITS_PER_CREDIT - sum(snap.charges.values())
    seen_credits = sum((read.credits or Decimal(0) for read in seen_complete), Decimal(0))
    print(
        f"\n{len(seen_complete)} streams seen complete before the kill ({seen_credits} credits), "
        f"{len(cut_off)} cut off ({len(charged_unseen)} of them charged before the cut), "
        f"{left.reservations} reservations left by the dead gateway, all reconciled"
    )
