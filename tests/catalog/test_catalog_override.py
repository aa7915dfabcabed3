"""Operators override or add models and prices with a YAML file, without code changes."""

import hashlib
from decimal import Decimal
from pathlib import Path

import pytest

from oneflow_ai.catalog import load_catalog, merge_catalog_data, packaged_catalog


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "override.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_no_override_is_the_packaged_catalog() -> None:
    assert load_catalog() is packaged_catalog()


def test_override_changes_one_price_and_keeps_the_rest(tmp_path: Path) -> None:
    path = write(tmp_path, 'models:\n  gpt-4o:\n    pricing:\n      input_per_mtok: "2.00"\n')
    catalog = load_catalog(path)
    gpt_4o = catalog.get("gpt-4o")
    assert gpt_4o.pricing is not None
    assert gpt_4o.pricing.input_per_mtok == Decimal("2.00")
    assert gpt_4o.pricing.output_per_mtok == Decimal("10.00")  # merged, not replaced
    assert gpt_4o.aliases == packaged_catalog().get("gpt-4o").aliases
    assert catalog.get("gpt-4") == packaged_catalog().get("gpt-4")
    # the packaged catalog is untouched
    packaged = packaged_catalog().get("gpt-4o").pricing
    assert packaged is not None and packaged.input_per_mtok == Decimal("2.50")


def test_override_version_names_the_file_by_hash(tmp_path: Path) -> None:
    path = write(tmp_path, "models:\n  gpt-4:\n    quality: 0.5\n")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    catalog = load_catalog(path)
    assert catalog.price_table_version == (
        f"{packaged_catalog().price_table_version}+override.{digest}"
    )


def test_override_may_set_its_own_version_and_date(tmp_path: Path) -> None:
    path = write(tmp_path, 'price_table_version: "acme-7"\nprices_as_of: 2027-01-01\n')
    catalog = load_catalog(path)
    assert catalog.price_table_version == "acme-7"
    assert str(catalog.prices_as_of) == "2027-01-01"


def test_override_adds_a_model_with_its_source(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
sources:
  acme:
    url: https://acme.example/prices
models:
  acme-llm:
    provider: openai
    modality: text
    aliases: [acme]
    context_window: 32000
    max_output_tokens: 4000
    tokenizer: cl100k_base
    quality: 0.6
    latency: {ttft_ms: 300, ms_per_output_token: 10}
    pricing: {input_per_mtok: "0.10", output_per_mtok: "0.20"}
    price_source: acme
  local-free:
    provider: openai
    modality: text
    context_window: 4096
    max_output_tokens: 1024
    tokenizer: o200k_base
    quality: 0.3
    latency: {ttft_ms: 50}
    free: true
""",
    )
    catalog = load_catalog(path)
    assert catalog.get("acme").id == "acme-llm"
    assert catalog.get("local-free").free is True
    assert catalog.get("local-free").is_priced
    assert len(catalog) == len(packaged_catalog()) + 2
    assert "seed" in catalog.sources and "acme" in catalog.sources


def test_model_without_price_is_kept_but_detectable(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
models:
  mystery:
    provider: anthropic
    modality: text
    context_window: 1000
    max_output_tokens: 100
    tokenizer: claude_approx
    quality: 0.1
    latency: {ttft_ms: 10}
""",
    )
    catalog = load_catalog(path)
    assert catalog.get("mystery").is_priced is False
    assert [m.id for m in catalog.unpriced()] == ["mystery"]


def test_override_can_disable_a_model(tmp_path: Path) -> None:
    catalog = load_catalog(write(tmp_path, "models:\n  dall-e-2:\n    enabled: false\n"))
    assert catalog.find("dall-e-2") is None
    assert "dall-e-2" not in [m.id for m in catalog.by_modality("image")]
    assert any(m.id == "dall-e-2" for m in catalog.models)


def test_override_replaces_lists_whole(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
models:
  dall-e-2:
    pricing:
      per_image:
        - {size: 1024x1024, usd: "0.018"}
""",
    )
    pricing = load_catalog(path).get("dall-e-2").pricing
    assert pricing is not None
    assert len(pricing.per_image) == 1
    assert pricing.image_price("256x256", None) is None


def test_empty_override_file_keeps_everything(tmp_path: Path) -> None:
    catalog = load_catalog(write(tmp_path, ""))
    assert [m.id for m in catalog] == [m.id for m in packaged_catalog()]


@pytest.mark.parametrize(
    ("base", "override", "merged"),
    [
        ({"a": {"b": 1, "c": 2}}, {"a": {"b": 3}}, {"a": {"b": 3, "c": 2}}),
        ({"a": [1, 2]}, {"a": [3]}, {"a": [3]}),
        ({"a": 1}, {"b": 2}, {"a": 1, "b": 2}),
        ({"a": {"b": 1}}, {"a": None}, {"a": None}),
    ],
)
def test_merge_rule(
    base: dict[str, object], override: dict[str, object], merged: dict[str, object]
) -> None:
    assert merge_catalog_data(base, override) == merged
