"""IntelligentRouter on the packaged catalog: strategies, filters, chains, circuits."""

from __future__ import annotations

import math
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oneflow_ai.billing import PricingEngine
from oneflow_ai.catalog import load_catalog, packaged_catalog, parse_catalog
from oneflow_ai.errors import (
    BadRequestError,
    NotFoundError,
    PermissionDeniedError,
    ServiceUnavailableError,
)
from oneflow_ai.routing import BalancedWeights, IntelligentRouter, RoutingStrategy

ENGINE = PricingEngine()
HAIKU = "claude-3-haiku-20240307"
SONNET = "claude-3-sonnet-20240229"
OPUS = "claude-3-opus-20240229"


def test_the_seed_example_runs_as_written() -> None:
    from oneflow_ai import IntelligentRouter, PricingEngine, RoutingStrategy

    engine = PricingEngine()
    router = IntelligentRouter(engine)
    decision = router.route(
        input_tokens=1500,
        output_tokens=500,
        strategy=RoutingStrategy.COST_OPTIMIZED,
        modality="text",
    )
    assert f"Primary model: {decision.primary_model}" == f"Primary model: {HAIKU}"
    assert f"Estimated cost: {decision.estimated_credits} credits" == (
        "Estimated cost: 0.100000 credits"
    )
    assert f"Fallback chain: {decision.fallback_chain}" == (
        "Fallback chain: ['gpt-3.5-turbo', 'gpt-4o', 'claude-3-sonnet-20240229']"
    )


# For 1,500 input and 500 output tokens, the packaged catalog gives (credits = 100 x USD):
#
#   model            in/out USD per MTok  credits  latency ms (ttft + ms/token x 500)  quality
#   claude-3-haiku   0.25 / 1.25          0.100      400 +  8 x 500 =  4,400           0.70
#   gpt-3.5-turbo    0.50 / 1.50          0.150      350 + 12 x 500 =  6,350           0.65
#   gpt-4o           2.50 / 10.00         0.875      450 + 12 x 500 =  6,450           0.90
#   claude-3-sonnet  3.00 / 15.00         1.200      800 + 16 x 500 =  8,800           0.80
#   gpt-4-turbo      10.00 / 30.00        3.000      700 + 28 x 500 = 14,700           0.86
#   claude-3-opus    15.00 / 75.00        6.000    1,500 + 40 x 500 = 21,500           0.88
#   gpt-4            30.00 / 60.00        7.500      800 + 45 x 500 = 23,300           0.84
#
# Normalized (see routing/strategy.py): cost = 1 - ln(c / 0.1) / ln(75),
# latency = 1 - ln(l / 4400) / ln(23300 / 4400), quality = (q - 0.65) / 0.25:
#
#   gpt-4o  0.4976 0.7705 1.00 -> balanced (equal weights) 0.7560
#   haiku   1.0000 1.0000 0.20 ->                          0.7333
#   3.5     0.9061 0.7799 0.00 ->                          0.5620
#   sonnet  0.4245 0.5841 0.60 ->                          0.5362
#   turbo   0.2122 0.2763 0.84 ->                          0.4428
#   opus    0.0517 0.0482 0.92 ->                          0.3400
#   gpt-4   0.0000 0.0000 0.76 ->                          0.2533
#
# Chains (max 3 fallbacks; another provider preferred among scores within 0.05):
# - cost: haiku, then 3.5 (0.906), gpt-4o (0.498; sonnet's 0.424 is not within 0.05), sonnet.
# - latency: haiku, then 3.5 (0.780, an OpenAI model after Anthropic's haiku, ahead of
#   gpt-4o's 0.771 anyway), gpt-4o, sonnet.
# - quality: gpt-4o, then opus (0.92), turbo (0.84), gpt-4 (0.76).
# - balanced: gpt-4o, then haiku (0.733); then 3.5 (0.562) and sonnet (0.536) are within 0.05:
#   3.5 is taken first as it is the best one whose provider differs from haiku's; then sonnet.
STRATEGY_TABLE = [
    (RoutingStrategy.COST_OPTIMIZED, HAIKU, "0.100000", ["gpt-3.5-turbo", "gpt-4o", SONNET]),
    (RoutingStrategy.LATENCY_OPTIMIZED, HAIKU, "0.100000", ["gpt-3.5-turbo", "gpt-4o", SONNET]),
    (RoutingStrategy.QUALITY_OPTIMIZED, "gpt-4o", "0.875000", [OPUS, "gpt-4-turbo", "gpt-4"]),
    (RoutingStrategy.BALANCED, "gpt-4o", "0.875000", [HAIKU, "gpt-3.5-turbo", SONNET]),
]


