"""The catalog shipped in the package: the seed's price table and the other modalities."""

from datetime import date
from decimal import Decimal

import pytest

from oneflow_ai.catalog import Catalog, UnknownModelError, packaged_catalog

# The seed's pricing table, USD per 1M input / output tokens.
SEED_TABLE = [
    ("gpt-4o", "2.50", "10.00"),
    ("gpt-4-turbo", "10.00", "30.00"),
    ("gpt-4", "30.00", "60.00"),
    ("gpt-3.5-turbo", "0.50", "1.50"),
    ("claude-3-opus-20240229", "15.00", "75.00"),
    ("claude-3-sonnet-20240229", "3.00", "15.00"),
    ("claude-3-haiku-20240307", "0.25", "1.25"),
]


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return packaged_catalog()


def test_header(catalog: Catalog) -> None:
    assert catalog.price_table_version
    assert isinstance(catalog.prices_as_of, date)
    assert catalog.sources["seed"].url.startswith("https://")


@pytest.mark.parametrize(("model", "input_price", "output_price"), SEED_TABLE)
def test_seed_table_row(catalog: Catalog, model: str, input_price: str, output_price: str) -> None:
    entry = catalog.get(model)
    assert entry.modality == "text"
    assert entry.pricing is not None
    assert entry.pricing.input_per_mtok == Decimal(input_price)
    assert entry.pricing.output_per_mtok == Decimal(output_price)
    assert entry.price_source == "seed"


@pytest.mark.parametrize(
    ("alias", "model_id"),
    [
        ("claude-3-opus", "claude-3-opus-20240229"),
        ("claude-3-sonnet", "claude-3-sonnet-20240229"),
        ("claude-3-haiku", "claude-3-haiku-20240307"),
        ("gpt-4-0613", "gpt-4"),
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("gpt-4-turbo-2024-04-09", "gpt-4-turbo"),
        ("gpt-3.5-turbo-0125", "gpt-3.5-turbo"),
        ("sdxl", "stable-diffusion-xl-1024-v1-0"),
    ],
)
def test_aliases_resolve_to_the_model(catalog: Catalog, alias: str, model_id: str) -> None:
    assert catalog.get(alias).id == model_id
    assert alias in catalog


@pytest.mark.parametrize(
    ("model", "tokenizer"),
    [
        ("gpt-4o", "o200k_base"),
        ("gpt-4-turbo", "cl100k_base"),
        ("gpt-4", "cl100k_base"),
        ("gpt-3.5-turbo", "cl100k_base"),
        ("claude-3-opus", "claude_approx"),
        ("claude-3-sonnet", "claude_approx"),
        ("claude-3-haiku", "claude_approx"),
    ],
)
def test_tokenizer_per_text_model(catalog: Catalog, model: str, tokenizer: str) -> None:
    assert catalog.get(model).tokenizer == tokenizer


def test_gpt_4o_2024_05_13_is_not_an_alias_because_its_price_differs(catalog: Catalog) -> None:
    assert catalog.find("gpt-4o-2024-05-13") is None


@pytest.mark.parametrize(
    ("size", "quality", "usd"),
    [
        ("1024x1024", "standard", "0.040"),
        ("1024x1792", "standard", "0.080"),
        ("1792x1024", "standard", "0.080"),
        ("1024x1024", "hd", "0.080"),
        ("1024x1792", "hd", "0.120"),
        ("1792x1024", "hd", "0.120"),
        (None, None, "0.040"),
        (None, "hd", "0.080"),
    ],
)
def test_dall_e_3_prices(catalog: Catalog, size: str | None, quality: str | None, usd: str) -> None:
    pricing = catalog.get("dall-e-3").pricing
    assert pricing is not None
    row = pricing.image_price(size, quality)
    assert row is not None
    assert row.usd == Decimal(usd)


@pytest.mark.parametrize(
    ("size", "usd"), [("256x256", "0.016"), ("512x512", "0.018"), ("1024x1024", "0.020")]
)
def test_dall_e_2_prices(catalog: Catalog, size: str, usd: str) -> None:
    pricing = catalog.get("dall-e-2").pricing
    assert pricing is not None
    row = pricing.image_price(size, None)
    assert row is not None and row.usd == Decimal(usd)


def test_unknown_image_size_has_no_price(catalog: Catalog) -> None:
    pricing = catalog.get("dall-e-3").pricing
    assert pricing is not None
    assert pricing.image_price("512x512", "standard") is None
    assert pricing.max_image_usd() == Decimal("0.120")


@pytest.mark.parametrize(
    ("model", "usd"),
    [
        ("stable-diffusion-xl-1024-v1-0", "0.002"),
        ("sd3.5-large", "0.065"),
        ("sd3.5-large-turbo", "0.040"),
        ("sd3.5-medium", "0.035"),
    ],
)
def test_stability_flat_prices(catalog: Catalog, model: str, usd: str) -> None:
    entry = catalog.get(model)
    assert entry.provider == "stability"
    assert entry.pricing is not None
    row = entry.pricing.image_price("1024x1024", None)
    assert row is not None and row.usd == Decimal(usd)


def test_elevenlabs_price_per_1k_characters(catalog: Catalog) -> None:
    entry = catalog.get("eleven_multilingual_v2")
    assert (entry.provider, entry.modality) == ("elevenlabs", "audio")
    assert entry.pricing is not None
    assert entry.pricing.per_1k_characters == Decimal("0.10")
    assert entry.price_source == "elevenlabs-pricing"


def test_every_provider_and_modality_is_present(catalog: Catalog) -> None:
    assert {m.provider for m in catalog} == {"openai", "anthropic", "stability", "elevenlabs"}
    assert len(catalog.by_modality("text")) == 7 + 18  # the seed's seven and today's models
    assert len(catalog.by_modality("image")) == 6
    assert len(catalog.by_modality("audio")) == 1


def test_every_packaged_model_is_priced_with_a_named_source(catalog: Catalog) -> None:
    assert catalog.unpriced() == ()
    for entry in catalog:
        assert entry.price_source in catalog.sources, entry.id
        assert 0 <= entry.quality <= 1
        assert entry.latency.ttft_ms > 0


def test_latency_prior_estimates_a_response(catalog: Catalog) -> None:
    latency = catalog.get("gpt-4o").latency
    assert latency.expected_ms(100) == latency.ttft_ms + 100 * latency.ms_per_output_token


def test_text_models_fit_output_in_context(catalog: Catalog) -> None:
    for entry in catalog.by_modality("text"):
        assert entry.context_window is not None and entry.max_output_tokens is not None
        assert entry.max_output_tokens <= entry.context_window


def test_unknown_model(catalog: Catalog) -> None:
    assert catalog.find("gpt-5-imaginary") is None
    with pytest.raises(UnknownModelError, match="gpt-5-imaginary"):
        catalog.get("gpt-5-imaginary")


def test_entries_are_frozen(catalog: Catalog) -> None:
    entry = catalog.get("gpt-4")
    with pytest.raises(ValueError):
        entry.quality = 1.0  # type: ignore[misc]


def test_closest_names_catalog_ids(catalog: Catalog) -> None:
    assert catalog.closest("gpt-4oo")[0] == "gpt-4o"
    assert catalog.closest("claude-3-haiku")[0] == "claude-3-haiku-20240307"  # via its alias
    assert len(catalog.closest("gpt-5", limit=2)) == 2
    assert catalog.closest("nothing-like-it") == []
