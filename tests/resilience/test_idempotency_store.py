"""The idempotency store's contract, on both backends."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable

import pytest

from oneflow_ai.resilience import MemoryIdempotencyStore, RedisIdempotencyStore, StoredResponse
from oneflow_ai.resilience.idempotency import Claimed, Done, IdempotencyStore, InFlight, Mismatch
from tests.conftest import MEMORY, REDIS
from tests.support.redis_server import redis_for_test

ANSWER = StoredResponse(
    status=200,
    headers=((b"content-type", b"application/json"), (b"x-oneflow-model", b"gpt-4o")),
    body=b'{"id":"chatcmpl-1"}\n{"binary":"\xff\x00"}',
)


StoreFactory = Callable[..., IdempotencyStore]


@pytest.fixture(params=[MEMORY, REDIS])
async def make_store(
    request: pytest.FixtureRequest, redis_prefix: str
) -> AsyncIterator[StoreFactory]:
    if request.param == "memory":
        yield MemoryIdempotencyStore
        return
    async with redis_for_test(redis_prefix) as client:
        yield functools.partial(RedisIdempotencyStore, client, prefix=redis_prefix)


async def test_claim_complete_replay(make_store: StoreFactory) -> None:
    store = make_store()
    claim = await store.begin("k", "fp")
    assert isinstance(claim, Claimed)
    assert isinstance(await store.begin("k", "fp"), InFlight)
    assert isinstance(await store.begin("k", "other"), Mismatch)
    await store.complete("k", claim, ANSWER)
    done = await store.begin("k", "fp")
    assert isinstance(done, Done) and done.response == ANSWER
    assert isinstance(await store.begin("k", "other"), Mismatch)


async def test_waiters_get_the_answer_when_it_completes(make_store: StoreFactory) -> None:
    store = make_store()
    claim = await store.begin("k", "fp")
    assert isinstance(claim, Claimed)
    waiters = [asyncio.create_task(store.wait("k", "fp", 5.0)) for _ in range(10)]
    await asyncio.sleep(0.05)
    assert not any(w.done() for w in waiters)
    await store.complete("k", claim, ANSWER)
    results = await asyncio.gather(*waiters)
    assert all(isinstance(r, Done) and r.response == ANSWER for r in results)


async def test_after_a_release_exactly_one_waiter_runs(make_store: StoreFactory) -> None:
    store = make_store()
    claim = await store.begin("k", "fp")
    assert isinstance(claim, Claimed)
    waiters = [asyncio.create_task(store.wait("k", "fp", 10.0)) for _ in range(5)]
    await asyncio.sleep(0.05)
    await store.release("k", claim)
    for _ in range(500):  # until one of them has claimed the key
        if any(w.done() for w in waiters):
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    finished = [w.result() for w in waiters if w.done()]
    claims = [r for r in finished if isinstance(r, Claimed)]
    assert len(claims) == 1  # one of them runs the request; the others keep waiting
    await store.complete("k", claims[0], ANSWER)
    results = await asyncio.gather(*waiters)
    assert sum(isinstance(r, Claimed) for r in results) == 1
    assert sum(isinstance(r, Done) for r in results) == 4


async def test_a_wait_that_runs_out_reports_in_flight(make_store: StoreFactory) -> None:
    store = make_store()
    await store.begin("k", "fp")
    assert isinstance(await store.wait("k", "fp", 0.05), InFlight)


async def test_a_vanished_runner_lets_a_waiter_take_over(make_store: StoreFactory) -> None:
    store = make_store(lock_seconds=0.3)
    lost = await store.begin("k", "fp")
    assert isinstance(lost, Claimed)
    taken = await store.wait("k", "fp", 2.0)  # the lease runs out: the waiter claims the key
    assert isinstance(taken, Claimed) and taken.token != lost.token
    await store.complete("k", lost, ANSWER)  # the old runner's answer is refused
    assert isinstance(await store.begin("k", "fp"), InFlight)
    await store.complete("k", taken, ANSWER)
    assert isinstance(await store.begin("k", "fp"), Done)


async def test_renewing_keeps_the_lease(make_store: StoreFactory) -> None:
    store = make_store(lock_seconds=0.5)
    claim = await store.begin("k", "fp")
    assert isinstance(claim, Claimed)
    for _ in range(7):  # 0.7 s in all: longer than one lease
        await asyncio.sleep(0.1)
        await store.renew("k", claim)
    assert isinstance(await store.begin("k", "fp"), InFlight)


async def test_stored_answers_expire(make_store: StoreFactory) -> None:
    store = make_store(ttl=0.5)
    claim = await store.begin("k", "fp")
    assert isinstance(claim, Claimed)
    await store.complete("k", claim, ANSWER)
    assert isinstance(await store.begin("k", "fp"), Done)
    await asyncio.sleep(0.6)
    assert isinstance(await store.begin("k", "other"), Claimed)


def test_memory_store_drops_expired_records() -> None:
    from tests.support.clock import ManualClock

    clock = ManualClock()
    store = MemoryIdempotencyStore(ttl=10, lock_seconds=5, clock=clock)

    async def scenario() -> None:
        for n in range(100):
            claim = await store.begin(f"k{n}", "fp")
            assert isinstance(claim, Claimed)
            await store.complete(f"k{n}", claim, ANSWER)
        assert len(store) == 100
        clock.advance(11)
        assert len(store) == 0

    asyncio.run(scenario())
