"""Credit leases with real processes: two replicas on one PostgreSQL and Redis, each serving a
prepaid project from a lease of its own.

- A race of 1,000 concurrent requests through both against room for 400: never overspent
  (every answer charged once, the balance never below zero), and after a clean stop every lease
  is given back: what was not spent is on the balance again; the same with write-behind
  (settlements through each replica's spool, written to the database moments later).
- A replica killed (SIGKILL) while it holds a lease: the other one reclaims the slice once the
  dead one's heartbeat is stale; nothing of it is lost or charged.
- Both replicas settling one project's requests at once, batches from leases in one statement
  and others (lease grants among them) in a transaction: they wait for each other on the
  project's rows and never deadlock (PostgreSQL would break the cycle after a second and the
  batch would be written again, a second later).
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import aiohttp
import orjson
import pytest

from oneflow_ai.storage.database import create_engine
from oneflow_fakes import FakeProviders
from tests.conftest import redis_server_url
from tests.support.billing_world import counter
from tests.support.gateway_load import HANG_GUARD, admin_call, gateway_env, new_project, post_chat
from tests.support.gateway_process import GatewayProcess, gateway_process
from tests.support.ledger import Snapshot, assert_consistent, snapshot

MODEL = "gpt-3.5-turbo"
PROMPT = "Say something about money"  # 11 prompt tokens, with the chat framing
EACH = 1_300  # micro-credits: 11 x 50 + 5 x 150, what each request reserves and is charged
ROOM = 400  # requests the balance covers
PROJECT = "leased"
BODY = orjson.dumps(
    {"model": MODEL, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 5}
)
pytestmark = [pytest.mark.postgres, pytest.mark.redis]


@contextmanager
def replicas(
    database_url: str,
    redis_prefix: str,
    tmp_path: Path,
    *,
    write_behind: bool = False,
    room: int = ROOM,
) -> Iterator[tuple[list[GatewayProcess], str]]:
    """Two replicas with leases (at least 4 requests' worth each), and the project's key."""
    with (
        FakeProviders(count_tokens=lambda text: counter.count_text(MODEL, text).tokens) as fakes,
        ExitStack() as stack,
    ):
        env = gateway_env(
            database_url,
            fakes,
            LOG_LEVEL="INFO",
            REDIS_URL=redis_server_url() or "",
            REDIS_KEY_PREFIX=redis_prefix,
            LEDGER_LEASES="true",
            LEDGER_LEASE_MIN_REQUESTS="4",
            LEDGER_OWNER_TIMEOUT_SECONDS="3",
            LEDGER_MAINTENANCE_INTERVAL_SECONDS="1",
            LEDGER_WRITE_BEHIND=str(write_behind).lower(),
        )
        started = [
            stack.enter_context(gateway_process(env, tmp_path / f"replica-{i}.log"))
            for i in range(2)
        ]
        key = new_project(started[0].url, PROJECT)
        credits = f"{room * EACH / 1_000_000:.6f}"
        admin_call(
            started[0].url, "POST", f"/api/v1/projects/{PROJECT}/credits", {"credits": credits}
        )
        yield started, key


async def _send(urls: list[str], key: str, requests: int, body: bytes = BODY) -> Counter[int]:
    connector = aiohttp.TCPConnector(limit=200)
    timeout = aiohttp.ClientTimeout(total=HANG_GUARD)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        answers = await asyncio.gather(
            *(post_chat(session, urls[i % len(urls)], key, body=body) for i in range(requests))
        )
    return Counter(answer.status for answer in answers)


def _leases_granted(gateway: GatewayProcess) -> int:
    events = (orjson.loads(line) for line in gateway.log_path.read_text().splitlines())
    return sum(1 for e in events if e.get("event") == "ledger_lease_granted")


async def _wait_for(database_url: str, done: object) -> Snapshot:
    engine = create_engine(database_url, pool_size=1)
    try:
        deadline = time.monotonic() + HANG_GUARD
        while True:
            snap = (await assert_consistent(engine, [PROJECT]))[PROJECT]
            if done(snap) or time.monotonic() > deadline:  # type: ignore[operator]
                return snap
            await asyncio.sleep(0.5)
    finally:
        await engine.dispose()


@pytest.mark.parametrize("write_behind", [False, True], ids=["direct", "write-behind"])
async def test_two_replicas_on_leases_race_for_a_balance_and_never_overspend(
    postgres_url: str, redis_prefix: str, tmp_path: Path, write_behind: bool
) -> None:
    with replicas(postgres_url, redis_prefix, tmp_path, write_behind=write_behind) as (
        running,
        key,
    ):
        urls = [replica.url for replica in running]
        warm = await _send(urls, key, 20)  # each replica takes a lease
        statuses = warm + await _send(urls, key, 1_000)
        assert all(_leases_granted(replica) > 0 for replica in running)
    assert set(statuses) <= {200, 402}, statuses
    answered = statuses[200]
    engine = create_engine(postgres_url, pool_size=1)
    try:
        snap = (await assert_consistent(engine, [PROJECT]))[PROJECT]
    finally:
        await engine.dispose()
    assert len(snap.charges) == answered and set(snap.charges.values()) == {EACH}
    assert snap.balance == (ROOM - answered) * EACH and snap.balance >= 0
    assert (snap.reserved, snap.reservations) == (0, 0)  # every lease given back at the stop
    assert answered > ROOM * 3 // 4, statuses  # leases elsewhere keep at most a slice each


async def test_a_replica_killed_with_a_lease_has_its_slice_reclaimed(
    postgres_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    with replicas(postgres_url, redis_prefix, tmp_path) as (running, key):
        doomed, survivor = running
        engine = create_engine(postgres_url, pool_size=1)
        try:
            sent = 0
            while sent < 200:  # until it holds a lease (taken in the background)
                statuses = await _send([doomed.url], key, 2)
                assert statuses == Counter({200: 2}), statuses
                sent += 2
                if (await snapshot(engine, PROJECT)).leases:
                    break
            doomed.process.send_signal(signal.SIGKILL)
            assert await asyncio.to_thread(doomed.process.wait, HANG_GUARD) == -signal.SIGKILL
            left = await snapshot(engine, PROJECT)
        finally:
            await engine.dispose()
        assert left.leases == 1 and left.leased > 0, left  # the dead replica's slice
        snap = await _wait_for(postgres_url, lambda snap: snap.reservations == 0)
        assert _leases_granted(doomed) > 0 and _leases_granted(survivor) == 0
    assert (snap.reserved, snap.reservations) == (0, 0), snap
    assert len(snap.charges) == sent and snap.balance == (ROOM - sent) * EACH


@pytest.mark.parametrize("stream", [False, True], ids=["chat", "streams"])
async def test_replicas_settling_one_project_at_once_never_deadlock(
    postgres_url: str, redis_prefix: str, tmp_path: Path, stream: bool
) -> None:
    room = 100_000
    body = orjson.dumps({**orjson.loads(BODY), "stream": True}) if stream else BODY
    with replicas(postgres_url, redis_prefix, tmp_path, room=room) as (running, key):
        urls = [replica.url for replica in running]
        statuses = Counter[int]()
        for _ in range(3):
            statuses += await _send(urls, key, 600, body)
        logs = [replica.log_path.read_text() for replica in running]
    assert statuses == Counter({200: 1_800}), statuses
    retried = [
        line
        for log in logs
        for line in log.splitlines()
        if '"group_commit_retry"' in line or "deadlock" in line
    ]
    assert retried == [], retried[:3]
    engine = create_engine(postgres_url, pool_size=1)
    try:
        snap = (await assert_consistent(engine, [PROJECT]))[PROJECT]
    finally:
        await engine.dispose()
    assert len(snap.charges) == 1_800 and set(snap.charges.values()) == {EACH}
    assert snap.balance == (room - 1_800) * EACH
