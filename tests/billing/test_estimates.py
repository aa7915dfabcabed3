from __future__ import annotations

from decimal import Decimal

import pytest

from oneflow_ai.billing.errors import PricingError
from oneflow_ai.billing.estimates import DEFAULT_OUTPUT_TOKENS, Estimator
from oneflow_ai.billing.pricing import PricingEngine
from oneflow_ai.billing.tokenizer import TokenCounter


@pytest.fixture(scope="module")
def estimator() -> Estimator:
    return Estimator(PricingEngine())


def test_given_tokens_price_every_text_model(estimator: Estimator) -> None:
    results = {e.model: e for e in estimator.estimate(input_tokens=1500, output_tokens=500)}
    assert results["gpt-4"].cost.usd == Decimal("0.075")
    assert results["gpt-4"].cost.credits == Decimal("7.5")
    assert {e.provider for e in results.values()} == {"openai", "anthropic"}
    assert all(e.fits and e.tokens_exact for e in results.values())
    assert len(results) == len(PricingEngine().eligible_models("text"))


def test_a_prompt_is_counted_per_model_as_one_user_message(estimator: Estimator) -> None:
    prompt = "Write a haiku about AI"
    results = {e.model: e for e in estimator.estimate(prompt=prompt)}
    counter = TokenCounter()
    expected = counter.count_messages("gpt-4o", [{"role": "user", "content": prompt}])
    assert results["gpt-4o"].input_tokens == expected.tokens
    assert results["gpt-4o"].tokens_exact
    assert results["gpt-4o"].output_tokens == DEFAULT_OUTPUT_TOKENS
    claude = next(e for e in results.values() if e.provider == "anthropic")
    assert not claude.tokens_exact  # an approximation, flagged


def test_context_window_is_checked(estimator: Estimator) -> None:
    results = {e.model: e for e in estimator.estimate(input_tokens=100_000, output_tokens=1000)}
    assert not results["gpt-4"].fits  # 8K context
    assert results["gpt-4o"].fits  # 128K context


def test_images_and_audio(estimator: Estimator) -> None:
    images = {
        e.model: e
        for e in estimator.estimate(
            modality="image",
            images=1,
            image_size="1024x1024",
            image_quality="standard",
            models=["dall-e-3"],
        )
    }
    assert images["dall-e-3"].cost.usd == Decimal("0.04")
    audio = estimator.estimate(modality="audio", prompt="x" * 1000)
    assert audio[0].characters == 1000
    assert audio[0].cost.usd > 0


def test_nothing_to_count_is_a_clear_error(estimator: Estimator) -> None:
    with pytest.raises(PricingError, match="input_tokens, a prompt or messages"):
        estimator.estimate()
