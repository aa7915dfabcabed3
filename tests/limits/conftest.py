"""Window stores for limiter tests: in-process, or a real Redis under a prefix of the test's own."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from oneflow_ai.limits import MemoryWindowStore, RedisWindowStore, WindowStore
from oneflow_ai.storage.redis import create_redis
from tests.conftest import MEMORY, REDIS, redis_server_url


def count_script_calls(store: RedisWindowStore) -> list[int]:
    """The number of script calls of each round trip `store` makes from now on."""
    rounds: list[int] = []
    pipeline = store._pipeline

    async def counted(sha: str, calls: list[tuple[list[str], list[int | str]]]) -> list[object]:
        rounds.append(len(calls))
        return await pipeline(sha, calls)

    store._pipeline = counted  # type: ignore[method-assign]
    return rounds


async def drop_prefix(redis: Redis, prefix: str) -> None:
    keys = [key async for key in redis.scan_iter(match=f"{prefix}*", count=500)]
    if keys:
        await redis.delete(*keys)


@pytest.fixture
async def redis_client(redis_prefix: str) -> AsyncIterator[Redis]:
    url = redis_server_url()
    assert url is not None, "Redis tests need TEST_REDIS_URL"
    client = create_redis(url)
    try:
        yield client
    finally:
        await drop_prefix(client, redis_prefix)
        await client.aclose()


@pytest.fixture(params=[MEMORY, REDIS])
async def store(request: pytest.FixtureRequest, redis_prefix: str) -> AsyncIterator[WindowStore]:
    if request.param == "memory":
        yield MemoryWindowStore()
        return
    url = redis_server_url()
    assert url is not None
    client = create_redis(url)
    try:
        yield RedisWindowStore(client)
    finally:
        await drop_prefix(client, redis_prefix)
        await client.aclose()