@pytest.mark.parametrize(("strategy", "primary", "credits", "chain"), STRATEGY_TABLE)
def test_each_strategy_picks_the_expected_models(
    strategy: RoutingStrategy, primary: str, credits: str, chain: list[str]
) -> None:
    decision = IntelligentRouter(ENGINE).route(
        input_tokens=1500, output_tokens=500, strategy=strategy, modality="text"
    )
    assert decision.primary_model == primary
    assert decision.estimated_credits == Decimal(credits)
    assert decision.fallback_chain == chain
    assert decision.chain == [primary, *chain]
    assert decision.strategy is strategy
    assert decision.reason.startswith(f"{strategy.value}: {primary} has the ")
    assert len(decision.scores) == 7 and decision.excluded == ()


def test_the_scores_carry_their_components() -> None:
    decision = IntelligentRouter(ENGINE).route(
        input_tokens=1500, output_tokens=500, strategy="balanced"
    )
    expected = {
        "gpt-4o": (0.4976, 0.7705, 1.0, 0.7560),
        HAIKU: (1.0, 1.0, 0.2, 0.7333),
        "gpt-3.5-turbo": (0.9061, 0.7799, 0.0, 0.5620),
        SONNET: (0.4245, 0.5841, 0.6, 0.5362),
        "gpt-4-turbo": (0.2122, 0.2763, 0.84, 0.4428),
        OPUS: (0.0517, 0.0482, 0.92, 0.3400),
        "gpt-4": (0.0, 0.0, 0.76, 0.2533),
    }
    assert [s.model for s in decision.scores] == list(expected)
    for score in decision.scores:
        cost, latency, quality, total = expected[score.model]
        assert score.cost_score == pytest.approx(cost, abs=1e-4)
        assert score.latency_score == pytest.approx(latency, abs=1e-4)
        assert score.quality_score == pytest.approx(quality, abs=1e-4)
        assert score.score == pytest.approx(total, abs=1e-4)
    top = decision.as_dict()["candidates"][0]  # type: ignore[index]
    assert top["model"] == "gpt-4o" and top["estimated_credits"] == "0.875000"
    assert top["expected_latency_ms"] == 6450.0 and top["circuit_open"] is False


@pytest.mark.parametrize(
    ("weights", "primary"),
    [
        (BalancedWeights(cost=1, latency=0, quality=0), HAIKU),
        (BalancedWeights(cost=0, latency=0, quality=1), "gpt-4o"),
        (BalancedWeights(cost=3, latency=1, quality=1), HAIKU),  # 0.84 vs 0.70 for gpt-4o
    ],
)
def test_balanced_weights_are_configurable(weights: BalancedWeights, primary: str) -> None:
    router = IntelligentRouter(ENGINE, weights=weights)
    decision = router.route(input_tokens=1500, output_tokens=500, strategy="balanced")
    assert decision.primary_model == primary


def test_candidates_must_fit_the_context_window_and_the_maximum_output() -> None:
    router = IntelligentRouter(ENGINE)
    big = router.route(input_tokens=10_000, output_tokens=500, strategy="cost_optimized")
    assert "gpt-4" not in [s.model for s in big.scores]  # 10,500 > 8,192
    assert dict((e.model, e.reason) for e in big.excluded) == {
        "gpt-4": "10500 tokens exceed its context window of 8192"
    }
    bigger = router.route(input_tokens=16_000, output_tokens=500, strategy="cost_optimized")
    assert {e.model for e in bigger.excluded} == {"gpt-4", "gpt-3.5-turbo"}  # 16,385 context
    long_answer = router.route(input_tokens=100, output_tokens=5000, strategy="cost_optimized")
    assert [s.model for s in long_answer.scores] == ["gpt-4o", "gpt-4"]  # max output 16,384 / 8,192
    with pytest.raises(BadRequestError) as caught:
        router.route(input_tokens=190_000, output_tokens=20_000)
    assert caught.value.code == "no_eligible_model"


def test_the_allow_list_limits_candidates_and_accepts_aliases() -> None:
    router = IntelligentRouter(ENGINE)
    decision = router.route(
        input_tokens=1500,
        output_tokens=500,
        strategy="cost_optimized",
        allowed_models={"gpt-4o", "claude-3-sonnet", "dall-e-3", "not-a-model"},
    )
    assert decision.primary_model == "gpt-4o" and decision.fallback_chain == [SONNET]
    assert {e.reason for e in decision.excluded} == {"not allowed for this caller"}
    with pytest.raises(BadRequestError):
        router.route(input_tokens=10, output_tokens=10, allowed_models=set())


