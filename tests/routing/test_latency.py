"""Latency learned from traffic, and latency-optimized routing that follows it."""

from __future__ import annotations

import asyncio
import time

import pytest
from redis.asyncio import Redis

from oneflow_ai import ResilientHTTPClient
from oneflow_ai.billing import PricingEngine
from oneflow_ai.catalog import packaged_catalog
from oneflow_ai.routing import IntelligentRouter, LatencyTracker, RoutingStrategy
from tests.support.clock import ManualClock
from tests.support.redis_server import redis_for_test
from tests.support.transport import MockRequest, MockResponse, MockTransport, Script

CATALOG = packaged_catalog()
HAIKU = "claude-3-haiku-20240307"


def test_estimates_start_at_the_catalog_priors() -> None:
    tracker = LatencyTracker(CATALOG)
    estimate = tracker.estimate(HAIKU)
    assert (estimate.ttft_ms, estimate.ms_per_output_token, estimate.samples) == (400, 8, 0)
    assert estimate.expected_ms(500) == 4400 == tracker.expected_ms(HAIKU, 500)


def test_a_streamed_call_moves_ttft_and_the_token_rate() -> None:
    tracker = LatencyTracker(CATALOG, alpha=0.2, relax_half_life=0)
    tracker.observe(HAIKU, total_ms=9000, ttft_ms=2000, output_tokens=500)
    estimate = tracker.estimate(HAIKU)
    assert estimate.ttft_ms == pytest.approx(400 + 0.2 * (2000 - 400))  # 720
    assert estimate.ms_per_output_token == pytest.approx(8 + 0.2 * (14 - 8))  # 9.2
    assert estimate.total_ms == 9000 and estimate.samples == 1


def test_a_call_without_first_token_time_scales_both_terms() -> None:
    tracker = LatencyTracker(CATALOG, alpha=0.5, relax_half_life=0)
    # predicted 400 + 8 x 100 = 1200 ms, observed 2400: twice as slow -> halfway: x1.5
    tracker.observe(HAIKU, total_ms=2400, output_tokens=100)
    estimate = tracker.estimate(HAIKU)
    assert estimate.ttft_ms == pytest.approx(600)
    assert estimate.ms_per_output_token == pytest.approx(12)
    image = "dall-e-3"  # an image model: no token rate, the whole time moves
    tracker.observe(image, total_ms=4000)
    assert tracker.estimate(image).ttft_ms == pytest.approx(12000 + 0.5 * (4000 - 12000))


def test_learned_values_relax_back_to_the_priors() -> None:
    clock = ManualClock()
    tracker = LatencyTracker(CATALOG, alpha=1.0, relax_half_life=600, clock=clock)
    tracker.observe(HAIKU, total_ms=3400, ttft_ms=1400, output_tokens=100)  # ttft 1400, 20/token
    assert tracker.estimate(HAIKU).ttft_ms == pytest.approx(1400)
    clock.advance(600)  # one half-life: halfway back
    assert tracker.estimate(HAIKU).ttft_ms == pytest.approx(900)
    assert tracker.estimate(HAIKU).ms_per_output_token == pytest.approx(14)
    clock.advance(6000)
    assert tracker.estimate(HAIKU).ttft_ms == pytest.approx(400, abs=1)


def test_nonsense_observations_are_ignored() -> None:
    tracker = LatencyTracker(CATALOG)
    tracker.observe("not-a-model", total_ms=10)
    tracker.observe(HAIKU, total_ms=float("nan"))
    tracker.observe(HAIKU, total_ms=-1)
    assert tracker.estimate(HAIKU).samples == 0
    tracker.observe(HAIKU, total_ms=100, ttft_ms=float("inf"), output_tokens=10)
    assert tracker.estimate(HAIKU).samples == 1  # counted, as a call without ttft


def test_latency_optimized_switches_when_the_fastest_model_slows_down() -> None:
    tracker = LatencyTracker(CATALOG, relax_half_life=0)
    router = IntelligentRouter(PricingEngine(), latency=tracker)

    def fastest() -> str:
        return router.route(
            input_tokens=1000, output_tokens=500, strategy=RoutingStrategy.LATENCY_OPTIMIZED
        ).primary_model

    assert fastest() == HAIKU  # 4,400 ms expected; gpt-3.5-turbo 6,350 ms
    slow = {"total_ms": 9000.0, "ttft_ms": 2000.0, "output_tokens": 500}
    tracker.observe(HAIKU, **slow)  # 720 + 9.2 x 500 = 5,320 ms: still the fastest
    assert fastest() == HAIKU
    tracker.observe(HAIKU, **slow)
    tracker.observe(HAIKU, **slow)  # 1,181 + 10.9 x 500 = 6,645 ms > 6,350 ms
    decision = router.route(
        input_tokens=1000, output_tokens=500, strategy=RoutingStrategy.LATENCY_OPTIMIZED
    )
    assert decision.primary_model == "gpt-3.5-turbo"
    assert decision.score_of(HAIKU).latency_ms == pytest.approx(6644.8)
    for _ in range(10):
        tracker.observe(HAIKU, total_ms=2000, ttft_ms=300, output_tokens=500)
    assert fastest() == HAIKU  # it recovered


