"""Resilience: circuit breakers, retries with backoff, the resilient upstream HTTP client,
the fallback executor and the idempotency store.

The upstream types (`UpstreamResponse`, `UpstreamStream`, `ErrorMapper`) and the generic error
mapping (`map_status_error`) are the provider engine's (`oneflow_ai.providers`), re-exported
here for users of `ResilientHTTPClient`."""

from oneflow_ai.providers.errors import map_status_error
from oneflow_ai.providers.upstream import ErrorMapper, UpstreamResponse, UpstreamStream
from oneflow_ai.resilience.breaker_redis import RedisBreakerStore
from oneflow_ai.resilience.breaker_set import (
    CallPermit,
    CircuitBreaker,
    CircuitBreakers,
    CircuitOpenError,
    outcome_of,
)
from oneflow_ai.resilience.breaker_state import (
    BreakerConfig,
    BreakerSnapshot,
    CircuitState,
    MemoryBreakerStore,
    Outcome,
)
from oneflow_ai.resilience.caller import ResilientCaller, RetryEvent, never_sent
from oneflow_ai.resilience.fallback import (
    AttemptRecord,
    FallbackResult,
    Turn,
    falls_through,
    prime,
    run_with_fallbacks,
)
from oneflow_ai.resilience.http import ResilientHTTPClient
from oneflow_ai.resilience.idempotency import (
    IdempotencyStore,
    MemoryIdempotencyStore,
    RedisIdempotencyStore,
    StoredResponse,
)
from oneflow_ai.resilience.retry import RetryBudget, RetryPolicy, parse_retry_after
from oneflow_ai.resilience.upstream_client import ResilientUpstream

__all__ = [
    "AttemptRecord",
    "BreakerConfig",
    "BreakerSnapshot",
    "CallPermit",
    "CircuitBreaker",
    "CircuitBreakers",
    "CircuitOpenError",
    "CircuitState",
    "ErrorMapper",
    "FallbackResult",
    "IdempotencyStore",
    "MemoryBreakerStore",
    "MemoryIdempotencyStore",
    "Outcome",
    "RedisBreakerStore",
    "RedisIdempotencyStore",
    "ResilientCaller",
    "ResilientHTTPClient",
    "ResilientUpstream",
    "RetryBudget",
    "RetryEvent",
    "RetryPolicy",
    "StoredResponse",
    "Turn",
    "UpstreamResponse",
    "UpstreamStream",
    "falls_through",
    "map_status_error",
    "never_sent",
    "outcome_of",
    "parse_retry_after",
    "prime",
    "run_with_fallbacks",
]
