"""Rate limits: sliding windows per caller, project and provider, in-process or in Redis."""

from __future__ import annotations

from typing import TYPE_CHECKING

from oneflow_ai.domain.limits import LimitPolicy
from oneflow_ai.limits.decision import EXEMPT, RateDecision
from oneflow_ai.limits.limiter import RateLimiter, RateSubject
from oneflow_ai.limits.memory import MemoryWindowStore
from oneflow_ai.limits.redis_store import RedisWindowStore
from oneflow_ai.limits.window import Bucket, BucketResult, WindowStore
from oneflow_ai.settings import Settings

if TYPE_CHECKING:  # redis-py is imported only when REDIS_URL is set
    from redis.asyncio import Redis

__all__ = [
    "EXEMPT",
    "Bucket",
    "BucketResult",
    "MemoryWindowStore",
    "RateDecision",
    "RateLimiter",
    "RateSubject",
    "RedisWindowStore",
    "WindowStore",
    "build_rate_limiter",
]


def build_rate_limiter(settings: Settings, redis: Redis | None) -> RateLimiter:
    """The limiter the settings describe: Redis-backed when `REDIS_URL` is set."""
    store: WindowStore = RedisWindowStore(redis) if redis is not None else MemoryWindowStore()
    defaults = LimitPolicy(
        requests_per_minute=settings.rate_limit_per_minute or None,
        requests_per_hour=settings.rate_limit_per_hour or None,
        tokens_per_minute=settings.rate_limit_tokens_per_minute or None,
    )
    providers = {
        name: policy
        for name, values in settings.rate_limit_providers.items()
        if (policy := LimitPolicy.from_mapping(values)) is not None
    }
    return RateLimiter(
        store,
        defaults=defaults,
        providers=providers,
        key_prefix=settings.redis_key_prefix,
        fail_open=settings.rate_limit_fail_open,
    )
