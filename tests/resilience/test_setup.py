"""The resilience and routing objects follow the settings."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from oneflow_ai.billing import PricingEngine
from oneflow_ai.resilience import MemoryIdempotencyStore, RedisIdempotencyStore
from oneflow_ai.resilience.setup import (
    build_breakers,
    build_http_client,
    build_idempotency_store,
)
from oneflow_ai.routing.setup import build_latency_tracker, build_router
from oneflow_ai.settings import Settings, SettingsError, load_settings
from oneflow_ai.storage.redis import create_redis


async def test_http_clients_take_their_providers_timeouts(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(
        anthropic_read_timeout=90, stability_connect_timeout=3, upstream_max_retries=4
    )
    breakers = build_breakers(settings, None)
    anthropic = build_http_client(settings, "anthropic", breakers)
    stability = build_http_client(settings, "stability", breakers)
    openai = build_http_client(settings, "openai", breakers)
    assert (anthropic.connect_timeout, anthropic.read_timeout) == (10.0, 90.0)
    assert (stability.connect_timeout, stability.read_timeout) == (3.0, 30.0)
    assert (openai.connect_timeout, openai.read_timeout) == (10.0, 30.0)
    assert openai.policy.max_retries == 4 and openai.breakers is breakers
    for client in (anthropic, stability, openai):
        await client.aclose()


def test_breakers_take_the_configured_thresholds(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(
        circuit_failure_rate=0.3,
        circuit_provider_failure_rate=0.9,
        circuit_min_calls=20,
        circuit_window_seconds=60,
        circuit_cooldown_seconds=5,
        circuit_half_open_probes=3,
    )
    breakers = build_breakers(settings, None)
    assert not breakers.shared
    model, provider = breakers.model_config, breakers.provider_config
    assert (model.failure_rate, provider.failure_rate) == (0.3, 0.9)
    assert (model.min_calls, model.window_seconds, model.cooldown_seconds) == (20, 60, 5)
    assert model.half_open_probes == 3


async def test_stores_follow_redis_configuration(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(idempotency_ttl_seconds=60)
    memory = build_idempotency_store(settings, None)
    assert isinstance(memory, MemoryIdempotencyStore) and memory.ttl == 60
    redis = create_redis("redis://127.0.0.1:1/0")  # never connected to
    assert isinstance(build_idempotency_store(settings, redis), RedisIdempotencyStore)
    assert build_breakers(settings, redis).shared
    assert build_latency_tracker(settings, PricingEngine().catalog, redis).shared
    await redis.aclose()


def test_router_weights_come_from_the_settings(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(routing_weight_quality=0, routing_weight_latency=0)
    router = build_router(settings, PricingEngine())
    decision = router.route(input_tokens=1500, output_tokens=500, strategy="balanced")
    assert decision.primary_model == "claude-3-haiku-20240307"  # cost alone
    with pytest.raises(SettingsError, match="ROUTING_WEIGHT_COST"):
        load_settings(
            _env_file=None,
            routing_weight_cost=0,
            routing_weight_latency=0,
            routing_weight_quality=0,
        )
