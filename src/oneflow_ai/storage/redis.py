"""The Redis client, when `REDIS_URL` is configured (shared counters across replicas).

The pool blocks (up to `pool_timeout` seconds) when every connection is busy instead of failing:
under a burst of concurrent requests a caller waits its turn for a connection rather than losing
its rate-limit check or counter update to a "too many connections" error.

With a :class:`~oneflow_ai.storage.health.Health` (``redis_health``), the client's connections
trip it when Redis cannot be reached (a refused or timed-out connection, a broken one), and
while it is tripped every command fails at once, without touching the network: the rate
limiter then decides by ``RATE_LIMIT_FAIL_OPEN`` immediately, and circuit breakers and
idempotency keys fall back to this process's own (``resilience.degrading``). The health's probe
(a separate connection) clears it within about a second of Redis answering again.
"""

from __future__ import annotations

from typing import Any

from oneflow_ai.hidden_imports import hidden
from oneflow_ai.storage.health import Health

with hidden("opentelemetry.sdk.metrics"):  # redis-py's own client metrics stay off
    from redis.asyncio import BlockingConnectionPool, Redis
    from redis.asyncio.connection import AbstractConnection
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

__all__ = ["create_redis", "redis_health"]

_BROKEN = (RedisConnectionError, RedisTimeoutError, OSError)


def create_redis(
    url: str,
    *,
    max_connections: int = 64,
    pool_timeout: float = 5.0,
    health: Health | None = None,
) -> Redis:
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=pool_timeout,
        socket_connect_timeout=2.0,
        socket_timeout=5.0,
        health_check_interval=30,
        decode_responses=False,
    )
    if health is not None:
        pool.connection_class = _guarded(pool.connection_class, health)

        async def fresh_connections() -> None:
            # Connections from before the outage were cut by it: none is used again.
            await pool.disconnect(inuse_connections=False)

        health.on_recovery.append(fresh_connections)
    client: Redis = Redis.from_pool(pool)
    return client


def redis_health(url: str, *, degraded: str = "") -> Health:
    """Redis's health flag; its probe pings on a connection of its own (never refused by
    the flag it is there to clear)."""

    async def probe() -> None:
        client = Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
        try:
            await client.ping()
        finally:
            await client.aclose()

    return Health("redis", probe, degraded=degraded)


def _guarded(base: type[AbstractConnection], health: Health) -> type[AbstractConnection]:
    """``base`` (plain, TLS or Unix socket) with connections that trip and respect ``health``."""

    class Guarded(base):  # type: ignore[valid-type, misc]
        async def connect_check_health(self, *args: Any, **kwargs: Any) -> None:
            _refuse_while_down(health)
            try:
                await super().connect_check_health(*args, **kwargs)
            except _BROKEN as exc:
                health.trip(exc)
                raise

        async def send_packed_command(self, *args: Any, **kwargs: Any) -> None:
            _refuse_while_down(health)
            await super().send_packed_command(*args, **kwargs)

        async def read_response(self, *args: Any, **kwargs: Any) -> Any:
            try:
                return await super().read_response(*args, **kwargs)
            except _BROKEN as exc:
                health.trip(exc)
                raise

    Guarded.__name__ = Guarded.__qualname__ = f"Guarded{base.__name__}"
    return Guarded


def _refuse_while_down(health: Health) -> None:
    if health.down:
        raise RedisConnectionError("Redis is unreachable (a probe checks it twice a second)")
