"""PricingEngine behaviour beyond the seed: modalities, worst cases, refusals."""

from decimal import Decimal
from pathlib import Path

import pytest

from oneflow_ai.billing import Cost, PricingEngine, PricingError, UnpricedModelError
from oneflow_ai.catalog import UnknownModelError, load_catalog, packaged_catalog
from oneflow_ai.domain.usage import Usage


@pytest.fixture(scope="module")
def engine() -> PricingEngine:
    return PricingEngine()


def test_default_catalog_is_packaged(engine: PricingEngine) -> None:
    assert engine.catalog is packaged_catalog()
    assert engine.price_table_version == packaged_catalog().price_table_version


def test_cost_records_model_id_version_and_line_items(engine: PricingEngine) -> None:
    cost = engine.price("claude-3-haiku", Usage(input_tokens=1_000, output_tokens=3))
    assert cost.model == "claude-3-haiku-20240307"
    assert cost.price_table_version == engine.price_table_version
    assert [item.kind for item in cost.line_items] == ["input", "output"]
    line_in = cost.line("input")
    line_out = cost.line("output")
    assert line_in is not None and line_out is not None
    assert line_in.quantity == 1_000 and line_in.per == 1_000_000
    assert line_in.unit_usd == Decimal("0.25")
    assert line_in.micro_credits == 25_000  # 0.00025 USD
    assert line_out.micro_credits == 375  # 3 * 1.25e-6 USD = 3.75e-6 USD
    assert cost.micro_credits == 25_375
    assert cost.usd == Decimal("0.00025375")
    assert cost.credits == Decimal("0.025375")
    assert cost.line("image") is None


def test_estimated_flag_follows_usage(engine: PricingEngine) -> None:
    assert engine.price("gpt-4o", Usage(input_tokens=1)).estimated is False
    assert engine.price("gpt-4o", Usage(input_tokens=1, estimated=True)).estimated is True
    assert engine.estimate("gpt-4o", 1, 1).estimated is True


@pytest.mark.parametrize(
    ("size", "quality", "images", "usd"),
    [
        (None, None, 1, "0.04"),
        ("1024x1024", "standard", 3, "0.12"),
        ("1792x1024", "hd", 2, "0.24"),
        ("1024x1792", "standard", 1, "0.08"),
    ],
)
def test_dall_e_3(
    engine: PricingEngine, size: str | None, quality: str | None, images: int, usd: str
) -> None:
    cost = engine.price("dall-e-3", Usage(images=images, image_size=size, image_quality=quality))
    assert cost.usd == Decimal(usd)
    assert cost.credits == Decimal(usd) * 100
    assert [item.kind for item in cost.line_items] == ["image"]


def test_stability_and_elevenlabs(engine: PricingEngine) -> None:
    assert engine.price("sd3.5-large", Usage(images=2)).usd == Decimal("0.13")
    assert engine.price("sdxl", Usage(images=1, image_size="1024x1024")).usd == Decimal("0.002")
    speech = engine.price("eleven_multilingual_v2", Usage(characters=1_234))
    assert speech.usd == Decimal("0.1234")  # 1234 chars * 0.10 / 1000
    assert speech.credits == Decimal("12.34")


def test_unknown_image_size_is_refused(engine: PricingEngine) -> None:
    with pytest.raises(PricingError, match="no price for images of size '512x512'"):
        engine.price("dall-e-3", Usage(images=1, image_size="512x512"))


@pytest.mark.parametrize(
    ("model", "usage", "what"),
    [
        ("gpt-4o", Usage(images=1), "images"),
        ("gpt-4o", Usage(characters=10), "characters"),
        ("dall-e-3", Usage(images=1, input_tokens=5), "input_tokens"),
        ("eleven_multilingual_v2", Usage(output_tokens=5), "output_tokens"),
        ("eleven_multilingual_v2", Usage(images=1), "images"),
    ],
)
def test_usage_the_model_does_not_bill_is_refused(
    engine: PricingEngine, model: str, usage: Usage, what: str
) -> None:
    with pytest.raises(PricingError, match=f"has no price for {what}"):
        engine.price(model, usage)


def test_unknown_model(engine: PricingEngine) -> None:
    with pytest.raises(UnknownModelError):
        engine.estimate("gpt-99", 1, 1)


