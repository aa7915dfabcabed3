"""`from oneflow_ai import PricingEngine` works and `import oneflow_ai` stays light."""

import subprocess
import sys

import pytest

import oneflow_ai
from oneflow_ai import billing
from oneflow_ai.billing.pricing import PricingEngine


def test_pricing_engine_is_exported_from_the_package() -> None:
    from oneflow_ai import PricingEngine as Exported

    assert Exported is PricingEngine
    assert "PricingEngine" in oneflow_ai.__all__


def test_billing_exports() -> None:
    assert set(billing.__all__) == {
        "Cost",
        "LineItem",
        "LineKind",
        "PricingEngine",
        "PricingError",
        "TokenCount",
        "TokenCountError",
        "TokenCounter",
        "UnpricedModelError",
        "count_tokens",
    }


def test_importing_the_package_does_not_load_pricing() -> None:
    code = (
        "import sys, oneflow_ai; "
        "print(any(m in sys.modules for m in ('pydantic', 'yaml', 'tiktoken', "
        "'oneflow_ai.billing')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


def test_unknown_attribute() -> None:
    with pytest.raises(AttributeError, match="NoSuchThing"):
        getattr(oneflow_ai, "NoSuchThing")
