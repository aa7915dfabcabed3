"""Circuit breakers and Idempotency-Key records while Redis is unreachable: this process's
own state answers (a failing provider still opens its circuit, a repeated key is still
recognised), the outage trips Redis's health flag once, and Redis takes over again after."""

from __future__ import annotations

import asyncio

from redis.exceptions import ConnectionError as RedisConnectionError

from oneflow_ai.resilience.breaker_state import (
    Admission,
    BreakerConfig,
    BreakerSnapshot,
    CircuitState,
    MemoryBreakerStore,
)
from oneflow_ai.resilience.degrading import DegradingBreakerStore, DegradingIdempotencyStore
from oneflow_ai.resilience.idempotency import Claimed, Done, MemoryIdempotencyStore, StoredResponse
from oneflow_ai.storage.health import Health


class Switch:
    """A Redis that answers, or not."""

    def __init__(self) -> None:
        self.up = True
        self.calls = 0

    def check(self) -> None:
        self.calls += 1
        if not self.up:
            raise RedisConnectionError("Connection refused")


class FlakyBreakerStore(MemoryBreakerStore):
    shared = True

    def __init__(self, switch: Switch) -> None:
        super().__init__()
        self.switch = switch

    async def acquire(
        self, key: str, config: BreakerConfig, now: float
    ) -> tuple[Admission, BreakerSnapshot]:
        self.switch.check()
        return await super().acquire(key, config, now)

    async def record(  # type: ignore[override]
        self, key: str, config: BreakerConfig, now: float, **counts: object
    ) -> BreakerSnapshot:
        self.switch.check()
        return await super().record(key, config, now, **counts)  # type: ignore[arg-type]


def _health(switch: Switch) -> Health:
    async def probe() -> None:
        switch.check()

    return Health("redis", probe, interval=0.01)


async def test_breakers_open_in_process_while_redis_is_away_and_share_again_after() -> None:
    switch = Switch()
    health = _health(switch)
    store = DegradingBreakerStore(FlakyBreakerStore(switch), health)
    config = BreakerConfig(failure_rate=0.5, min_calls=2)
    try:
        switch.up = False
        snapshot = await store.record("openai", config, 1.0, failures=2)
        assert health.down and health.outages == 1
        assert snapshot.state is CircuitState.OPEN  # opened here, by this process's count
        admission, _ = await store.acquire("openai", config, 2.0)
        assert admission is Admission.REJECTED
        calls = switch.calls
        await store.record("openai", config, 2.5, failures=1)
        assert switch.calls == calls  # while tripped, Redis is not even tried
        switch.up = True
        while health.down:
            await asyncio.sleep(0.01)
        admission, shared = await store.acquire("openai", config, 3.0)
        assert admission is Admission.ALLOWED and shared.state is CircuitState.CLOSED
        assert health.outages == 1
    finally:
        await health.close()


class FlakyIdempotencyStore(MemoryIdempotencyStore):
    def __init__(self, switch: Switch) -> None:
        super().__init__()
        self.switch = switch

    async def begin(self, key: str, fingerprint: str):  # type: ignore[no-untyped-def]
        self.switch.check()
        return await super().begin(key, fingerprint)

    async def complete(self, key: str, claim: Claimed, response: StoredResponse) -> None:
        self.switch.check()
        await super().complete(key, claim, response)


async def test_idempotency_keys_are_kept_in_process_while_redis_is_away() -> None:
    switch = Switch()
    health = _health(switch)
    shared = FlakyIdempotencyStore(switch)
    store = DegradingIdempotencyStore(shared, health)
    try:
        switch.up = False
        claim = await store.begin("k", "fp")
        assert isinstance(claim, Claimed) and health.down
        answer = StoredResponse(200, ((b"content-type", b"application/json"),), b"{}")
        await store.complete("k", claim, answer)
        repeat = await store.begin("k", "fp")
        assert isinstance(repeat, Done) and repeat.response == answer
        switch.up = True
        while health.down:
            await asyncio.sleep(0.01)
        fresh = await store.begin("k2", "fp")
        assert isinstance(fresh, Claimed)
        await store.complete("k2", fresh, answer)
        assert isinstance(await shared.begin("k2", "fp"), Done)  # in the shared store again
    finally:
        await health.close()
