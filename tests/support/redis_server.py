"""A real Redis client for a test, cleaned up afterwards."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis.asyncio import Redis

from oneflow_ai.storage.redis import create_redis
from tests.conftest import redis_server_url

__all__ = ["redis_for_test"]


@asynccontextmanager
async def redis_for_test(prefix: str) -> AsyncIterator[Redis]:
    """A client of TEST_REDIS_URL (mark the test `redis`); keys under `prefix` are deleted
    when it closes."""
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
