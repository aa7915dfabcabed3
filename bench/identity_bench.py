"""What identity and limits cost per request, in-process: `python -m bench.identity_bench`.

Resolves the master key, a warm API key and a JWT access token, and admits requests through the
in-process and (with `REDIS_URL` or `TEST_REDIS_URL`) the Redis limiter, each many times, and
prints microseconds per call with the same run's baseline (an empty coroutine call).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from oneflow_ai.auth.identity import Identity
from oneflow_ai.auth.invalidation import InvalidationBus
from oneflow_ai.auth.principal import MASTER, Role
from oneflow_ai.domain.limits import LimitPolicy
from oneflow_ai.limits import MemoryWindowStore, RateLimiter, RedisWindowStore
from oneflow_ai.settings import Settings
from oneflow_ai.storage import migrate
from oneflow_ai.storage.database import create_engine, create_sessionmaker
from oneflow_ai.storage.redis import create_redis

ROUNDS = 5
CALLS = 5_000


async def measure(name: str, call: Callable[[], Awaitable[object]], calls: int = CALLS) -> float:
    samples = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for _ in range(calls):
            await call()
        samples.append((time.perf_counter() - started) / calls * 1e6)
    median = statistics.median(samples)
    print(f"{name:<44} {median:8.2f} µs/call   (min {min(samples):.2f})")
    return median


async def main() -> None:
    directory = Path(tempfile.mkdtemp(prefix="oneflow-bench-"))
    url = f"sqlite+aiosqlite:///{directory / 'bench.db'}"
    engine = create_engine(url, pool_size=2)
    await migrate.upgrade(engine)
    settings = Settings(_env_file=None, database_url=url)  # type: ignore[call-arg]
    identity = Identity(settings, create_sessionmaker(engine), InvalidationBus())
    await identity.projects.create(MASTER, name="bench", project_id="bench")
    key = (await identity.keys.create(MASTER, project_id="bench", name="bench")).key
    await identity.users.create(
        MASTER, email="bench@example.com", password="bench-password", project_id="bench"
    )
    token = (await identity.sessions.login("bench@example.com", "bench-password")).access_token
    master = settings.oneflow_master_key.get_secret_value()
    await identity.authenticate(key)  # warm the cache

    async def nothing() -> None:
        return None

    print(f"{'operation':<44} {'median':>8}")
    await measure("baseline: an empty coroutine", nothing)
    await measure("authenticate: master key", lambda: identity.authenticate(master))
    await measure("authenticate: API key (warm cache)", lambda: identity.authenticate(key))
    await measure("authenticate: JWT access token", lambda: identity.authenticate(token))

    principal = await identity.authenticate(key)
    huge = LimitPolicy(requests_per_minute=10**9, requests_per_hour=10**9)
    memory = RateLimiter(MemoryWindowStore(), defaults=huge)
    await measure("limiter: in-process, rpm + rph windows", lambda: memory.admit(principal))
    redis_url = os.environ.get("REDIS_URL") or os.environ.get("TEST_REDIS_URL")
    if redis_url:
        client = create_redis(redis_url)
        shared = RateLimiter(RedisWindowStore(client), defaults=huge, key_prefix="oneflowbench:")
        await measure("limiter: Redis (one round trip)", lambda: shared.admit(principal), 2_000)
        keys = [k async for k in client.scan_iter(match="oneflowbench:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()
    assert principal.role is Role.MEMBER
    await identity.close()
    await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
