"""The invalidation bus on Redis: a publication returns once every listening replica has
applied it, so whatever follows it, on any replica, sees the change."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from oneflow_ai.auth.invalidation import RedisInvalidationBus
from oneflow_ai.storage.redis import create_redis
from tests.conftest import redis_server_url

pytestmark = pytest.mark.redis


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    url = redis_server_url()
    assert url is not None
    client = create_redis(url)
    try:
        yield client
    finally:
        await client.aclose()


async def _replica(redis: Redis, channel: str, seen: list[str]) -> RedisInvalidationBus:
    bus = RedisInvalidationBus(redis, channel)
    bus.subscribe(seen.append)
    await bus.start()
    assert bus.subscribed
    return bus


async def test_a_publication_returns_once_every_replica_applied_it(
    redis: Redis, redis_prefix: str
) -> None:
    channel = f"{redis_prefix}auth:invalidate"
    seen: list[list[str]] = [[], [], []]
    replicas = [await _replica(redis, channel, s) for s in seen]
    try:
        assert await replicas[0].publish("ledger:p1")
        # No waiting here: each replica applied it before the publication returned.
        assert all(s[-1] == "ledger:p1" for s in seen), seen
        # The operator's CLI publishes without listening itself.
        assert await RedisInvalidationBus(redis, channel).publish("key:abc")
        assert all(s[-1] == "key:abc" for s in seen), seen
        assert [key async for key in redis.scan_iter(match=f"{channel}:ack:*")] == []
    finally:
        for replica in replicas:
            await replica.close()


async def test_a_replica_that_does_not_acknowledge_is_reported(
    redis: Redis, redis_prefix: str
) -> None:
    channel = f"{redis_prefix}auth:invalidate"
    silent = redis.pubsub()  # listens, never acknowledges (a replica stuck or too old)
    await silent.subscribe(channel)
    try:
        bus = RedisInvalidationBus(redis, channel, ack_timeout=0.2)
        assert not await bus.publish("ledger:p1")
        nobody = RedisInvalidationBus(redis, f"{redis_prefix}other")
        assert await nobody.publish("ledger:p1")  # no replica listening: nothing to wait for
    finally:
        await silent.aclose()  # type: ignore[no-untyped-call]
