"""The Redis client, when `REDIS_URL` is configured (shared counters across replicas).

The pool blocks (up to `pool_timeout` seconds) when every connection is busy instead of failing:
under a burst of concurrent requests a caller waits its turn for a connection rather than losing
its rate-limit check or counter update to a "too many connections" error.
"""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis

__all__ = ["create_redis"]


def create_redis(url: str, *, max_connections: int = 64, pool_timeout: float = 5.0) -> Redis:
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=pool_timeout,
        socket_connect_timeout=2.0,
        socket_timeout=5.0,
        health_check_interval=30,
        decode_responses=False,
    )
    client: Redis = Redis.from_pool(pool)
    return client
