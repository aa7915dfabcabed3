"""Building the router and the latency tracker from the settings (used by the lifespan)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from oneflow_ai.catalog import Catalog
from oneflow_ai.routing.latency import LatencyTracker
from oneflow_ai.routing.router import CircuitView, IntelligentRouter, Pricer
from oneflow_ai.routing.strategy import BalancedWeights
from oneflow_ai.settings import Settings

if TYPE_CHECKING:  # redis-py is imported only when REDIS_URL is set
    from redis.asyncio import Redis

__all__ = ["build_latency_tracker", "build_router"]


def build_latency_tracker(
    settings: Settings, catalog: Catalog, redis: Redis | None
) -> LatencyTracker:
    """Learned latency per model: shared through Redis when it is configured."""
    return LatencyTracker(
        catalog,
        alpha=settings.routing_latency_alpha,
        relax_half_life=settings.routing_latency_half_life,
        redis=redis,
        prefix=settings.redis_key_prefix,
    )


def build_router(
    settings: Settings,
    engine: Pricer,
    *,
    latency: LatencyTracker | None = None,
    circuits: CircuitView | None = None,
) -> IntelligentRouter:
    return IntelligentRouter(
        engine,
        latency=latency,
        circuits=circuits,
        weights=BalancedWeights(
            cost=settings.routing_weight_cost,
            latency=settings.routing_weight_latency,
            quality=settings.routing_weight_quality,
        ),
        near_equal=settings.routing_near_equal,
        max_fallbacks=settings.routing_max_fallbacks,
    )
