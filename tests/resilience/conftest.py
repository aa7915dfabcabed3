from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from oneflow_ai.resilience import MemoryBreakerStore, RedisBreakerStore
from oneflow_ai.resilience.breaker_set import BreakerStore
from tests.conftest import MEMORY, REDIS
from tests.support.redis_server import redis_for_test


@pytest.fixture
async def redis_client(redis_prefix: str) -> AsyncIterator[Redis]:
    async with redis_for_test(redis_prefix) as client:
        yield client


@pytest.fixture(params=[MEMORY, REDIS])
async def breaker_store(
    request: pytest.FixtureRequest, redis_prefix: str
) -> AsyncIterator[BreakerStore]:
    if request.param == "memory":
        yield MemoryBreakerStore()
        return
    async with redis_for_test(redis_prefix) as client:
        yield RedisBreakerStore(client, prefix=redis_prefix)
