"""A malformed catalog raises one CatalogError naming the entry and the field."""

import copy
from pathlib import Path

import pytest
import yaml

from oneflow_ai.catalog import CatalogError, load_catalog, parse_catalog

GOOD_ENTRY = {
    "provider": "openai",
    "modality": "text",
    "context_window": 8192,
    "max_output_tokens": 4096,
    "tokenizer": "cl100k_base",
    "quality": 0.5,
    "latency": {"ttft_ms": 100, "ms_per_output_token": 10},
    "pricing": {"input_per_mtok": "1.00", "output_per_mtok": "2.00"},
    "price_source": "test",
}


def catalog_data(**entries: dict[str, object]) -> dict[str, object]:
    return {
        "price_table_version": "test-1",
        "prices_as_of": "2026-01-01",
        "sources": {"test": {"url": "https://example.test/prices"}},
        "models": entries,
    }


def entry(**changes: object) -> dict[str, object]:
    data = copy.deepcopy(GOOD_ENTRY)
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        target: dict[str, object] = data
        for parent in parents:
            target = target[parent]  # type: ignore[assignment]
        if value is DELETE:
            del target[last]
        else:
            target[last] = value
    return data


DELETE = object()


def test_good_entry_parses() -> None:
    catalog = parse_catalog(catalog_data(m=entry()))
    assert catalog.get("m").pricing is not None


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {"pricing__input_per_mtok": 2.5},
            "catalog entry 'gpt-x': pricing.input_per_mtok: must be a decimal string",
        ),
        (
            {"pricing__output_per_mtok": "-1"},
            "catalog entry 'gpt-x': pricing.output_per_mtok: must not be negative",
        ),
        (
            {"pricing__input_per_mtok": "two"},
            "catalog entry 'gpt-x': pricing.input_per_mtok: not a decimal number",
        ),
        (
            {"pricing__input_per_mtok": "NaN"},
            "catalog entry 'gpt-x': pricing.input_per_mtok: money must be finite",
        ),
        (
            {"pricing__input_per_token": "1"},
            "catalog entry 'gpt-x': pricing.input_per_token: Extra",
        ),
        ({"modality": "video"}, "catalog entry 'gpt-x': modality: Input should be"),
        ({"provider": DELETE}, "catalog entry 'gpt-x': provider: Field required"),
        ({"quality": 1.5}, "catalog entry 'gpt-x': quality: Input should be less than or equal"),
        ({"tokenizer": DELETE}, "catalog entry 'gpt-x': tokenizer: required for a text model"),
        ({"tokenizer": "gpt2"}, "catalog entry 'gpt-x': tokenizer: Input should be"),
        (
            {"max_output_tokens": 100_000},
            "catalog entry 'gpt-x': max_output_tokens: larger than context_window",
        ),
        (
            {"pricing__output_per_mtok": DELETE},
            "catalog entry 'gpt-x': pricing.output_per_mtok: required for a text model",
        ),
        (
            {"pricing__per_1k_characters": "0.1"},
            "catalog entry 'gpt-x': pricing.per_1k_characters: not used by a text model",
        ),
        ({"free": True}, "catalog entry 'gpt-x': free: a free model must not also have pricing"),
        ({"price_source": DELETE}, "catalog entry 'gpt-x': price_source: required"),
        (
            {"price_source": "nowhere"},
            "catalog entry 'gpt-x': price_source: 'nowhere' is not in the catalog's sources",
        ),
        ({"aliases": ["gpt-x"]}, "catalog entry 'gpt-x': aliases: repeats the id"),
        ({"latency__ttft_ms": -1}, "catalog entry 'gpt-x': latency.ttft_ms: Input should be"),
        ({"id": "other"}, "catalog entry 'gpt-x': id: differs from the entry's key"),
    ],
)
def test_bad_entry_names_entry_and_field(changes: dict[str, object], expected: str) -> None:
    with pytest.raises(CatalogError) as info:
        parse_catalog(catalog_data(**{"gpt-x": entry(**changes)}))
    assert str(info.value).startswith(expected), str(info.value)