async def test_real_calls_feed_the_tracker_and_move_the_route() -> None:
    """Two models, each served by an upstream of its own (at `http://<model>.test`, in
    process); the fastest one's upstream slows down."""
    tracker = LatencyTracker(CATALOG, alpha=0.5, relax_half_life=0)
    router = IntelligentRouter(PricingEngine(), latency=tracker)
    ok = MockResponse.json({"ok": True})
    upstreams = {HAIKU: Script(default=ok), "gpt-3.5-turbo": Script(default=ok)}

    def answer(request: MockRequest) -> MockResponse:
        return upstreams[str(request.url.host).removesuffix(".test")](request)

    async with ResilientHTTPClient(
        "any", max_retries=0, transport=MockTransport(answer, provider="any")
    ) as client:

        async def serve(model: str | None = None) -> str:
            decision = router.route(
                input_tokens=10,
                output_tokens=0,
                strategy=RoutingStrategy.LATENCY_OPTIMIZED,
                allowed_models=set(upstreams),
                model=model,
            )
            chosen = decision.primary_model
            started = time.perf_counter()
            await client.post(f"http://{chosen}.test/v1/chat", json={}, model=chosen)
            tracker.observe(chosen, total_ms=(time.perf_counter() - started) * 1000)
            return chosen

        for _ in range(10):  # traffic that names each model warms both estimates
            await serve(HAIKU)
            await serve("gpt-3.5-turbo")
        assert max(tracker.expected_ms(m) for m in upstreams) < 40
        fastest = min(upstreams, key=tracker.expected_ms)
        other = next(m for m in upstreams if m != fastest)
        upstreams[fastest].default = MockResponse.json({"ok": True}, delay=0.3)  # 300 ms
        after = [await serve() for _ in range(5)]
    # one slow answer lifts its estimate to about 150 ms: the next requests go elsewhere
    assert after == [fastest] + [other] * 4
    assert tracker.expected_ms(fastest) > 100 > tracker.expected_ms(other)


@pytest.mark.redis
async def test_replicas_share_learned_latency(redis_prefix: str) -> None:
    async with redis_for_test(redis_prefix) as client:
        await replicas_share(client, redis_prefix)


async def replicas_share(client: Redis, redis_prefix: str) -> None:
    clock = ManualClock()
    one = LatencyTracker(CATALOG, redis=client, prefix=redis_prefix, clock=clock)
    two = LatencyTracker(CATALOG, redis=client, prefix=redis_prefix, clock=clock)
    samples = [(9000.0, 2000.0, 500), (3000.0, None, 300), (8000.0, 1500.0, 400)]
    for total, ttft, tokens in samples:
        one.observe(HAIKU, total_ms=total, ttft_ms=ttft, output_tokens=tokens)
        clock.advance(30)
    local = one.estimate(HAIKU)  # computed in Python
    await one.sync()
    shared = one.estimate(HAIKU)  # read back from Redis, computed by the Lua script
    assert shared.ttft_ms == pytest.approx(local.ttft_ms, rel=1e-9)
    assert shared.ms_per_output_token == pytest.approx(local.ms_per_output_token, rel=1e-9)
    assert shared.total_ms == pytest.approx(local.total_ms, rel=1e-9)
    assert shared.samples == 3
    assert two.estimate(HAIKU).samples == 0  # not yet synchronized
    await two.sync()
    assert two.estimate(HAIKU) == shared
    # observations from both replicas add up
    two.observe(HAIKU, total_ms=1000, ttft_ms=100, output_tokens=100)
    await two.sync()
    await one.sync()
    assert one.estimate(HAIKU).samples == 4 == two.estimate(HAIKU).samples
    await one.aclose()
    await two.aclose()


@pytest.mark.redis
async def test_the_background_loop_synchronizes(redis_prefix: str) -> None:
    async with redis_for_test(redis_prefix) as client:
        one = LatencyTracker(CATALOG, redis=client, prefix=redis_prefix, sync_interval=0.02)
        two = LatencyTracker(CATALOG, redis=client, prefix=redis_prefix, sync_interval=0.02)
        await one.start()
        await two.start()
        one.observe("gpt-4o", total_ms=100, ttft_ms=50, output_tokens=10)
        for _ in range(100):
            if two.estimate("gpt-4o").samples:
                break
            await asyncio.sleep(0.02)
        await one.aclose()
        await two.aclose()
    assert two.estimate("gpt-4o").samples == 1