def test_other_modalities() -> None:
    router = IntelligentRouter(ENGINE)
    image = router.route(modality="image", strategy="cost_optimized")
    # per default-size image: SDXL 0.002, DALL-E 2 0.020, SD3.5 medium 0.035, ...
    assert image.primary_model == "stable-diffusion-xl-1024-v1-0"
    assert image.estimated_credits == Decimal("0.200000")
    assert image.fallback_chain[0] == "dall-e-2"  # another provider first
    hd_tall = router.route(
        modality="image", strategy="cost_optimized", image_size="1024x1792", image_quality="hd"
    )
    assert "dall-e-2" in {e.model for e in hd_tall.excluded}  # it has no such size
    assert hd_tall.score_of("dall-e-3").credits == Decimal("12.000000")
    audio = router.route(modality="audio", characters=2000)
    assert audio.primary_model == "eleven_multilingual_v2"
    assert audio.estimated_credits == Decimal("20.000000")  # 2 x 0.10 USD
    assert audio.fallback_chain == []
    with pytest.raises(BadRequestError):
        router.route(modality="video")


def test_a_requested_model_is_the_primary_with_fallbacks_by_strategy() -> None:
    router = IntelligentRouter(ENGINE)
    decision = router.route(
        input_tokens=1500, output_tokens=500, strategy="cost_optimized", model="claude-3-opus"
    )
    assert decision.primary_model == OPUS
    assert decision.estimated_credits == Decimal("6.000000")
    assert decision.fallback_chain == [HAIKU, "gpt-3.5-turbo", "gpt-4o"]  # opus' provider first
    assert decision.reason.startswith(f"cost_optimized: {OPUS} was requested")
    with pytest.raises(NotFoundError):
        router.route(model="gpt-9")
    with pytest.raises(PermissionDeniedError):
        router.route(model="gpt-4", allowed_models={"gpt-4o"})
    with pytest.raises(BadRequestError) as caught:
        router.route(model="gpt-4", input_tokens=9000, output_tokens=100)
    assert caught.value.code == "context_length_exceeded"
    with pytest.raises(BadRequestError):
        router.route(model="dall-e-3", modality="text")
    with pytest.raises(BadRequestError):
        router.route(strategy="cheapest")


class Circuits:
    """A breaker-state view for the router: seconds each (provider, model) stays open."""

    def __init__(self, open_models: dict[str, float]) -> None:
        self.open_models = open_models

    def open_for(self, provider: str, model: str | None = None) -> float:
        return self.open_models.get(model or provider, 0.0)


def test_an_open_circuit_is_never_primary_and_sinks_to_the_end() -> None:
    router = IntelligentRouter(ENGINE, circuits=Circuits({HAIKU: 10.0}), max_fallbacks=10)
    decision = router.route(input_tokens=1500, output_tokens=500, strategy="cost_optimized")
    assert decision.primary_model == "gpt-3.5-turbo"
    # the rest by cost (gpt-4o's 0.498 and sonnet's 0.424 are not near-equal), haiku last
    assert decision.fallback_chain == ["gpt-4o", SONNET, "gpt-4-turbo", OPUS, "gpt-4", HAIKU]
    assert decision.score_of(HAIKU).open_for == 10.0
    assert "circuit open, tried last: claude-3-haiku-20240307" in decision.reason
    pinned = router.route(input_tokens=10, output_tokens=10, model=HAIKU)
    assert pinned.primary_model != HAIKU
    assert "the requested claude-3-haiku-20240307 is unavailable" in pinned.reason


def test_every_circuit_open_is_a_503() -> None:
    everything = {m.id: 7.0 for m in packaged_catalog()}
    everything["gpt-4o"] = 3.0
    router = IntelligentRouter(ENGINE, circuits=Circuits(everything))
    with pytest.raises(ServiceUnavailableError) as caught:
        router.route(input_tokens=10, output_tokens=10)
    assert caught.value.retry_after == 3.0 and caught.value.code == "all_circuits_open"


def test_the_chain_spans_providers_when_cut_short() -> None:
    router = IntelligentRouter(ENGINE, max_fallbacks=1)
    decision = router.route(
        input_tokens=1500,
        output_tokens=500,
        strategy="cost_optimized",
        allowed_models={"gpt-3.5-turbo", "gpt-4o", SONNET},
    )
    # by cost alone the one fallback would be gpt-4o, the primary's own provider
    assert decision.primary_model == "gpt-3.5-turbo"
    assert decision.fallback_chain == [SONNET]
    assert IntelligentRouter(ENGINE, max_fallbacks=0).route().fallback_chain == []


