"""The sliding-window rule, the same in both stores: exact, atomic across buckets, cost-aware."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from oneflow_ai.limits import Bucket, MemoryWindowStore, RedisWindowStore, WindowStore
from oneflow_ai.storage.redis import create_redis
from tests.conftest import redis_server_url
from tests.limits.conftest import count_script_calls
from tests.support.clock import FakeClock

MINUTE = 60_000


async def test_a_burst_gets_exactly_the_limit(store: WindowStore, redis_prefix: str) -> None:
    bucket = Bucket(f"{redis_prefix}b", 60, MINUTE, 1)
    results = [(await store.hit([bucket]))[0] for _ in range(100)]
    admitted = [r for r in results if r.allowed]
    assert len(admitted) == 60
    assert [r.used for r in admitted] == list(range(1, 61))
    refused = [r for r in results if not r.allowed]
    assert all(0 < r.retry_after_ms <= MINUTE for r in refused)
    assert all(r.used == 60 for r in refused)  # refusals charge nothing
    assert all(0 < r.reset_ms <= MINUTE for r in results)


async def test_every_bucket_admits_or_none_is_charged(
    store: WindowStore, redis_prefix: str
) -> None:
    roomy = Bucket(f"{redis_prefix}roomy", 100, MINUTE, 1)
    tight = Bucket(f"{redis_prefix}tight", 2, MINUTE, 1)
    for _ in range(5):
        await store.hit([roomy, tight])
    alone = (await store.hit([roomy]))[0]
    assert alone.used == 3  # two admitted together, plus this one; the three refusals cost nothing


async def test_costs_and_debts(store: WindowStore, redis_prefix: str) -> None:
    def tokens(cost: int) -> Bucket:
        return Bucket(f"{redis_prefix}tpm", 100, MINUTE, cost, counts_requests=False)

    assert (await store.hit([tokens(60)]))[0].allowed
    refused = (await store.hit([tokens(60)]))[0]
    assert not refused.allowed and refused.used == 60
    assert (await store.hit([tokens(40)]))[0].used == 100
    # Usage known after the fact is charged even beyond the limit ...
    debt = (await store.hit([tokens(50)], check=False))[0]
    assert debt.allowed and debt.used == 150
    # ... and a zero-cost check then refuses until the window has recovered.
    assert not (await store.hit([tokens(0)]))[0].allowed
    # A request larger than the whole limit never fits: retry when the window turns over.
    huge = (await store.hit([Bucket(f"{redis_prefix}x", 10, MINUTE, 11)]))[0]
    assert not huge.allowed and huge.retry_after_ms == MINUTE


def test_units_leave_the_window_a_whole_slice_at_a_time() -> None:
    clock = FakeClock()
    clock.mono = 0.0
    store = MemoryWindowStore(clock.monotonic)
    bucket = Bucket("b", 3, MINUTE, 1)
    clock.advance(0.5)  # slice 0 = [0 s, 1 s)
    for _ in range(3):
        assert store.hit_now([bucket])[0].allowed
    clock.advance(9.5)  # t = 10 s
    refused = store.hit_now([bucket])[0]
    assert not refused.allowed
    assert refused.retry_after_ms == 50_000  # slice 0 leaves at t = 60 s
    clock.advance(49.999)
    assert not store.hit_now([bucket])[0].allowed  # never more than 3 in any 60 s
    clock.advance(0.001)
    ok = store.hit_now([bucket])[0]
    assert ok.allowed and ok.used == 1


def test_memory_forgets_idle_buckets() -> None:
    clock = FakeClock()
    store = MemoryWindowStore(clock.monotonic)
    for i in range(9_999):
        store.hit_now([Bucket(f"k{i}", 5, MINUTE, 1)])
    assert len(store) == 9_999
    clock.advance(61)
    store.hit_now([Bucket("fresh", 5, MINUTE, 1)])  # the 10,000th hit sweeps
    assert len(store) == 1


@pytest.mark.redis
async def test_redis_windows_expire(redis_client: Redis, redis_prefix: str) -> None:
    store = RedisWindowStore(redis_client)
    await store.hit([Bucket(f"{redis_prefix}e", 5, MINUTE, 1)])
    ttl = await redis_client.pttl(f"{redis_prefix}e")
    assert MINUTE < ttl <= MINUTE + 1000  # the window plus one slice


@pytest.mark.redis
async def test_redis_is_atomic_across_clients(redis_prefix: str) -> None:
    """1,000 concurrent checks from two separate connection pools: exactly the limit passes."""
    url = redis_server_url()
    assert url is not None
    clients = [create_redis(url, max_connections=50) for _ in range(2)]
    try:
        stores = [RedisWindowStore(c) for c in clients]
        bucket = Bucket(f"{redis_prefix}shared", 60, MINUTE, 1)
        results = await asyncio.gather(*(stores[i % 2].hit([bucket]) for i in range(1000)))
        assert sum(r[0].allowed for r in results) == 60
    finally:
        for client in clients:
            await client.aclose()


@pytest.mark.redis
async def test_redis_reloads_a_script_the_server_lost(
    redis_client: Redis, redis_prefix: str
) -> None:
    store = RedisWindowStore(redis_client)
    store._sha = "0" * 40  # as after SCRIPT FLUSH or a fail-over to a fresh server
    bucket = Bucket(f"{redis_prefix}reload", 5, MINUTE, 1)
    results = await asyncio.gather(*(store.hit([bucket]) for _ in range(7)))
    assert sorted(r[0].used for r in results if r[0].allowed) == [1, 2, 3, 4, 5]
    assert sum(not r[0].allowed for r in results) == 2


async def test_an_unreachable_redis_fails_every_waiting_check() -> None:
    client = create_redis("redis://127.0.0.1:1/0")
    try:
        store = RedisWindowStore(client)
        outcomes = await asyncio.gather(
            *(store.hit([Bucket("x", 5, MINUTE, 1)]) for _ in range(3)), return_exceptions=True
        )
        assert all(isinstance(o, RedisConnectionError) for o in outcomes), outcomes
    finally:
        await client.aclose()


async def test_debts_are_charged_before_the_next_check(
    store: WindowStore, redis_prefix: str
) -> None:
    tokens = Bucket(f"{redis_prefix}later", 100, MINUTE, 0, counts_requests=False)
    store.charge_later([tokens._replace(cost=70), tokens._replace(cost=0)])
    store.charge_later([tokens._replace(cost=40)])  # summed with the first
    refused = (await store.hit([tokens]))[0]
    assert not refused.allowed and refused.used == 110


@pytest.mark.redis
async def test_redis_charges_debts_without_a_check(redis_client: Redis, redis_prefix: str) -> None:
    store = RedisWindowStore(redis_client, debt_delay=0.01)
    key = f"{redis_prefix}alone"
    store.charge_later([Bucket(key, 100, MINUTE, 30, counts_requests=False)])
    for _ in range(200):
        if await redis_client.exists(key):
            break
        await asyncio.sleep(0.01)
    slices = await redis_client.hgetall(key)
    assert sum(int(v) for v in slices.values()) == 30


@pytest.mark.redis
async def test_redis_sends_debts_with_the_next_checks(
    redis_client: Redis, redis_prefix: str
) -> None:
    """The debts of earlier answers travel in the next request's own script call, charged
    ahead of its check, on the buckets it checks and on others."""
    store = RedisWindowStore(redis_client, debt_delay=60)
    rounds = count_script_calls(store)
    requests = Bucket(f"{redis_prefix}rpm", 10, MINUTE, 1)
    tokens = Bucket(f"{redis_prefix}tpm", 100, MINUTE, 5, counts_requests=False)
    elsewhere = Bucket(f"{redis_prefix}other-tpm", 100, MINUTE, 0, counts_requests=False)
    await store.hit([requests, tokens])
    for _ in range(3):
        store.charge_later([tokens._replace(cost=20), elsewhere._replace(cost=9)])
    results = await store.hit([requests, tokens])
    assert [r.used for r in results] == [2, 70]
    assert rounds == [1, 1]  # one script call each: the second with the debts, then the check
    slices = await redis_client.hgetall(elsewhere.key)
    assert sum(int(v) for v in slices.values()) == 27
    refused = (await store.hit([tokens._replace(cost=31)]))[0]
    assert not refused.allowed and refused.used == 70
    await store.close()
