"""The public names of the package, routing and resilience, pinned."""

from __future__ import annotations

import subprocess
import sys

import oneflow_ai
from oneflow_ai import resilience, routing


def test_the_package_exports_its_public_names_lazily() -> None:
    assert set(oneflow_ai.__all__) == {
        "IntelligentRouter",
        "PricingEngine",
        "ResilientHTTPClient",
        "RoutingStrategy",
        "__version__",
    }
    from oneflow_ai import IntelligentRouter, ResilientHTTPClient, RoutingStrategy

    assert IntelligentRouter is routing.IntelligentRouter
    assert RoutingStrategy is routing.RoutingStrategy
    assert ResilientHTTPClient is resilience.ResilientHTTPClient
    code = "import sys, oneflow_ai; print('aiohttp' in sys.modules or 'redis' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


def test_routing_exports() -> None:
    assert set(routing.__all__) == {
        "BalancedWeights",
        "CandidateFacts",
        "CandidateScore",
        "CircuitView",
        "Exclusion",
        "IntelligentRouter",
        "LatencyEstimate",
        "LatencyTracker",
        "Pricer",
        "RouteDecision",
        "RouteReason",
        "RoutingStrategy",
        "rank",
    }


def test_resilience_exports() -> None:
    assert set(resilience.__all__) == {
        "Turn",
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
        "UpstreamResponse",
        "UpstreamStream",
        "falls_through",
        "map_status_error",
        "never_sent",
        "outcome_of",
        "parse_retry_after",
        "prime",
        "run_with_fallbacks",
    }
