"""The catalog's `routing:` section: deployments, balancing and fallbacks, checked at start-up."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from oneflow_ai.catalog import CatalogError, Deployment, load_catalog
from oneflow_ai.settings import SettingsError, load_settings

PROVIDERS = """
providers:
  openai-eu:
    base_url: https://eu.example.com/v1
    auth: bearer
"""


def write(tmp_path: Path, routing: str) -> Path:
    path = tmp_path / "catalog.yaml"
    path.write_text(PROVIDERS + "routing:\n" + routing)
    return path


def test_deployments_balance_and_fallbacks_load(tmp_path: Path) -> None:
    catalog = load_catalog(
        write(
            tmp_path,
            "  gpt-4o:\n    balance: least_in_flight\n    deployments:\n"
            "      - {provider: openai, weight: 2}\n"
            "      - {provider: openai-eu, model: gpt-4o-eu, weight: 0}\n"
            "    fallbacks: [claude-3-sonnet, gpt-4]\n",
        )
    )
    entry = catalog.get("gpt-4o")
    routing = catalog.routing("gpt-4o")
    assert routing is not None and routing.balance == "least_in_flight"
    assert catalog.deployments(entry) == (
        Deployment(provider="openai", weight=2),
        Deployment(provider="openai-eu", model="gpt-4o-eu", weight=0),
    )
    # Fallbacks by alias resolve to their models, in order.
    assert [m.id for m in catalog.fallbacks(entry)] == ["claude-3-sonnet-20240229", "gpt-4"]
    # A model without routing is its own provider's, with no fallbacks.
    haiku = catalog.get("claude-3-haiku")
    assert catalog.deployments(haiku) == (Deployment(provider="anthropic"),)
    assert catalog.fallbacks(haiku) == ()


@pytest.mark.parametrize(
    ("routing", "message"),
    [
        ("  gpt-5o:\n    fallbacks: [gpt-4]\n", "catalog routing 'gpt-5o': no catalog model"),
        (
            "  gpt-4o:\n    deployments: [{provider: azure-west}]\n",
            "catalog routing 'gpt-4o': deployments.0: provider: 'azure-west' is neither built in",
        ),
        (
            "  gpt-4o:\n    fallbacks: [gpt-4o-mini-x]\n",
            "catalog routing 'gpt-4o': fallbacks: 'gpt-4o-mini-x' is not a catalog model",
        ),
        (
            "  gpt-4o:\n    fallbacks: [dall-e-3]\n",
            "catalog routing 'gpt-4o': fallbacks: 'dall-e-3' is a image model, not text",
        ),
        (
            "  gpt-4o:\n    fallbacks: [gpt-4o]\n",
            "catalog routing 'gpt-4o': fallbacks: 'gpt-4o' is the model itself",
        ),
        (
            "  gpt-4o:\n    deployments: [{provider: openai}, {provider: openai}]\n",
            "catalog routing 'gpt-4o': deployments.1: provider 'openai' with the same model "
            "name is already a deployment",
        ),
        (
            "  gpt-4o:\n    deployments: [{provider: openai, weight: 0}]\n",
            "catalog routing 'gpt-4o': deployments: at least one needs a weight above 0",
        ),
        (
            "  gpt-4o:\n    balance: random\n",
            "catalog routing 'gpt-4o': balance: Input should be 'weighted' or 'least_in_flight'",
        ),
        (
            "  dall-e-3:\n    deployments: [{provider: openai-eu}]\n",
            "catalog routing 'dall-e-3': deployments.0: provider: 'openai-eu' serves chat",
        ),
        (
            "  gpt-4o:\n    fallbacks: [gpt-4]\n  gpt-4o-2024-08-06:\n    fallbacks: [gpt-4]\n",
            "catalog routing 'gpt-4o-2024-08-06': model 'gpt-4o' has another routing entry",
        ),
    ],
)
def test_a_bad_routing_entry_stops_start_up_naming_it(
    tmp_path: Path, routing: str, message: str
) -> None:
    path = write(tmp_path, routing)
    with pytest.raises(CatalogError) as caught:
        load_catalog(path)
    text = str(caught.value)
    assert "\n" not in text
    assert text.startswith(message), text
    with pytest.raises(SettingsError) as stopped:
        load_settings(_env_file=None, catalog_path=str(path))
    assert str(stopped.value).startswith("invalid setting CATALOG_PATH: catalog routing")


def test_the_documented_example_loads(tmp_path: Path) -> None:
    text = (Path(__file__).parents[2] / "docs" / "routing.md").read_text()
    (example,) = re.findall(r"```yaml\n(.*?)```", text, re.DOTALL)
    path = tmp_path / "catalog.yaml"
    path.write_text(example)
    catalog = load_catalog(path)
    deployments = catalog.deployments(catalog.get("gpt-4o"))
    assert [(d.provider, d.upstream_model("gpt-4o"), d.weight) for d in deployments] == [
        ("openai", "gpt-4o", 3),
        ("openai-org2", "gpt-4o", 1),
        ("azure-eastus", "gpt4o-prod", 0),
    ]