@pytest.mark.parametrize("bad", [1.5, True, "10"])
def test_token_counts_must_be_ints(engine: PricingEngine, bad: object) -> None:
    with pytest.raises(TypeError):
        engine.estimate("gpt-4", bad, 1)  # type: ignore[arg-type]


def test_negative_counts_are_refused(engine: PricingEngine) -> None:
    with pytest.raises(ValueError):
        engine.estimate("gpt-4", -1, 0)
    with pytest.raises(ValueError):
        engine.max_cost("gpt-4", 0, -1)


def test_max_cost_of_text_caps_output_at_the_model_limit(engine: PricingEngine) -> None:
    default = engine.max_cost("gpt-4o", 1_000)
    assert default.estimated is True
    out = default.line("output")
    assert out is not None and out.quantity == 16_384
    capped = engine.max_cost("gpt-4o", 1_000, 1_000_000)
    assert capped == default
    small = engine.max_cost("gpt-4o", 1_000, 100)
    assert small.micro_credits == engine.estimate("gpt-4o", 1_000, 100).micro_credits


def test_max_cost_of_text_is_the_price_of_its_worst_usage() -> None:
    """Each text model's worst case, with and without `max_tokens` (alternating, so that the
    output line kept from one worst case is never reused for another) and with cache writes,
    is what pricing the worst usage gives."""
    engine = PricingEngine()
    for entry in engine.eligible_models("text"):
        limit = entry.max_output_tokens or 0
        for prompt, max_tokens in ((0, None), (1_234, 7), (1_234, None), (5, 10**9), (5, 7)):
            output = limit if max_tokens is None else min(max_tokens, limit or max_tokens)
            worst = Usage(input_tokens=prompt, output_tokens=output, estimated=True)
            expected = engine.price(entry.id, worst)
            assert engine.max_cost(entry.id, prompt, max_tokens) == expected, entry.id
        writes = engine.max_cost(entry.id, 1_000, 7, cache_writes=True)
        assert writes.micro_credits >= engine.max_cost(entry.id, 1_000, 7).micro_credits
    with pytest.raises(TypeError):
        engine.max_cost("gpt-4o", 1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        engine.max_cost("gpt-4o", -1)


def test_max_cost_bounds_the_actual_cost(engine: PricingEngine) -> None:
    reserved = engine.max_cost("gpt-4-turbo", 500, 300)
    for output in (0, 1, 299, 300):
        assert engine.estimate("gpt-4-turbo", 500, output).micro_credits <= reserved.micro_credits


def test_max_cost_of_images_uses_the_dearest_matching_row(engine: PricingEngine) -> None:
    assert engine.max_cost("dall-e-3", images=1).usd == Decimal("0.12")
    assert engine.max_cost("dall-e-3", images=1, image_quality="standard").usd == Decimal("0.08")
    assert engine.max_cost("dall-e-3", images=2, image_size="1024x1024").usd == Decimal("0.16")
    exact = engine.max_cost("dall-e-3", images=1, image_size="1024x1024", image_quality="hd")
    assert exact.usd == Decimal("0.08")
    assert engine.max_cost("dall-e-2", images=1).usd == Decimal("0.02")
    with pytest.raises(PricingError):
        engine.max_cost("dall-e-3", images=1, image_size="64x64")
    with pytest.raises(PricingError, match="has no price for characters"):
        engine.max_cost("dall-e-3", images=1, characters=5)


def test_max_cost_ignores_prompt_tokens_for_image_and_audio(engine: PricingEngine) -> None:
    assert engine.max_cost("sd3.5-medium", 100, images=1).usd == Decimal("0.035")
    speech = engine.max_cost("eleven_multilingual_v2", 100, 50, characters=1000)
    assert speech.usd == Decimal("0.10")


def test_eligible_models_per_modality(engine: PricingEngine) -> None:
    text = [m.id for m in engine.eligible_models("text")]
    assert text[:4] == ["gpt-4o", "gpt-4-turbo", "gpt-4", "gpt-3.5-turbo"]
    assert len(text) == 7 + 18  # the seed's seven and today's models
    assert {m.id for m in engine.eligible_models("audio")} == {"eleven_multilingual_v2"}
    assert len(engine.eligible_models("image")) == 6


def test_price_all_quotes_every_eligible_model(engine: PricingEngine) -> None:
    costs = engine.price_all(Usage(input_tokens=1500, output_tokens=500, estimated=True))
    by_model = {cost.model: cost for cost in costs}
    assert by_model["gpt-4"].credits == Decimal("7.5")
    assert min(costs, key=lambda c: c.micro_credits).model == "gpt-5-nano"
    seed = [cost for cost in costs if engine.catalog.get(cost.model).price_source == "seed"]
    assert min(seed, key=lambda c: c.micro_credits).model == "claude-3-haiku-20240307"
    images = engine.price_all(Usage(images=1), modality="image")
    assert {cost.model for cost in images} == {m.id for m in engine.eligible_models("image")}


def write_override(tmp_path: Path) -> Path:
    path = tmp_path / "catalog.yaml"
    path.write_text(
        """
sources:
  ops: {url: "https://ops.example/prices"}
models:
  gpt-4:
    pricing: {input_per_mtok: "20.00"}
  house-model:
    provider: openai
    modality: text
    context_window: 8000
    max_output_tokens: 1000
    tokenizer: cl100k_base
    quality: 0.4
    latency: {ttft_ms: 100}
    free: true
  unpriced-model:
    provider: anthropic
    modality: text
    context_window: 8000
    max_output_tokens: 1000
    tokenizer: claude_approx
    quality: 0.4
    latency: {ttft_ms: 100}
  odd-price:
    provider: openai
    modality: text
    context_window: 8000
    max_output_tokens: 1000
    tokenizer: cl100k_base
    quality: 0.4
    latency: {ttft_ms: 100}
    pricing: {input_per_mtok: "0.003", output_per_mtok: "0.007"}
    price_source: ops
""",
        encoding="utf-8",
    )
    return path


def test_engine_uses_an_operator_catalog(tmp_path: Path) -> None:
    engine = PricingEngine(load_catalog(write_override(tmp_path)))
    cost = engine.calculate_cost("gpt-4", 1500, 500)
    assert cost.usd == Decimal("0.06")  # 1500 * 20 / 1M + 500 * 60 / 1M
    assert cost.price_table_version.startswith(packaged_catalog().price_table_version + "+")


def test_free_model_costs_nothing(tmp_path: Path) -> None:
    engine = PricingEngine(load_catalog(write_override(tmp_path)))
    cost = engine.estimate("house-model", 10_000, 1_000)
    assert cost.micro_credits == 0 and cost.usd == 0
    assert [item.quantity for item in cost.line_items] == [10_000, 1_000]
    assert "house-model" in {m.id for m in engine.eligible_models("text")}
    with pytest.raises(PricingError, match="has no price for images"):
        engine.price("house-model", Usage(images=1))


def test_unpriced_model_is_refused_and_not_eligible(tmp_path: Path) -> None:
    engine = PricingEngine(load_catalog(write_override(tmp_path)))
    with pytest.raises(UnpricedModelError, match="unpriced-model"):
        engine.estimate("unpriced-model", 1, 1)
    with pytest.raises(UnpricedModelError):
        engine.max_cost("unpriced-model", 1, 1)
    assert "unpriced-model" not in {m.id for m in engine.eligible_models("text")}


def test_sub_micro_credit_prices_round_half_even_per_line(tmp_path: Path) -> None:
    engine = PricingEngine(load_catalog(write_override(tmp_path)))
    # input: 1 token * 0.003 USD / 1M = 3e-9 USD = 0.3 micro-credits -> 0
    # output: 5 tokens * 0.007 / 1M = 3.5e-8 USD = 3.5 micro-credits -> 4 (half to even)
    cost = engine.estimate("odd-price", 1, 5)
    line_in, line_out = cost.line("input"), cost.line("output")
    assert line_in is not None and line_out is not None
    assert (line_in.exact_usd, line_in.micro_credits) == (Decimal("3E-9"), 0)
    assert (line_out.exact_usd, line_out.micro_credits) == (Decimal("3.5E-8"), 4)
    assert cost.micro_credits == 4  # the total is the sum of the rounded lines
    assert engine.estimate("odd-price", 0, 15).micro_credits == 10  # 10.5 -> 10 (even)
    assert engine.estimate("odd-price", 0, 25).micro_credits == 18  # 17.5 -> 18 (even)


def test_cost_is_frozen(engine: PricingEngine) -> None:
    cost: Cost = engine.estimate("gpt-4", 1, 1)
    with pytest.raises(AttributeError):
        cost.model = "x"  # type: ignore[misc]
