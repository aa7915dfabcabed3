"""Today's models in the packaged catalog: each with its limits, token-class prices and source,
and each answered by the fake provider of its vendor."""

from __future__ import annotations

from decimal import Decimal

import pytest

from oneflow_ai.catalog import packaged_catalog
from oneflow_fakes.models import ANTHROPIC_MODELS, OPENAI_CHAT_MODELS

CATALOG = packaged_catalog()
TEXT = [m for m in CATALOG.models if m.modality == "text"]

# (model, input, cached input / cache read, 5m write, 1h write, output), USD per MTok.
CURRENT = [
    ("gpt-4o-mini", "0.15", "0.075", None, None, "0.60"),
    ("gpt-4.1", "2.00", "0.50", None, None, "8.00"),
    ("gpt-4.1-mini", "0.40", "0.10", None, None, "1.60"),
    ("gpt-4.1-nano", "0.10", "0.025", None, None, "0.40"),
    ("o3", "2.00", "0.50", None, None, "8.00"),
    ("o4-mini", "1.10", "0.275", None, None, "4.40"),
    ("gpt-5", "1.25", "0.125", None, None, "10.00"),
    ("gpt-5-mini", "0.25", "0.025", None, None, "2.00"),
    ("gpt-5-nano", "0.05", "0.005", None, None, "0.40"),
    ("gpt-5.4", "2.50", "0.25", None, None, "15.00"),
    ("gpt-5.4-mini", "0.75", "0.075", None, None, "4.50"),
    ("claude-opus-5-5", "4.00", "0.20", "5.00", "8.00", "20.00"),
    ("claude-sonnet-5-5", "2.00", "0.10", "2.50", "4.00", "10.00"),
    ("claude-haiku-5-5", "0.10", "0.01", "0.125", "0.20", "0.50"),
    ("claude-opus-5", "5.00", "0.50", "6.25", "10.00", "25.00"),
    ("claude-opus-4-5", "5.00", "0.50", "6.25", "10.00", "25.00"),
    ("claude-sonnet-4-5", "3.00", "0.30", "3.75", "6.00", "15.00"),
    ("claude-haiku-4-5", "1.00", "0.10", "1.25", "2.00", "5.00"),
]


def _price(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


@pytest.mark.parametrize(("model", "inp", "cached", "w5", "w1", "out"), CURRENT)
def test_current_model_prices(
    model: str, inp: str, cached: str, w5: str | None, w1: str | None, out: str
) -> None:
    entry = CATALOG.get(model)
    assert entry.pricing is not None and entry.modality == "text"
    pricing = entry.pricing
    assert (pricing.input_per_mtok, pricing.cached_input_per_mtok, pricing.output_per_mtok) == (
        Decimal(inp),
        Decimal(cached),
        Decimal(out),
    )
    assert pricing.cache_write_5m_per_mtok == _price(w5)
    assert pricing.cache_write_1h_per_mtok == _price(w1)
    assert entry.image_input
    assert entry.prices_as_of is not None
    assert entry.price_source in CATALOG.sources


def test_seed_prices_stay_and_the_seed_rows_keep_their_source() -> None:
    for model, inp, out in [("gpt-4o", "2.50", "10.00"), ("claude-3-haiku", "0.25", "1.25")]:
        entry = CATALOG.get(model)
        assert entry.pricing is not None and entry.price_source == "seed"
        assert (entry.pricing.input_per_mtok, entry.pricing.output_per_mtok) == (
            Decimal(inp),
            Decimal(out),
        )


@pytest.mark.parametrize(
    ("alias", "model_id"),
    [
        ("claude-sonnet-4-5", "claude-sonnet-4-5-20250929"),
        ("claude-haiku-4-5", "claude-haiku-4-5-20251001"),
        ("claude-opus-4-5", "claude-opus-4-5-20251101"),
        ("gpt-4.1-2025-04-14", "gpt-4.1"),
        ("o3-2025-04-16", "o3"),
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
    ],
)
def test_documented_aliases(alias: str, model_id: str) -> None:
    assert CATALOG.get(alias).id == model_id


def test_reasoning_models_are_marked() -> None:
    reasoning = {m.id for m in TEXT if m.reasoning}
    assert {"o3", "o4-mini", "gpt-5", "claude-sonnet-4-5-20250929"} <= reasoning
    assert not {"gpt-4o", "gpt-4.1", "claude-3-opus-20240229"} & reasoning


def test_unverified_prices_are_marked_and_banded_models_capped() -> None:
    unverified = {m.id for m in TEXT if not m.price_verified}
    assert "gpt-4.1" in unverified and "claude-haiku-5-5" in unverified
    assert "claude-opus-5" not in unverified
    # Prices of the first band only: the context window keeps requests inside it.
    assert CATALOG.get("claude-haiku-5-5").context_window == 100_000
    assert CATALOG.get("gpt-5.4").context_window == 272_000


@pytest.mark.parametrize("entry", TEXT, ids=lambda e: e.id)
def test_every_catalog_text_model_is_served_by_its_fake(entry: object) -> None:
    from oneflow_ai.catalog import ModelEntry

    assert isinstance(entry, ModelEntry)
    table = OPENAI_CHAT_MODELS if entry.provider == "openai" else ANTHROPIC_MODELS
    served = table.get(entry.id)  # the gateway calls a model by its catalog id
    assert served is not None, entry.id
    assert served.max_output >= (entry.max_output_tokens or 0)


def test_automatic_routing_ranks_only_auto_route_models_and_serves_named_ones(
    tmp_path: object,
) -> None:
    from pathlib import Path

    from oneflow_ai import IntelligentRouter, PricingEngine
    from oneflow_ai.catalog import load_catalog

    router = IntelligentRouter(PricingEngine(), max_fallbacks=30)
    seed = {m.id for m in TEXT if m.price_source == "seed"}
    auto = router.route(input_tokens=100, output_tokens=10, strategy="cost_optimized")
    assert {auto.primary_model, *auto.fallback_chain} == seed
    named = router.route(input_tokens=100, output_tokens=10, model="claude-sonnet-4-5")
    assert named.primary_model == "claude-sonnet-4-5-20250929"
    assert set(named.fallback_chain) <= seed
    assert isinstance(tmp_path, Path)
    override = tmp_path / "ops.yaml"
    override.write_text("models:\n  gpt-5-nano: {auto_route: true}\n")
    opened = IntelligentRouter(PricingEngine(load_catalog(override)))
    assert opened.route(
        input_tokens=1500, output_tokens=500, strategy="cost_optimized"
    ).primary_model == ("gpt-5-nano")
