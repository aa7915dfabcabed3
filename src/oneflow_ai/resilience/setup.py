"""Building the resilience layer's objects from the settings (used by the app's lifespan)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from oneflow_ai.resilience.breaker_redis import RedisBreakerStore
from oneflow_ai.resilience.breaker_set import CircuitBreakers
from oneflow_ai.resilience.breaker_state import BreakerConfig, BreakerStore
from oneflow_ai.resilience.caller import ResilientCaller, RetryEvent
from oneflow_ai.resilience.degrading import DegradingBreakerStore, DegradingIdempotencyStore
from oneflow_ai.resilience.http import ResilientHTTPClient
from oneflow_ai.resilience.idempotency import (
    IdempotencyStore,
    MemoryIdempotencyStore,
    RedisIdempotencyStore,
)
from oneflow_ai.resilience.retry import RetryBudget, RetryPolicy
from oneflow_ai.settings import Settings
from oneflow_ai.storage.health import Health

if TYPE_CHECKING:  # redis-py is imported only when REDIS_URL is set
    from redis.asyncio import Redis

__all__ = [
    "build_breakers",
    "build_caller",
    "build_http_client",
    "build_idempotency_store",
    "retry_budget",
    "retry_policy",
]


def _breaker_config(settings: Settings, failure_rate: float) -> BreakerConfig:
    return BreakerConfig(
        failure_rate=failure_rate,
        min_calls=settings.circuit_min_calls,
        window_seconds=settings.circuit_window_seconds,
        cooldown_seconds=settings.circuit_cooldown_seconds,
        half_open_probes=settings.circuit_half_open_probes,
        probe_timeout_seconds=max(60.0, 2 * settings.upstream_read_timeout),
    )


def build_breakers(
    settings: Settings, redis: Redis | None, health: Health | None = None
) -> CircuitBreakers:
    """The process's circuit breakers: shared through Redis when it is configured (this
    process's own while Redis is unreachable, given its ``health``)."""
    store: BreakerStore | None = None
    if redis is not None:
        store = RedisBreakerStore(redis, prefix=settings.redis_key_prefix)
        if health is not None:
            store = DegradingBreakerStore(store, health)
    return CircuitBreakers(
        store,
        provider_config=_breaker_config(settings, settings.circuit_provider_failure_rate),
        model_config=_breaker_config(settings, settings.circuit_failure_rate),
        cache_ttl=settings.circuit_cache_ttl,
    )


def retry_policy(settings: Settings) -> RetryPolicy:
    return RetryPolicy(
        max_retries=settings.upstream_max_retries,
        base_delay=settings.upstream_retry_base_delay,
        max_delay=settings.upstream_retry_max_delay,
        max_retry_after=settings.upstream_max_retry_after,
    )


def retry_budget(settings: Settings) -> RetryBudget:
    return RetryBudget(
        ratio=settings.upstream_retry_budget_ratio,
        min_per_second=settings.upstream_retry_budget_min_per_second,
    )


def build_caller(
    settings: Settings,
    provider: str,
    breakers: CircuitBreakers,
    *,
    on_retry: Callable[[RetryEvent], None] | None = None,
) -> ResilientCaller:
    """Breakers, retries and a retry budget for one provider's upstream calls."""
    return ResilientCaller(
        provider,
        breakers=breakers,
        policy=retry_policy(settings),
        budget=retry_budget(settings),
        on_retry=on_retry,
    )


def build_http_client(
    settings: Settings,
    provider: str,
    breakers: CircuitBreakers,
    *,
    on_retry: Callable[[RetryEvent], None] | None = None,
) -> ResilientHTTPClient:
    """A pooled, resilient HTTP client for ``provider`` with its configured timeouts."""
    config = settings.provider(provider)
    return ResilientHTTPClient(
        provider,
        timeout=config.read_timeout,
        connect_timeout=config.connect_timeout,
        retry_policy=retry_policy(settings),
        breakers=breakers,
        budget=retry_budget(settings),
        on_retry=on_retry,
    )


def build_idempotency_store(
    settings: Settings, redis: Redis | None, health: Health | None = None
) -> IdempotencyStore:
    """Idempotency-Key records: shared through Redis when it is configured (this process's
    own while Redis is unreachable, given its ``health``)."""
    if redis is None:
        return MemoryIdempotencyStore(
            ttl=settings.idempotency_ttl_seconds, lock_seconds=settings.idempotency_lock_seconds
        )
    store = RedisIdempotencyStore(
        redis,
        prefix=settings.redis_key_prefix,
        ttl=settings.idempotency_ttl_seconds,
        lock_seconds=settings.idempotency_lock_seconds,
    )
    return store if health is None else DegradingIdempotencyStore(store, health)
