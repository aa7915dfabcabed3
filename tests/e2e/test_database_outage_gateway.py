"""PostgreSQL goes away in the middle of traffic through two real gateway replicas.

A private PostgreSQL server (never the shared one) is stopped for OUTAGE seconds while a steady
mixed load runs: plain and streamed chat, from a prepaid project (every request needs a hold)
and a postpaid one (no hold), through both replicas. Half-way through the outage one replica is
killed with SIGKILL and started again as the same instance, before the database is back.
Then:

- no charge of a request whose client saw it complete is lost: each is charged exactly what
  its answer announced, once, including those that completed during the outage (settled into
  the replicas' spools and replayed when the database answered; the killed replica's from
  its spool file, at its restart);
- during the outage, requests that need a hold are refused at once (503, ``Retry-After``,
  ``ledger_unavailable``) instead of waiting out a timeout, while postpaid requests are
  served;
- ``/ready`` stays 200 (``degraded``: the replicas stay in the load balancer) and reports the
  spool's backlog while it waits, and none once it is replayed;
- the ledger is consistent afterwards: the balance is the sum of its entries, nothing is
  held, every charged request has one usage record.
"""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from oneflow_ai.domain.money import MICRO_CREDITS_PER_CREDIT
from oneflow_ai.storage import migrate
from oneflow_ai.storage.database import create_engine
from tests.e2e.test_crash_recovery_gateway import _postpaid_project
from tests.support.gateway_load import (
    HANG_GUARD,
    fake_process,
    gateway_env,
    new_prepaid_project,
    wait_reconciled,
)
from tests.support.gateway_process import GatewayProcess
from tests.support.ledger import assert_consistent
from tests.support.mixed_load import MixedLoad, Reply
from tests.support.pg_server import PrivatePostgres

# A private server is started with PostgreSQL's own binaries, installed wherever the shared
# test server (the `postgres` marker) is.
pytestmark = pytest.mark.postgres

PREPAID, POSTPAID = "outage-prepaid", "outage-postpaid"
TOP_UP = 100_000
#: Seconds without the database (more than twice the owner timeout below).
OUTAGE = 12.0
#: A connect timeout far longer than any answer during the outage may take: a refusal that
#: waited for it would show.
CONNECT_TIMEOUT = 10.0


async def _ready(url: str) -> dict[str, object]:
    async with httpx.AsyncClient(timeout=30) as client:
        answer = await client.get(f"{url}/ready")
    body: dict[str, object] = answer.json()
    return body


def _backlog(ready: dict[str, object]) -> int:
    checks = ready["checks"]
    assert isinstance(checks, dict)
    spool = checks["ledger_spool"]
    assert isinstance(spool, dict)
    return int(spool["backlog"])


async def test_a_database_outage_loses_no_charge_and_refuses_holds_fast(tmp_path: Path) -> None:
    pg = await asyncio.to_thread(PrivatePostgres)
    try:
        url = await asyncio.to_thread(pg.create_database, "oneflow")
        engine = create_engine(url, pool_size=2)
        try:
            await migrate.upgrade(engine)
            await _run_through_an_outage(pg, url, engine, tmp_path)
        finally:
            await engine.dispose()
    finally:
        await asyncio.to_thread(pg.remove)


