"""Providers declared in an operator's catalog file, and the start-up errors that name them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from oneflow_ai.catalog import CatalogError, load_catalog
from oneflow_ai.providers.compatible import compatible_spec
from oneflow_ai.settings import Settings, SettingsError, load_settings

MODEL = """
  {id}:
    provider: {provider}
    modality: text
    context_window: 32000
    max_output_tokens: 4096
    tokenizer: cl100k_base
    quality: 0.5
    latency: {{ttft_ms: 300}}
{price}"""
PRICED = '    pricing: {input_per_mtok: "0", output_per_mtok: "0"}\n    price_source: self\n'
SOURCES = "sources:\n  self:\n    url: https://example.com/prices\n"


def catalog_file(
    tmp_path: Path,
    provider: str = "auth: bearer",
    *,
    base_url: str = "http://127.0.0.1:8001/v1/",
    model_provider: str = "vllm",
    price: str = PRICED,
) -> Path:
    text = (
        SOURCES
        + f"providers:\n  vllm:\n    base_url: {base_url}\n    {provider}\n"
        + "models:"
        + MODEL.format(id="qwen-7b", provider=model_provider, price=price)
    )
    path = tmp_path / "catalog.yaml"
    path.write_text(text)
    return path


def test_a_declared_provider_and_its_models_load(tmp_path: Path) -> None:
    path = catalog_file(
        tmp_path, "auth: api-key\n    query: {api-version: '2024-10-21'}\n    read_timeout: 90"
    )
    catalog = load_catalog(path)
    (entry,) = catalog.providers.values()
    assert (entry.name, entry.api, entry.auth) == ("vllm", "openai", "api-key")
    assert entry.base_url == "http://127.0.0.1:8001/v1"
    assert entry.query == {"api-version": "2024-10-21"} and entry.read_timeout == 90
    model = catalog.get("qwen-7b")
    assert model.provider == "vllm" and model.pricing is not None
    assert model.pricing.input_per_mtok == 0  # zero is a price, given explicitly
    assert "gpt-4o" in catalog  # the packaged models stay


@pytest.mark.parametrize(
    ("provider", "options", "message"),
    [
        (
            "auth: basic",
            {},
            "catalog provider 'vllm': auth: Input should be 'bearer', 'api-key' or 'none'",
        ),
        ("headers: {}", {}, "catalog provider 'vllm': auth: Field required"),
        (
            "auth: none",
            {"base_url": "localhost:11434"},
            "catalog provider 'vllm': base_url: must be an http:// or https:// URL",
        ),
        (
            "auth: bearer\n    headers: {Authorization: Bearer sk-1}",
            {},
            "catalog provider 'vllm': headers.Authorization: credentials do not belong",
        ),
        (
            "auth: none",
            {"price": ""},
            "catalog entry 'qwen-7b': pricing: required for a model of provider 'vllm' "
            '(input_per_mtok and output_per_mtok, "0" allowed; or free: true)',
        ),
        (
            "auth: none\n    chat_path: /openai/deployments/{model}/chat/completions",
            {},
            "catalog provider 'vllm': chat_path: the only placeholder is {deployment}",
        ),
        (
            "auth: none\n    chat_path: chat/completions",
            {},
            "catalog provider 'vllm': chat_path: must be a path starting with /",
        ),
        (
            "auth: none",
            {"model_provider": "vlm"},
            "catalog entry 'qwen-7b': provider: 'vlm' is neither built in",
        ),
    ],
)
def test_a_bad_entry_stops_start_up_naming_it(
    tmp_path: Path, provider: str, options: dict[str, str], message: str
) -> None:
    path = catalog_file(tmp_path, provider, **options)
    with pytest.raises(CatalogError) as caught:
        load_catalog(path)
    assert str(caught.value).startswith(message)
    with pytest.raises(SettingsError) as stopped:
        load_settings(_env_file=None, catalog_path=str(path))
    assert str(stopped.value).startswith(f"invalid setting CATALOG_PATH: {message}")


def test_a_declared_provider_serves_chat_and_embedding_models_only(tmp_path: Path) -> None:
    path = tmp_path / "catalog.yaml"
    path.write_text(
        "providers:\n  vllm:\n    base_url: http://127.0.0.1:8001/v1\n    auth: none\n"
        "models:\n  flux:\n    provider: vllm\n    modality: image\n    quality: 0.5\n"
        "    latency: {ttft_ms: 900}\n    free: true\n"
    )
    with pytest.raises(CatalogError) as caught:
        load_catalog(path)
    assert str(caught.value) == (
        "catalog entry 'flux': modality: provider 'vllm' serves chat (text) and embedding "
        "models only"
    )
    path.write_text(
        "providers:\n  vllm:\n    base_url: http://127.0.0.1:8001/v1\n    auth: none\n"
        "models:\n  bge:\n    provider: vllm\n    modality: embedding\n    quality: 0.5\n"
        "    latency: {ttft_ms: 90}\n    free: true\n    context_window: 512\n"
        "    tokenizer: cl100k_base\n    dimensions: 1024\n"
    )
    entry = load_catalog(path).get("bge")
    assert (entry.modality, entry.dimensions, entry.reducible_dimensions) == (
        "embedding",
        1024,
        False,
    )


def test_a_built_in_name_cannot_be_declared_again(tmp_path: Path) -> None:
    path = tmp_path / "catalog.yaml"
    path.write_text("providers:\n  openai:\n    base_url: https://x.example/v1\n    auth: bearer\n")
    with pytest.raises(
        CatalogError, match="catalog provider 'openai': name: 'openai' is a built-in"
    ):
        load_catalog(path)


@pytest.mark.parametrize(
    ("auth", "credentials"),
    [
        ("bearer", {"Authorization": "Bearer k-123"}),
        ("api-key", {"api-key": "k-123"}),
        ("none", {}),
    ],
)
def test_each_auth_style_sends_its_own_header(
    tmp_path: Path, auth: str, credentials: dict[str, str]
) -> None:
    catalog = load_catalog(catalog_file(tmp_path, f"auth: {auth}\n    headers: {{x-extra: '1'}}"))
    spec = compatible_spec(catalog.providers["vllm"])
    settings = Settings(_env_file=None, provider_api_keys={"vllm": "k-123"})  # type: ignore[call-arg]
    connection = spec.connection(settings)
    assert connection is not None and connection.base_url == "http://127.0.0.1:8001/v1"
    key = connection.api_key.get_secret_value() if connection.api_key is not None else ""
    assert spec.headers(key) == {
        "Content-Type": "application/json",
        "Accept": "application/json",
        **credentials,
        "x-extra": "1",
    }


def test_a_provider_whose_auth_takes_a_key_is_not_started_without_one(tmp_path: Path) -> None:
    catalog = load_catalog(catalog_file(tmp_path, "auth: bearer"))
    spec = compatible_spec(catalog.providers["vllm"])
    assert spec.connection(Settings(_env_file=None)) is None  # type: ignore[call-arg]


def test_provider_keys_are_secrets(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, provider_api_keys={"vllm": "k-very-secret"})  # type: ignore[call-arg]
    assert "k-very-secret" not in repr(settings)
    assert "k-very-secret" in settings.secret_values  # scrubbed from logs


def test_the_documented_example_loads(tmp_path: Path) -> None:
    text = (Path(__file__).parents[2] / "docs" / "configuration.md").read_text()
    (example,) = re.findall(r"```yaml\n(.*?)```", text, re.DOTALL)
    path = tmp_path / "catalog.yaml"
    path.write_text(example)
    catalog = load_catalog(path)
    assert sorted(catalog.providers) == ["azure", "ollama"]
    assert catalog.providers["azure"].query == {"api-version": "2024-10-21"}
    assert catalog.get("azure-gpt-4o").provider == "azure" and catalog.get("llama3.2").free
