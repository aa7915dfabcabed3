"""`Idempotency-Key` through live gateway processes, counted at the fake provider.

- 50 concurrent chat requests with one key: exactly one upstream call, 50 identical answers
  (body and `X-OneFlow-*` headers; 49 of them marked `Idempotent-Replayed`), one charge.
- A streamed request with a key: its duplicates (during and after it) get its bytes exactly,
  one upstream call, one charge.
- With Redis, a stored answer outlives the gateway that produced it (killed with -9 and
  started again): a repeat is replayed, not run or billed again.
- A keyed stream whose gateway is killed (-9) midway: a duplicate waiting on the other replica
  runs it once its lease runs out, the dead gateway's hold is reconciled, and the request is
  charged once, for the answer that was delivered whole.
- A 402 is not stored: after a top-up (through the other replica) the retry with the same key
  runs and is charged once; its repeats are replayed.

With the in-process store on one gateway, and with the Redis store on two replicas sharing
Redis and the database, the requests alternating between them: one upstream call across both.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import aiohttp
import pytest

from oneflow_ai.domain.money import MICRO_CREDITS_PER_CREDIT
from oneflow_ai.storage.database import create_engine
from tests.conftest import redis_server_url
from tests.support.gateway_load import (
    HANG_GUARD,
    Answer,
    FakeProcess,
    StreamRead,
    admin_call,
    fake_process,
    gateway_env,
    new_prepaid_project,
    post_chat,
    stream_chat,
    wait_reconciled,
)
from tests.support.gateway_process import GatewayProcess
from tests.support.ledger import assert_consistent

PROJECT = "idem"
TOP_UP = 1_000  # credits
DUPLICATES = 50
# Slow enough upstream that the duplicates arrive while the first request runs.
FAKE_OPTIONS = ("--latency-ms", "300", "--chunk-delay-ms", "10", "--reply-words", "24")
REPLAYED = "idempotent-replayed"


@dataclass
class World:
    fakes: FakeProcess
    replicas: list[GatewayProcess]
    key: str
    database_url: str
    env: dict[str, str]  # the gateways' environment, to start one more

    @property
    def urls(self) -> list[str]:
        return [replica.url for replica in self.replicas]


@asynccontextmanager
async def world(
    database_url: str, tmp_path: Path, replicas: int, **env: str
) -> AsyncIterator[World]:
    """Fakes, `replicas` gateways on one database (and Redis, when `env` names it), and a
    prepaid project with a key."""
    with fake_process(tmp_path / "fakes.log", *FAKE_OPTIONS) as fakes:
        gateway = gateway_env(database_url, fakes, **env)
        started: list[GatewayProcess] = []
        try:
            for i in range(replicas):
                log = tmp_path / f"gateway-{i}.log"
                started.append(await asyncio.to_thread(GatewayProcess, gateway, log))
            key = await asyncio.to_thread(new_prepaid_project, started[0].url, PROJECT, str(TOP_UP))
            yield World(fakes, started, key, database_url, gateway)
        finally:
            for replica in started:
                replica.stop()


def _redis_env(redis_prefix: str) -> dict[str, str]:
    url = redis_server_url()
    assert url is not None
    return {"REDIS_URL": url, "REDIS_KEY_PREFIX": redis_prefix}


def _session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=DUPLICATES),
        timeout=aiohttp.ClientTimeout(total=HANG_GUARD),
    )


async def _one_charge(world: World) -> tuple[str, int]:
    """The project's only charge (request id, micro-credits) once no reservation is left;
    the ledger balances."""
    engine = create_engine(world.database_url, pool_size=1)
    try:
        await wait_reconciled(engine, PROJECT)
        snap = (await assert_consistent(engine, [PROJECT]))[PROJECT]
        assert len(snap.charges) == 1 and snap.duplicate_charges == 0, snap
        [(request_id, amount)] = snap.charges.items()
        assert snap.balance == TOP_UP * MICRO_CREDITS_PER_CREDIT - amount
        assert snap.reservations == 0 and snap.reserved == 0 and snap.usage_records == 1, snap
        return request_id, amount
    finally:
        await engine.dispose()


async def concurrent_duplicates(world: World) -> None:
    headers = {"Idempotency-Key": f"fifty-{uuid.uuid4().hex}"}
    urls = world.urls
    async with _session() as session:
        answers: list[Answer] = await asyncio.gather(
            *(
                post_chat(session, urls[i % len(urls)], world.key, extra_headers=headers)
                for i in range(DUPLICATES)
            )
        )

    assert world.fakes.call_count() == 1
    first = answers[0]
    assert first.status == 200, first.body
    assert {answer.body for answer in answers} == {first.body}
    assert all(answer.status == 200 for answer in answers)
    oneflow = first.oneflow_headers()
    assert {"x-oneflow-model", "x-oneflow-provider", "x-oneflow-credits"} <= set(oneflow)
    assert all(answer.oneflow_headers() == oneflow for answer in answers)
    replayed = [answer for answer in answers if answer.headers.get(REPLAYED) == "true"]
    assert len(replayed) == DUPLICATES - 1

    [original] = [answer for answer in answers if REPLAYED not in answer.headers]
    request_id, amount = await _one_charge(world)
    assert request_id == original.headers["x-oneflow-request-id"]
    assert amount == Decimal(oneflow["x-oneflow-credits"]) * MICRO_CREDITS_PER_CREDIT


async def streamed_duplicates(world: World) -> None:
    headers = {"Idempotency-Key": f"stream-{uuid.uuid4().hex}"}
    urls = world.urls
    reads = [StreamRead(f"stream-{i}") for i in range(DUPLICATES // 5)]
    async with _session() as session:
        await asyncio.gather(
            *(
                stream_chat(session, urls[i % len(urls)], world.key, read, extra_headers=headers)
                for i, read in enumerate(reads)
            )
        )
        # And once it is over: the stored answer, from every replica.
        for i, url in enumerate(urls):
            later = StreamRead(f"stream-later-{i}")
            reads.append(await stream_chat(session, url, world.key, later, extra_headers=headers))

    assert world.fakes.call_count() == 1
    [original] = [read for read in reads if REPLAYED not in read.headers]
    assert original.complete and original.credits is not None, original
    assert original.body.endswith(b"data: [DONE]\n\n")
    for read in reads:
        assert read.status == 200
        assert read.body == original.body, read.request_id  # byte for byte
    assert sum(read.headers.get(REPLAYED) == "true" for read in reads) == len(reads) - 1

    request_id, amount = await _one_charge(world)
    assert request_id == original.gateway_id
    assert amount == original.credits * MICRO_CREDITS_PER_CREDIT


async def test_fifty_duplicates_one_upstream_call_in_process_store(
    database_url: str, tmp_path: Path
) -> None:
    async with world(database_url, tmp_path, replicas=1) as w:
        await concurrent_duplicates(w)


async def test_streamed_duplicates_replayed_byte_for_byte_in_process_store(
    database_url: str, tmp_path: Path
) -> None:
    async with world(database_url, tmp_path, replicas=1) as w:
        await streamed_duplicates(w)


@pytest.mark.redis
@pytest.mark.postgres
async def test_fifty_duplicates_across_two_replicas_sharing_redis(
    postgres_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    async with world(postgres_url, tmp_path, replicas=2, **_redis_env(redis_prefix)) as w:
        await concurrent_duplicates(w)


@pytest.mark.redis
@pytest.mark.postgres
async def test_streamed_duplicates_across_two_replicas_sharing_redis(
    postgres_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    async with world(postgres_url, tmp_path, replicas=2, **_redis_env(redis_prefix)) as w:
        await streamed_duplicates(w)


@pytest.mark.redis
@pytest.mark.postgres
async def test_a_keyed_stream_whose_gateway_is_killed_runs_again_and_each_run_is_charged_once(
    postgres_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    env = {
        **_redis_env(redis_prefix),
        "IDEMPOTENCY_LOCK_SECONDS": "3",  # a dead runner's claim lapses after this
        "LEDGER_OWNER_TIMEOUT_SECONDS": "2",
        "LEDGER_MAINTENANCE_INTERVAL_SECONDS": "0.5",
    }
    async with world(postgres_url, tmp_path, replicas=2, **env) as w:
        doomed, survivor = w.replicas
        headers = {"Idempotency-Key": f"crash-{uuid.uuid4().hex}"}
        first, retry, later = (StreamRead(f"crash-{n}") for n in ("first", "retry", "later"))
        async with _session() as session:
            running = asyncio.ensure_future(
                stream_chat(session, doomed.url, w.key, first, extra_headers=headers)
            )
            deadline = time.monotonic() + HANG_GUARD
            while not first.started:  # the doomed gateway holds the key and streams
                assert time.monotonic() < deadline and not running.done(), first
                await asyncio.sleep(0.005)
            waiting = asyncio.ensure_future(
                stream_chat(session, survivor.url, w.key, retry, extra_headers=headers)
            )
            doomed.process.kill()
            await asyncio.gather(running, waiting)
            await stream_chat(session, survivor.url, w.key, later, extra_headers=headers)

        assert first.started and not first.complete
        assert retry.complete and REPLAYED not in retry.headers, retry
        assert later.headers.get(REPLAYED) == "true" and later.body == retry.body
        assert w.fakes.call_count() == 2  # the call cut off by the kill, and the one run again
        # The cut-off run is charged what its caller received (from its checkpoint: at least
        # its prompt, flagged estimated), the run again in full; each once.
        engine = create_engine(w.database_url, pool_size=1)
        try:
            await wait_reconciled(engine, PROJECT)
            snap = (await assert_consistent(engine, [PROJECT]))[PROJECT]
        finally:
            await engine.dispose()
        assert snap.duplicate_charges == 0 and snap.reservations == 0, snap
        assert set(snap.charges) == {first.gateway_id, retry.gateway_id}, snap
        assert retry.credits is not None
        assert snap.charges[retry.gateway_id] == retry.credits * MICRO_CREDITS_PER_CREDIT
        assert 0 < snap.charges[first.gateway_id] < snap.charges[retry.gateway_id]


@pytest.mark.redis
@pytest.mark.postgres
async def test_with_redis_a_stored_answer_outlives_a_killed_gateway(
    postgres_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    async with world(postgres_url, tmp_path, replicas=1, **_redis_env(redis_prefix)) as w:
        [gateway] = w.replicas
        headers = {"Idempotency-Key": f"outlives-{uuid.uuid4().hex}"}
        async with _session() as session:
            first = await post_chat(session, gateway.url, w.key, extra_headers=headers)
            gateway.process.kill()
            assert await asyncio.to_thread(gateway.process.wait, HANG_GUARD) == -signal.SIGKILL
            again = await asyncio.to_thread(GatewayProcess, w.env, tmp_path / "again.log")
            w.replicas.append(again)
            repeat = await post_chat(session, again.url, w.key, extra_headers=headers)

        assert first.status == 200 and REPLAYED not in first.headers
        assert repeat.headers.get(REPLAYED) == "true"
        assert (repeat.status, repeat.body) == (first.status, first.body)
        assert repeat.oneflow_headers() == first.oneflow_headers()
        assert w.fakes.call_count() == 1
        request_id, _ = await _one_charge(w)
        assert request_id == first.headers["x-oneflow-request-id"]


@pytest.mark.redis
@pytest.mark.postgres
async def test_a_402_is_not_replayed_after_a_top_up_on_another_replica(
    postgres_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    """A refusal means nothing was done: the key is released, so the client's retry with the
    same key, once the project is topped up (through the other replica), runs and is charged."""
    async with world(postgres_url, tmp_path, replicas=2, **_redis_env(redis_prefix)) as w:
        first, second = w.urls
        poor = await asyncio.to_thread(new_prepaid_project, first, "poor", "0.000001")
        headers = {"Idempotency-Key": f"top-up-{uuid.uuid4().hex}"}
        async with _session() as session:
            refused = await post_chat(session, first, poor, extra_headers=headers)
            path = "/api/v1/projects/poor/credits"
            await asyncio.to_thread(admin_call, second, "POST", path, {"credits": "10"})
            retried = await post_chat(session, first, poor, extra_headers=headers)
            repeated = await post_chat(session, second, poor, extra_headers=headers)

        assert refused.status == 402 and REPLAYED not in refused.headers
        assert retried.status == 200 and REPLAYED not in retried.headers, retried
        assert repeated.headers.get(REPLAYED) == "true" and repeated.body == retried.body
        assert w.fakes.call_count() == 1
        engine = create_engine(postgres_url, pool_size=1)
        try:
            snap = (await assert_consistent(engine, ["poor"]))["poor"]
        finally:
            await engine.dispose()
        assert list(snap.charges) == [retried.headers["x-oneflow-request-id"]]
