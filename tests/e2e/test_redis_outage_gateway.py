"""Redis goes away under two real gateway replicas (a private Redis server the test stops).

While it is away, each replica decides at once, without waiting for Redis:

- rate limits as ``RATE_LIMIT_FAIL_OPEN`` says: admitted (true), or refused with 503 and
  ``Retry-After`` (false);
- an ``Idempotency-Key`` is still honoured, by the replica that saw it (a repeat is replayed
  there instead of failing with 503);
- ``/ready`` stays 200 (``degraded``): the replicas stay in the load balancer;
- the outage is logged once per replica, when it starts, and once when it ends.

When Redis answers again, the replicas use it again within seconds: rate-limited requests are
counted there again (and, failing closed, served again).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import orjson
import pytest

from tests.support.gateway_load import (
    HANG_GUARD,
    fake_process,
    gateway_env,
    new_prepaid_project,
    post_chat,
)
from tests.support.gateway_process import GatewayProcess
from tests.support.redis_server import PrivateRedis

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

REQUESTS = 20  # per replica, during the outage


def _events(gateway: GatewayProcess, name: str) -> list[dict[str, object]]:
    events = (orjson.loads(line) for line in gateway.log_path.read_text().splitlines())
    return [event for event in events if event.get("event") == name]


async def _counted(redis_url: str, prefix: str) -> int:
    """Requests the shared per-minute windows hold (each counts one per request)."""
    from redis.asyncio import Redis

    client = Redis.from_url(redis_url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}rl:*:rpm")]
        return sum([sum(int(v) for v in await client.hvals(key)) for key in keys])
    finally:
        await client.aclose()


@pytest.mark.parametrize("fail_open", [False, True], ids=["fail-closed", "fail-open"])
async def test_redis_outage_decides_at_once_and_recovers(
    postgres_url: str, tmp_path: Path, fail_open: bool
) -> None:
    prefix = f"outage{int(fail_open)}:"
    redis = await asyncio.to_thread(PrivateRedis)
    with fake_process(tmp_path / "fakes.log") as fakes:
        env = gateway_env(
            postgres_url,
            fakes,
            REDIS_URL=redis.url,
            REDIS_KEY_PREFIX=prefix,
            RATE_LIMIT_PER_MINUTE="100000",  # a limit applies: every request counts in Redis
            RATE_LIMIT_FAIL_OPEN=str(fail_open).lower(),
            API_KEY_CACHE_TTL_SECONDS="300",
        )
        replicas = [
            await asyncio.to_thread(GatewayProcess, env, tmp_path / f"replica-{n}.log")
            for n in (1, 2)
        ]
        try:
            key = await asyncio.to_thread(new_prepaid_project, replicas[0].url, "redis", "1000")
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(HANG_GUARD)) as http:
                for gateway in replicas:  # both know the key; counters exist in Redis
                    assert (await post_chat(http, gateway.url, key)).status == 200
                before = await _counted(redis.url, prefix)
                assert before > 0

                await asyncio.to_thread(redis.stop)
                answers = []
                for gateway in replicas:
                    for _ in range(REQUESTS):
                        started = time.monotonic()
                        answer = await post_chat(http, gateway.url, key)
                        answers.append((answer, time.monotonic() - started))
                    once = {"Idempotency-Key": f"during-outage-{gateway.port}"}
                    first = await post_chat(http, gateway.url, key, extra_headers=once)
                    again = await post_chat(http, gateway.url, key, extra_headers=once)
                    if fail_open:
                        assert first.status == 200, first.body
                        assert again.headers.get("idempotent-replayed") == "true", again
                        assert again.body == first.body

                async with http.get(f"{replicas[0].url}/ready") as answer:
                    ready_during = (answer.status, await answer.json())
                await asyncio.sleep(2)  # the replicas' probes find it still away meanwhile
                await asyncio.to_thread(redis.start)  # with what it held before (append-only)
                back = time.monotonic()
                while True:  # until both replicas answer and count in Redis again
                    counted = await _counted(redis.url, prefix)
                    answers_back = [await post_chat(http, g.url, key) for g in replicas]
                    # A request may count in more than one window: the count alone can rise
                    # enough while one replica still refuses.
                    answered = all(answer.status == 200 for answer in answers_back)
                    if answered and await _counted(redis.url, prefix) >= counted + len(replicas):
                        break
                    assert time.monotonic() - back < HANG_GUARD
                    await asyncio.sleep(0.05)
                recovered = time.monotonic() - back
        finally:
            for gateway in replicas:
                gateway.stop()
            await asyncio.to_thread(redis.remove)
    assert [answer.status for answer in answers_back] == [200, 200]
    status, body = ready_during  # still in the load balancer, saying why it is degraded
    assert status == 200 and body["status"] == "degraded" and body["degraded"] == ["redis"]

    slowest = max(seconds for _, seconds in answers)
    print(
        f"\nslowest answer with Redis down: {slowest:.3f} s; shared again {recovered:.2f} s later"
    )
    for answer, _ in answers:
        if fail_open:
            assert answer.status == 200, answer.body
        else:
            assert answer.status == 503, answer.body
            assert answer.headers.get("retry-after"), answer.headers
            assert b"Rate limiting is unavailable" in answer.body
    assert slowest < 2.0  # decided without waiting for Redis's connect timeout (2 s)
    assert recovered < 5.0
    for gateway in replicas:  # logged once when it went, once when it came back
        assert len(_events(gateway, "redis_unreachable")) == 1, gateway.log_path
        assert len(_events(gateway, "redis_recovered")) == 1, gateway.log_path