def test_near_equal_candidates_alternate_providers() -> None:
    """Three OpenAI models and two Anthropic ones at almost the same price."""
    models = {
        "o1": ("openai", "1.00"),
        "o2": ("openai", "1.01"),
        "o3": ("openai", "1.02"),
        "a1": ("anthropic", "1.03"),
        "a2": ("anthropic", "1.04"),
        "far": ("openai", "50.00"),  # widens the cost range: the others are near-equal
    }
    data = {
        "price_table_version": "test",
        "prices_as_of": "2026-11-26",
        "sources": {"t": {"url": "https://example.com"}},
        "models": {
            name: {
                "provider": provider,
                "modality": "text",
                "context_window": 100_000,
                "max_output_tokens": 4096,
                "tokenizer": "cl100k_base",
                "quality": 0.8,
                "latency": {"ttft_ms": 500, "ms_per_output_token": 10},
                "pricing": {"input_per_mtok": price, "output_per_mtok": price},
                "price_source": "t",
            }
            for name, (provider, price) in models.items()
        },
    }
    engine = PricingEngine(parse_catalog(data))
    decision = IntelligentRouter(engine, max_fallbacks=5).route(
        input_tokens=1000, output_tokens=1000, strategy="cost_optimized"
    )
    assert decision.primary_model == "o1"
    assert decision.fallback_chain == ["a1", "o2", "a2", "o3", "far"]
    strict = IntelligentRouter(engine, max_fallbacks=5, near_equal=0.0).route(
        input_tokens=1000, output_tokens=1000, strategy="cost_optimized"
    )
    assert strict.fallback_chain == ["o2", "o3", "a1", "a2", "far"]


def test_operator_prices_finer_than_a_micro_credit_are_priced_by_the_engine(
    tmp_path: Path,
) -> None:
    override = tmp_path / "prices.yaml"
    override.write_text('models:\n  gpt-4o:\n    pricing: {input_per_mtok: "2.505"}\n')
    engine = PricingEngine(load_catalog(override))
    router = IntelligentRouter(engine)
    for tokens_in in (1, 3, 1001):  # 250.5 micro-credits per token: rounded half to even
        decision = router.route(input_tokens=tokens_in, output_tokens=1, model="gpt-4o")
        assert decision.estimated_credits == engine.estimate("gpt-4o", tokens_in, 1).credits
    assert (
        router.route(input_tokens=1, output_tokens=0, model="gpt-4o").estimated_micro_credits == 250
    )


TEXT_MODELS = [m.id for m in packaged_catalog().by_modality("text")]


@pytest.mark.property
@given(st.integers(0, 100_000), st.integers(0, 4096))
def test_candidate_costs_are_the_engines_exact_estimates(tokens_in: int, tokens_out: int) -> None:
    decision = IntelligentRouter(ENGINE, max_fallbacks=10).route(
        input_tokens=tokens_in, output_tokens=tokens_out, strategy="cost_optimized"
    )
    for score in decision.scores:
        exact = ENGINE.estimate(score.model, tokens_in, tokens_out)
        assert score.credits == exact.credits
        assert score.micro_credits == exact.micro_credits
    assert decision.estimated_credits == decision.scores[0].credits
    costs = [s.micro_credits for s in decision.scores]
    assert costs == sorted(costs)


@pytest.mark.property
@given(
    st.integers(0, 50_000),
    st.integers(0, 4096),
    st.sampled_from(list(RoutingStrategy)),
    st.frozensets(st.sampled_from(TEXT_MODELS), min_size=1),
)
def test_every_decision_is_well_formed(
    tokens_in: int, tokens_out: int, strategy: RoutingStrategy, allowed: frozenset[str]
) -> None:
    try:
        decision = IntelligentRouter(ENGINE, max_fallbacks=10).route(
            input_tokens=tokens_in,
            output_tokens=tokens_out,
            strategy=strategy,
            allowed_models=allowed,
        )
    except BadRequestError:
        return  # nothing allowed fits
    chain = decision.chain
    assert len(chain) == len(set(chain)) == len(decision.scores)
    assert set(chain) <= allowed
    for score in decision.scores:
        for part in (score.cost_score, score.latency_score, score.quality_score, score.score):
            assert 0.0 <= part <= 1.0 and not math.isnan(part)
    best = max(s.score for s in decision.scores)
    assert decision.score_of(decision.primary_model).score == best
