"""A model past its provider's end of life: checked in the catalog, no longer offered from
its day (a 404 naming the replacement, skipped by routing and fallbacks), still priced."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from tests.catalog.test_catalog_validation import catalog_data, entry
from tests.gateway.test_pipeline import ScriptedChat

from oneflow_ai.billing.pricing import PricingEngine
from oneflow_ai.catalog import CatalogError, parse_catalog
from oneflow_ai.errors import NotFoundError
from oneflow_ai.providers.registry import ProviderRegistry

OLD_DAY = date(2026, 11, 30)


def _catalog(**old: object) -> dict[str, object]:
    fields: dict[str, object] = {"retires_on": "2026-11-30", "replacement": "new", **old}
    return catalog_data(old=entry(**fields), new=entry())


def _registry(today: date) -> ProviderRegistry:
    registry = ProviderRegistry(parse_catalog(_catalog()), today=lambda: today)
    registry.register(ScriptedChat("openai"))
    return registry


def test_before_its_day_the_model_is_offered() -> None:
    registry = _registry(date(2026, 11, 29))
    assert registry.resolve("old").entry.id == "old"
    assert [e.id for e in registry.available("text")] == ["old", "new"]


def test_from_its_day_a_request_naming_it_is_a_404_naming_the_replacement() -> None:
    registry = _registry(OLD_DAY)
    with pytest.raises(NotFoundError) as caught:
        registry.resolve("old")
    assert caught.value.status == 404 and caught.value.code == "model_retired"
    assert "retired by its provider on 2026-11-30; use 'new' instead" in caught.value.message
    entry_ = registry.catalog.get("old")
    assert not registry.is_available(entry_)
    assert [e.id for e in registry.available("text")] == ["new"]
    with pytest.raises(NotFoundError, match="retired"):
        registry.deployments(entry_)


def test_a_retired_model_stays_priced_for_calls_admitted_before_its_day() -> None:
    engine = PricingEngine(parse_catalog(_catalog()))
    assert engine.max_cost("old", 1_000_000, 0).credits == Decimal("100.00")


@pytest.mark.parametrize(
    ("old", "expected"),
    [
        ({"replacement": "nowhere"}, "replacement: 'nowhere' is not another catalog model"),
        ({"replacement": "old"}, "replacement: 'old' is not another catalog model"),
        ({"retirement_source": "blog"}, "retirement_source: 'blog' is not in the catalog's"),
    ],
)
def test_a_retirement_names_real_models_and_sources(old: dict[str, object], expected: str) -> None:
    with pytest.raises(CatalogError, match=expected):
        parse_catalog(_catalog(**old))


def test_a_replacement_needs_a_retirement_day() -> None:
    data = catalog_data(old=entry(replacement="new"), new=entry())
    with pytest.raises(CatalogError, match="retires_on: required with replacement"):
        parse_catalog(data)


def test_a_replacement_that_retires_first_is_refused() -> None:
    data = catalog_data(
        old=entry(retires_on="2026-11-30", replacement="new"),
        new=entry(retires_on="2026-10-01"),
    )
    with pytest.raises(CatalogError, match="retires on 2026-10-01, no later than this model"):
        parse_catalog(data)
