"""An engine over a one-model catalog with an operator's own text prices (model ``m``)."""

from __future__ import annotations

from decimal import Decimal

from oneflow_ai.billing import PricingEngine
from oneflow_ai.catalog import parse_catalog
from tests.catalog.test_catalog_validation import catalog_data, entry


def operator_engine(
    input_price: Decimal | str, output_price: Decimal | str, **classes: Decimal | str
) -> PricingEngine:
    """``classes``: prices of the prompt-cache classes (``cached_input_per_mtok`` ...)."""
    pricing = {
        "input_per_mtok": str(input_price),
        "output_per_mtok": str(output_price),
        **{name: str(price) for name, price in classes.items()},
    }
    return PricingEngine(parse_catalog(catalog_data(m=entry(pricing=pricing))))