async def _run_through_an_outage(
    pg: PrivatePostgres, url: str, engine: AsyncEngine, tmp_path: Path
) -> MixedLoad:
    with fake_process(tmp_path / "fakes.log", "--chunk-delay-ms", "20") as fakes:
        env = gateway_env(
            url,
            fakes,
            LEDGER_OWNER_TIMEOUT_SECONDS="4",
            LEDGER_MAINTENANCE_INTERVAL_SECONDS="1",
            LEDGER_CHECKPOINT_INTERVAL_MS="200",
            API_KEY_CACHE_TTL_SECONDS="300",  # keys stay known while the database is away
            # Each replica trusts the projects' funding it knows for the whole outage (past
            # LEDGER_STATE_MAX_AGE_SECONDS it would refuse every request, as it should).
            LEDGER_STATE_MAX_AGE_SECONDS="60",
            DATABASE_CONNECT_TIMEOUT=str(CONNECT_TIMEOUT),
            LOG_LEVEL="INFO",
        )
        a = await asyncio.to_thread(GatewayProcess, env, tmp_path / "a.log")
        b = await asyncio.to_thread(GatewayProcess, env, tmp_path / "b-1.log")
        b2: GatewayProcess | None = None
        try:
            keys = {
                PREPAID: await asyncio.to_thread(new_prepaid_project, a.url, PREPAID, str(TOP_UP)),
                POSTPAID: await asyncio.to_thread(_postpaid_project, a.url, POSTPAID),
            }
            # Each replica knows both keys before the outage (an API key a replica has not seen
            # needs the database).
            warm = MixedLoad([a.url, b.url], keys, clients=1)
            warm.start()
            while len([r for r in warm.replies if r.complete]) < 8:
                await asyncio.sleep(0.05)
            await warm.stop()
            load = MixedLoad([a.url, b.url], keys, clients=6)
            load.start()
            await asyncio.sleep(3)

            await asyncio.to_thread(pg.stop)
            down = time.monotonic()
            await asyncio.sleep(OUTAGE / 3)
            ready_during = await _ready(a.url)
            backlog_seen = _backlog(ready_during)
            killed = time.monotonic()
            b.process.kill()  # with settlements in its spool, never written to the database
            await asyncio.to_thread(b.process.wait, HANG_GUARD)
            await asyncio.sleep(OUTAGE / 3)
            # Started again as the same instance while the database is still away: it replays
            # its predecessor's spool as soon as the database answers.
            b2 = await asyncio.to_thread(GatewayProcess, env, tmp_path / "b-2.log")
            await asyncio.sleep(max(0.0, down + OUTAGE - time.monotonic()))
            await asyncio.to_thread(pg.start)
            up = time.monotonic()
            load.urls[1] = b2.url
            await asyncio.sleep(3)
            await load.stop()
            for project in (PREPAID, POSTPAID):
                await wait_reconciled(engine, project)
            after = [await _ready(a.url), await _ready(b2.url)]
        finally:
            for gateway in (a, b, b2):
                if gateway is not None:
                    gateway.stop()
    assert backlog_seen > 0, "nothing was spooled during the outage"
    # Still in the load balancer: serving what it can, and saying why it is degraded.
    assert ready_during["status"] == "degraded" and ready_during["degraded"] == ["database"]
    assert [_backlog(ready) for ready in after] == [0, 0]
    await _assert_outage_outcome(engine, warm.replies + load.replies, load, down, up, killed)
    return load


async def _assert_outage_outcome(
    engine: AsyncEngine,
    replies: list[Reply],
    load: MixedLoad,
    down: float,
    up: float,
    killed: float,
) -> None:
    during = [r for r in load.between(down + 0.5, up) if r.status]
    held = [r for r in during if r.project == PREPAID]
    refused = [r for r in held if r.status == 503]
    served = [r for r in during if r.project == POSTPAID and r.complete]
    print(
        f"\n{len(replies)} requests; during the outage: {len(refused)}/{len(held)} needing a hold "
        f"refused (slowest {max((r.seconds for r in refused), default=0):.3f} s), "
        f"{len(served)} postpaid served"
    )
    assert refused and len(refused) == len(held), [(r.status, r.body[:200]) for r in held]
    for reply in refused:
        assert reply.headers.get("retry-after"), reply.headers
        assert b"ledger_unavailable" in reply.body, reply.body
        assert reply.seconds < CONNECT_TIMEOUT / 2, reply.seconds  # never waited out a timeout
    assert served, "no postpaid request was served during the outage"

    charged: dict[str, int] = {}
    for project in (PREPAID, POSTPAID):
        snap = (await assert_consistent(engine, [project]))[project]
        assert snap.reservations == 0 and not snap.reserved, snap
        assert snap.usage_records >= len(snap.charges)
        charged.update(snap.charges)
    complete = [r for r in replies if r.complete]
    for reply in complete:
        assert reply.gateway_id in charged, f"completed but not charged: {reply.n}"
        assert reply.credits is not None
        assert charged[reply.gateway_id] == reply.credits * MICRO_CREDITS_PER_CREDIT, reply.n
    # Anything else charged was under way at the replica killed (index 1) when it died: a
    # stream cut off (its client saw the gateway's id: charged what it delivered), or an answer
    # whose settlement was durable (spooled) an instant before the kill let its bytes out: its
    # client saw a broken connection and no id, so such charges are bounded by their number.
    unseen = set(charged) - {r.gateway_id for r in complete}
    cut_off = {r.gateway_id for r in replies if not r.complete and r.gateway_id}
    broken = [r for r in replies if r.status == 0 and r.replica == 1 and r.started < killed]
    assert len(unseen - cut_off) <= len(broken), (unseen - cut_off, broken)
    async with engine.connect() as connection:
        records = (
            await connection.execute(
                text(
                    "SELECT request_id, COUNT(*) FROM usage_records "
                    "WHERE project_id IN (:a, :b) GROUP BY request_id HAVING COUNT(*) > 1"
                ),
                {"a": PREPAID, "b": POSTPAID},
            )
        ).all()
    assert not records, records
    total = sum((r.credits or Decimal(0) for r in complete), Decimal(0))
    print(f"{len(complete)} answers complete ({total} credits), all charged exactly once")
