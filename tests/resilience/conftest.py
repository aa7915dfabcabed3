from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from redis.asyncio import Redis

from oneflow_ai.resilience import MemoryBreakerStore, RedisBreakerStore
from oneflow_ai.resilience.circuits import BreakerStore
from oneflow_ai.storage.redis import create_redis
from tests.conftest import MEMORY, REDIS, redis_server_url


@asynccontextmanager
async def test_redis(prefix: str) -> AsyncIterator[Redis]:
    """A real Redis client; the keys under `prefix` are deleted afterwards."""
    url = redis_server_url()
    assert url is not None, "needs TEST_REDIS_URL (mark the test `redis`)"
    client = create_redis(url)
    try:
        yield client
    finally:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


@pytest.fixture
async def redis_client(redis_prefix: str) -> AsyncIterator[Redis]:
    async with test_redis(redis_prefix) as client:
        yield client


@pytest.fixture(params=[MEMORY, REDIS])
async def breaker_store(
    request: pytest.FixtureRequest, redis_prefix: str
) -> AsyncIterator[BreakerStore]:
    if request.param == "memory":
        yield MemoryBreakerStore()
        return
    async with test_redis(redis_prefix) as client:
        yield RedisBreakerStore(client, prefix=redis_prefix)
