"""Shared state that degrades to this process's own while Redis is unreachable.

Circuit breakers and Idempotency-Key records live in Redis so that every replica sees them.
When Redis cannot be reached (its health flag, :mod:`oneflow_ai.storage.health`, is tripped by
the first failure and logged once per outage), these stores answer from an in-process store
instead of failing requests: a failing provider still opens its circuit here, and a retried
request with the same key is still recognised by this replica. What is lost meanwhile is only
the sharing: another replica has its own view until Redis answers again (within about a second
of its return), when the shared state takes over and the local one is dropped.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from oneflow_ai.resilience.breaker_state import (
    Admission,
    BreakerConfig,
    BreakerSnapshot,
    BreakerStore,
    MemoryBreakerStore,
    Outcome,
)
from oneflow_ai.resilience.idempotency import (
    Begin,
    Claimed,
    IdempotencyStore,
    MemoryIdempotencyStore,
    StoredResponse,
)
from oneflow_ai.storage.health import Health
from oneflow_ai.storage.redis_errors import unreachable

__all__ = ["DegradingBreakerStore", "DegradingIdempotencyStore"]

T = TypeVar("T")


async def _shared_or_local(
    health: Health, shared: Callable[[], Awaitable[T]], local: Callable[[], Awaitable[T]]
) -> T:
    if not health.down:
        try:
            return await shared()
        except unreachable() as exc:
            health.trip(exc)
    return await local()


class DegradingBreakerStore:
    """A shared (Redis) breaker store, backed by an in-process one while Redis is away."""

    shared = True

    def __init__(self, shared: BreakerStore, health: Health) -> None:
        self._shared = shared
        self._local = MemoryBreakerStore()
        self._health = health

    async def acquire(
        self, key: str, config: BreakerConfig, now: float
    ) -> tuple[Admission, BreakerSnapshot]:
        return await _shared_or_local(
            self._health,
            lambda: self._shared.acquire(key, config, now),
            lambda: self._local.acquire(key, config, now),
        )

    async def record(
        self,
        key: str,
        config: BreakerConfig,
        now: float,
        *,
        successes: int = 0,
        failures: int = 0,
        probe: Outcome | None = None,
    ) -> BreakerSnapshot:
        counts = {"successes": successes, "failures": failures, "probe": probe}
        return await _shared_or_local(
            self._health,
            lambda: self._shared.record(key, config, now, **counts),  # type: ignore[arg-type]
            lambda: self._local.record(key, config, now, **counts),  # type: ignore[arg-type]
        )

    async def load(
        self, keys: list[str] | None, config_for: Callable[[str], BreakerConfig], now: float
    ) -> list[BreakerSnapshot]:
        return await _shared_or_local(
            self._health,
            lambda: self._shared.load(keys, config_for, now),
            lambda: self._local.load(keys, config_for, now),
        )

    async def reset(self, key: str) -> None:
        await self._local.reset(key)
        await _shared_or_local(
            self._health, lambda: self._shared.reset(key), lambda: self._local.reset(key)
        )


class DegradingIdempotencyStore:
    """A shared (Redis) Idempotency-Key store, backed by an in-process one while Redis is
    away. A claim is finished in the store that granted it."""

    def __init__(self, shared: IdempotencyStore, health: Health) -> None:
        self._shared = shared
        self._local = MemoryIdempotencyStore(ttl=shared.ttl, lock_seconds=shared.lock_seconds)
        self._health = health
        self._local_claims: set[str] = set()
        self.ttl = shared.ttl
        self.lock_seconds = shared.lock_seconds

    def _remember(self, began: Begin) -> Begin:
        if isinstance(began, Claimed):
            self._local_claims.add(began.token)
        return began

    async def begin(self, key: str, fingerprint: str) -> Begin:
        async def local() -> Begin:
            return self._remember(await self._local.begin(key, fingerprint))

        return await _shared_or_local(
            self._health, lambda: self._shared.begin(key, fingerprint), local
        )

    async def wait(self, key: str, fingerprint: str, max_wait: float) -> Begin:
        async def local() -> Begin:
            return self._remember(await self._local.wait(key, fingerprint, max_wait))

        return await _shared_or_local(
            self._health, lambda: self._shared.wait(key, fingerprint, max_wait), local
        )

    async def complete(self, key: str, claim: Claimed, response: StoredResponse) -> None:
        await self._finish(
            claim,
            lambda: self._shared.complete(key, claim, response),
            lambda: self._local.complete(key, claim, response),
        )

    async def release(self, key: str, claim: Claimed) -> None:
        await self._finish(
            claim, lambda: self._shared.release(key, claim), lambda: self._local.release(key, claim)
        )

    async def renew(self, key: str, claim: Claimed) -> None:
        if claim.token in self._local_claims:
            await self._local.renew(key, claim)
        else:
            await self._shared.renew(key, claim)

    async def _finish(
        self,
        claim: Claimed,
        shared: Callable[[], Awaitable[None]],
        local: Callable[[], Awaitable[None]],
    ) -> None:
        if claim.token in self._local_claims:
            self._local_claims.discard(claim.token)
            await local()
            return
        try:
            await shared()
        except unreachable() as exc:  # its Redis lease expires by itself
            self._health.trip(exc)