def test_image_model_needs_per_image_rows_and_a_default() -> None:
    image = {
        "provider": "openai",
        "modality": "image",
        "quality": 0.5,
        "latency": {"ttft_ms": 1000},
        "pricing": {"per_image": [{"size": "1024x1024", "usd": "0.04"}]},
        "price_source": "test",
    }
    with pytest.raises(CatalogError, match=r"^catalog entry 'img': pricing.default_image_size"):
        parse_catalog(catalog_data(img=image))
    image["pricing"] = {"per_image": []}
    with pytest.raises(CatalogError, match=r"^catalog entry 'img': pricing.per_image: required"):
        parse_catalog(catalog_data(img=image))
    image["pricing"] = {"per_image": [{"size": "1024x1024", "usd": 0.04}]}
    with pytest.raises(
        CatalogError, match=r"^catalog entry 'img': pricing.per_image.0.usd: must be a decimal"
    ):
        parse_catalog(catalog_data(img=image))


def test_image_model_must_not_have_a_tokenizer() -> None:
    image = {
        "provider": "stability",
        "modality": "image",
        "quality": 0.5,
        "latency": {"ttft_ms": 1000},
        "tokenizer": "cl100k_base",
        "free": True,
    }
    with pytest.raises(CatalogError, match=r"^catalog entry 'img': tokenizer: only text"):
        parse_catalog(catalog_data(img=image))


def test_alias_clash_between_entries_names_the_later_entry() -> None:
    data = catalog_data(a=entry(aliases=["shared"]), b=entry(aliases=["shared"]))
    with pytest.raises(
        CatalogError, match=r"^catalog entry 'b': aliases: 'shared' is already a name of .*'a'"
    ):
        parse_catalog(data)


def test_alias_equal_to_another_id() -> None:
    with pytest.raises(CatalogError, match=r"^catalog entry 'b': aliases: 'a' is already"):
        parse_catalog(catalog_data(a=entry(), b=entry(aliases=["a"])))


@pytest.mark.parametrize(
    ("top", "expected"),
    [
        ({"prices_as_of": "yesterday"}, "prices_as_of: Input should be a valid date"),
        ({"price_table_version": ""}, "price_table_version: String should have at least 1"),
        ({"sources": {"test": {"url": "ftp://x"}}}, "sources.test.url: String should match"),
        ({"currency": "EUR"}, "unknown top-level key 'currency'"),
        ({"models": {}}, "models: must be a non-empty mapping"),
        ({"models": ["gpt-4"]}, "models: must be a non-empty mapping"),
    ],
)
def test_bad_header(top: dict[str, object], expected: str) -> None:
    data = catalog_data(m=entry())
    data.update(top)
    with pytest.raises(CatalogError, match=r"^catalog \(catalog\): ") as info:
        parse_catalog(data)
    assert expected in str(info.value)


def test_entry_that_is_not_a_mapping() -> None:
    with pytest.raises(CatalogError, match=r"^catalog entry 'm': must be a mapping"):
        parse_catalog(catalog_data(m="gpt-4"))  # type: ignore[arg-type]


def test_malformed_yaml_override_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "catalog.yaml"
    path.write_text("models: [unclosed\n", encoding="utf-8")
    with pytest.raises(CatalogError, match=r"catalog .*catalog\.yaml.*not valid YAML"):
        load_catalog(path)


def test_override_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(["gpt-4"]), encoding="utf-8")
    with pytest.raises(CatalogError, match="top level must be a mapping"):
        load_catalog(path)


def test_float_price_in_override_yaml_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "catalog.yaml"
    path.write_text("models:\n  gpt-4o:\n    pricing:\n      input_per_mtok: 2.5\n", "utf-8")
    with pytest.raises(CatalogError) as info:
        load_catalog(path)
    assert str(info.value) == (
        "catalog entry 'gpt-4o': pricing.input_per_mtok: must be a decimal string "
        'such as "2.5", not a float (quote it in YAML)'
    )


def test_missing_override_file(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="cannot read"):
        load_catalog(tmp_path / "absent.yaml")
