"""The Redis client, when `REDIS_URL` is configured (shared counters across replicas)."""

from __future__ import annotations

from redis.asyncio import Redis

__all__ = ["create_redis"]


def create_redis(url: str, *, max_connections: int = 64) -> Redis:
    client: Redis = Redis.from_url(
        url,
        max_connections=max_connections,
        socket_connect_timeout=2.0,
        socket_timeout=5.0,
        health_check_interval=30,
        decode_responses=False,
    )
    return client
