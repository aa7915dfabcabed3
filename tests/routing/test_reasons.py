"""The short reasons an answer's route header carries, as the router and the chain give them."""

from __future__ import annotations

import pytest

from oneflow_ai.billing import PricingEngine
from oneflow_ai.routing import IntelligentRouter, RouteReason, RoutingStrategy
from oneflow_ai.routing.reasons import chosen, fell_back, requested
from tests.routing.test_router import HAIKU, OPUS, Circuits

ENGINE = PricingEngine()


@pytest.mark.parametrize(
    ("strategy", "words"),
    [
        ("cost_optimized", "cheapest"),
        ("latency_optimized", "fastest"),
        ("quality_optimized", "highest quality"),
        ("balanced", "best balanced score"),
    ],
)
def test_the_router_says_why_in_a_few_words(strategy: str, words: str) -> None:
    decision = IntelligentRouter(ENGINE).route(
        input_tokens=1500, output_tokens=500, strategy=strategy
    )
    eligible = len(decision.scores)
    assert eligible == 7
    assert decision.summary == RouteReason(
        strategy, f"{words} of 7 eligible", f"{strategy}: {words} of 7 eligible"
    )
    assert decision.as_dict()["summary"] == f"{strategy}: {words} of 7 eligible"


def test_a_requested_model_and_open_circuits_in_the_reason() -> None:
    router = IntelligentRouter(ENGINE, circuits=Circuits({HAIKU: 10.0}))
    pinned = router.route(input_tokens=10, output_tokens=10, model=OPUS, strategy="balanced")
    assert pinned.summary is not None and pinned.summary.text == f"model: {OPUS} requested"
    moved = router.route(input_tokens=10, output_tokens=10, model=HAIKU, strategy="cost_optimized")
    assert moved.summary is not None
    assert moved.summary.text == (
        f"cost_optimized: {HAIKU} unavailable (circuit open), cheapest of 7 eligible, "
        "1 with circuit open"
    )
    only = router.route(modality="audio", characters=10, strategy="cost_optimized")
    assert only.summary is not None and only.summary.text == "cost_optimized: only eligible model"


def test_a_requested_models_reason_is_made_once() -> None:
    assert requested("gpt-4o") is requested("gpt-4o")
    assert requested("gpt-4o").text == "model: gpt-4o requested"


def test_a_fallback_names_each_model_passed_and_why() -> None:
    reason = fell_back([("gpt-4o", "overloaded"), ("claude-3-opus", None)], "gpt-3.5-turbo")
    assert reason.strategy == "fallback"
    assert str(reason) == (
        "fallback: gpt-4o failed (overloaded), claude-3-opus skipped (circuit open), "
        "answered by gpt-3.5-turbo"
    )


def test_the_text_is_printable_ascii_whatever_the_model_is_called() -> None:
    reason = chosen(RoutingStrategy.COST_OPTIMIZED, eligible=2, primary="x", pinned="modèle\r\nX")
    assert reason.text.isascii() and reason.text.isprintable()
    assert reason.text.startswith("cost_optimized: mod?le??X unavailable")
    assert requested("日本").text == "model: ?? requested"
