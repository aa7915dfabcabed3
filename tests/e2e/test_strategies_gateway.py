"""Routing strategies through the running gateway, on the packaged catalog.

`POST /api/v1/request` with a strategy is answered by the model that strategy picks (the
router's table in tests/routing/test_router.py explains each pick), and latency-optimized
routing learns from the gateway's own traffic: when the fake provider of the fastest model
slows down, the following requests go to another model.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from oneflow_fakes import FakeProviders
from tests.support.resilience_world import HAIKU, Resilient, resilient_gateway

# About 1,500 input tokens and 500 output tokens: the router table's request.
PROMPT = "word " * 1500
MAX_TOKENS = 500

# strategy -> (model, provider), as the router table derives them from the catalog's prices,
# latency priors and quality scores (no traffic yet: the latency priors decide).
STRATEGY_TABLE = {
    "cost_optimized": (HAIKU, "anthropic"),  # the lowest price per token
    "latency_optimized": (HAIKU, "anthropic"),  # the lowest expected latency
    "quality_optimized": ("gpt-4o", "openai"),  # the highest quality score
    "balanced": ("gpt-4o", "openai"),  # the best equal-weight blend
}


@pytest.fixture(scope="module")
def fakes() -> Iterator[FakeProviders]:
    with FakeProviders() as server:
        yield server


@pytest.fixture
def world(fakes: FakeProviders, tmp_path: Path) -> Iterator[Resilient]:
    fakes.reset()
    # Latency learning made quick to show: half the weight on the newest call, no relaxing;
    # and a read timeout well beyond the slowed provider's answers (no fallback here).
    with resilient_gateway(
        fakes,
        tmp_path,
        routing_latency_alpha=0.5,
        routing_latency_half_life=0,
        upstream_read_timeout=10.0,
    ) as gateway:
        yield gateway


@pytest.mark.parametrize("strategy", list(STRATEGY_TABLE))
def test_each_strategy_is_answered_by_its_model(world: Resilient, strategy: str) -> None:
    model, provider = STRATEGY_TABLE[strategy]
    answer = world.request(strategy, prompt=PROMPT, max_tokens=MAX_TOKENS)
    assert (answer.model, answer.provider, answer.fallbacks) == (model, provider, 0)
    assert answer.body["strategy"] == strategy and answer.body["output"]
    (call,) = world.fakes.calls()
    assert (call.provider, call.model) == (provider, model)


def test_latency_optimized_moves_away_from_a_provider_that_slows_down(world: Resilient) -> None:
    pair = (HAIKU, "gpt-3.5-turbo")  # the two fastest by the priors, on two providers
    for _ in range(5):  # traffic naming each model teaches the gateway both are fast here
        for model in pair:
            assert world.request(model=model).model == model
    fastest = world.primary("latency_optimized")
    assert fastest in pair
    other = next(model for model in pair if model != fastest)

    world.fakes.add_fault(model=fastest, latency_ms=300)  # its provider slows down
    served = [world.request("latency_optimized") for _ in range(4)]
    assert {answer.fallbacks for answer in served} == {0}
    # The first request meets the slow answer and teaches it; the rest go elsewhere.
    assert [answer.model for answer in served] == [fastest] + [other] * 3
    assert world.primary("latency_optimized") == other
