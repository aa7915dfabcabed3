"""kill -9 of a real gateway in the middle of streamed answers: what the callers received is
charged, from the streams' checkpoints.

The fake providers stream slowly (24 words, 150 ms apart) and the gateway checkpoints every
200 ms. Streams of a prepaid project (holding credits) and of a postpaid one (holding nothing)
run until every one has delivered several chunks; then the gateway is killed. Whoever
reconciles what it left must charge each interrupted stream once, for its prompt and what it
had delivered at its last checkpoint (no more than its caller received), flagged estimated,
with a usage record whose error is ``interrupted``, and release every hold:

- the same instance restarted, at start-up (the owner timeout here is 10 minutes: nothing
  else could have done it);
- ``oneflow ledger release --instance`` run by hand, with no gateway restarted;
- another replica, once the dead one's heartbeat is older than the owner timeout.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from oneflow_ai.billing.pricing import PricingEngine
from oneflow_ai.domain.money import MICRO_CREDITS_PER_CREDIT
from oneflow_ai.domain.usage import Usage
from oneflow_ai.storage.database import create_engine
from tests.support.gateway_load import (
    ADMIN,
    HANG_GUARD,
    StreamLoad,
    fake_process,
    gateway_env,
    new_prepaid_project,
    wait_reconciled,
)
from tests.support.gateway_process import GatewayProcess, instance_base
from tests.support.ledger import assert_consistent, snapshot

PREPAID, POSTPAID = "crash-prepaid", "crash-postpaid"
TOP_UP = 100_000  # credits
CLIENTS = 4  # per project
#: Content events every stream must have received when the gateway is killed (over a second
#: of streaming: several checkpoints).
SEEN_AT_KILL = 8
FAKE_OPTIONS = ("--chunk-delay-ms", "150", "--reply-words", "24")
ROOT = Path(__file__).resolve().parents[2]


def _env(database_url: str, fakes: object, owner_timeout: float) -> dict[str, str]:
    return gateway_env(
        database_url,
        fakes,  # type: ignore[arg-type]
        LEDGER_CHECKPOINT_INTERVAL_MS="200",
        LEDGER_OWNER_TIMEOUT_SECONDS=str(owner_timeout),
        LEDGER_MAINTENANCE_INTERVAL_SECONDS=str(owner_timeout / 4),
    )


def _postpaid_project(url: str, project: str) -> str:
    with httpx.Client(base_url=url, headers=ADMIN, timeout=30) as admin:
        created = admin.post("/api/v1/projects", json={"name": project, "id": project})
        assert created.status_code == 201, created.text
        key = admin.post("/api/v1/keys", json={"name": "load", "project_id": project})
        assert key.status_code == 201, key.text
        secret: str = key.json()["key"]
        return secret


async def _kill_mid_stream(gateway: GatewayProcess) -> list[StreamLoad]:
    """Stream from both projects until every stream has delivered SEEN_AT_KILL chunks; then
    kill -9 the gateway."""
    prepaid = await asyncio.to_thread(new_prepaid_project, gateway.url, PREPAID, str(TOP_UP))
    postpaid = await asyncio.to_thread(_postpaid_project, gateway.url, POSTPAID)
    loads = [
        StreamLoad(gateway.url, prepaid, "pre", CLIENTS),
        StreamLoad(gateway.url, postpaid, "post", CLIENTS),
    ]
    killed: list[bool] = []

    def all_well_under_way(_: StreamLoad) -> bool:
        if killed:
            return True
        reads = [read for load in loads for read in load.mid_stream()]
        if len(reads) < 2 * CLIENTS or any(r.content_events < SEEN_AT_KILL for r in reads):
            return False
        gateway.process.kill()
        killed.append(True)
        return True

    await asyncio.gather(*(load.run(until=all_well_under_way) for load in loads))
    assert await asyncio.to_thread(gateway.process.wait, HANG_GUARD) < 0
    for load in loads:  # one round of streams, all cut off by the kill
        assert len(load.reads) == CLIENTS and not load.complete(), load.reads
    return loads


async def _assert_charged_what_was_delivered(
    engine: AsyncEngine, loads: list[StreamLoad], later: StreamLoad | None = None
) -> None:
    """Each interrupted stream charged once, its checkpoint; `later`'s streams (served after
    the recovery, prepaid) charged what their last event announced."""
    pricing = PricingEngine()
    served = {read.gateway_id: read for read in (later.reads if later is not None else [])}
    assert all(read.complete for read in served.values())
    for project, load in zip((PREPAID, POSTPAID), loads, strict=True):
        snap = (await assert_consistent(engine, [project]))[project]
        # nothing held but the credit leases of a gateway still running
        assert snap.reservations == snap.leases and snap.reserved == snap.leased, snap
        interrupted = {read.gateway_id: read for read in load.reads}
        also = served if project == PREPAID else {}
        assert set(snap.charges) == set(interrupted) | set(also), (project, snap.charges)
        for request_id, read in also.items():
            assert read.credits is not None
            assert snap.charges[request_id] == read.credits * MICRO_CREDITS_PER_CREDIT
        entries, records = await _charges_and_records(engine, project, set(interrupted))
        for request_id, model, amount, input_tokens, output_tokens, estimated in entries:
            read = interrupted[request_id]
            assert estimated, request_id
            assert input_tokens > 0, request_id  # the prompt is charged
            # Several chunks were checkpointed, and no more than the caller received.
            assert 0 < output_tokens <= len(read.text), (request_id, output_tokens, read.text)
            usage = Usage(input_tokens=input_tokens, output_tokens=output_tokens, estimated=True)
            assert -amount == pricing.price(model, usage).micro_credits
        assert sorted(records) == sorted((e[0], "interrupted", -e[2], True) for e in entries)
        if project == PREPAID:
            spent = sum(snap.charges.values())
            assert snap.balance == TOP_UP * MICRO_CREDITS_PER_CREDIT - spent


async def _charges_and_records(
    engine: AsyncEngine, project: str, request_ids: set[str | None]
) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    async with engine.connect() as connection:
        entries = (
            await connection.execute(
                text(
                    "SELECT request_id, model, amount, input_tokens, output_tokens, estimated "
                    "FROM ledger_entries WHERE project_id = :p AND kind = 'charge'"
                ),
                {"p": project},
            )
        ).all()
        records = (
            await connection.execute(
                text(
                    "SELECT request_id, error, micro_credits, estimated FROM usage_records "
                    "WHERE project_id = :p"
                ),
                {"p": project},
            )
        ).all()
    return (
        [tuple(row) for row in entries if row[0] in request_ids],
        [(r[0], r[1], r[2], bool(r[3])) for r in records if r[0] in request_ids],
    )


async def test_a_restarted_instance_charges_what_its_killed_streams_delivered(
    database_url: str, tmp_path: Path
) -> None:
    engine = create_engine(database_url, pool_size=2)
    try:
        with fake_process(tmp_path / "fakes.log", *FAKE_OPTIONS) as fakes:
            env = _env(database_url, fakes, owner_timeout=600)
            first = await asyncio.to_thread(GatewayProcess, env, tmp_path / "gateway-1.log")
            try:
                loads = await _kill_mid_stream(first)
            finally:
                first.stop()
            left = await snapshot(engine, PREPAID)
            # one row per stream, and the credit lease they were served from
            assert left.reservations - left.leases == CLIENTS and left.reserved, left
            second = await asyncio.to_thread(GatewayProcess, env, tmp_path / "gateway-2.log")
            try:
                # Its first request waits for the start-up round, which settled what the dead
                # incarnation left: no owner timeout (10 minutes) to wait out.
                later = StreamLoad(second.url, loads[0].key, "later", 2)
                await later.run(until=lambda load: len(load.complete()) >= 2)
                await _assert_charged_what_was_delivered(engine, loads, later)
            finally:
                second.stop()
    finally:
        await engine.dispose()


@pytest.mark.postgres
async def test_ledger_release_by_hand_charges_what_the_killed_streams_delivered(
    postgres_url: str, tmp_path: Path
) -> None:
    engine = create_engine(postgres_url, pool_size=2)
    try:
        with fake_process(tmp_path / "fakes.log", *FAKE_OPTIONS) as fakes:
            env = _env(postgres_url, fakes, owner_timeout=600)
            gateway = await asyncio.to_thread(GatewayProcess, env, tmp_path / "gateway.log")
            try:
                loads = await _kill_mid_stream(gateway)
            finally:
                gateway.stop()
        left = await snapshot(engine, PREPAID)
        assert left.reservations - left.leases == CLIENTS, left
        base = instance_base(tmp_path / "gateway.log")
        released = await asyncio.to_thread(
            subprocess.run,
            # The instance's base: every slot of it (here the one the killed gateway had).
            [sys.executable, "-m", "oneflow_ai", "ledger", "release", "--instance", base],
            cwd=ROOT,
            env={**os.environ, "DATABASE_URL": postgres_url},
            capture_output=True,
            text=True,
            timeout=HANG_GUARD,
        )
        assert released.returncode == 0, released.stderr
        assert f"{2 * CLIENTS} interrupted" in released.stdout, released.stdout
        await _assert_charged_what_was_delivered(engine, loads)
    finally:
        await engine.dispose()


@pytest.mark.postgres
async def test_another_replica_charges_what_the_killed_streams_delivered(
    postgres_url: str, tmp_path: Path
) -> None:
    engine = create_engine(postgres_url, pool_size=2)
    try:
        with fake_process(tmp_path / "fakes.log", *FAKE_OPTIONS) as fakes:
            env = _env(postgres_url, fakes, owner_timeout=4)
            doomed = await asyncio.to_thread(GatewayProcess, env, tmp_path / "doomed.log")
            survivor = await asyncio.to_thread(GatewayProcess, env, tmp_path / "survivor.log")
            try:
                loads = await _kill_mid_stream(doomed)
                for project in (PREPAID, POSTPAID):
                    await wait_reconciled(engine, project)
            finally:
                doomed.stop()
                survivor.stop()
        await _assert_charged_what_was_delivered(engine, loads)
    finally:
        await engine.dispose()
