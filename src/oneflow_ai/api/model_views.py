"""The model objects of `GET /v1/models` and `GET /v1/models/{id}`, in the shape the OpenAI
SDK reads (`id`, `object: "model"`, `created`, `owned_by`) with OneFlow's own fields beside it:
modality, aliases, limits, what the model takes, and its prices with their date."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from oneflow_ai.catalog import Catalog, ModelEntry
from oneflow_ai.gateway.planning import AUTO, STRATEGIES

__all__ = ["ROUTING_NAMES", "model_object", "routing_object", "timestamp"]

#: The names that ask OneFlow to choose the model (listed as models of their own).
ROUTING_NAMES = (AUTO, *STRATEGIES)


def timestamp(day: date) -> int:
    return int(datetime.combine(day, datetime.min.time(), tzinfo=UTC).timestamp())


def _money(value: Decimal | None) -> str | None:
    return None if value is None else f"{value:f}"


def model_object(entry: ModelEntry, catalog: Catalog, name: str | None = None) -> dict[str, Any]:
    """`entry` as a model object, under `name` (an alias the caller asked for) or its id; an
    alias names its model in `root`."""
    as_of = entry.prices_as_of or catalog.prices_as_of
    body: dict[str, Any] = {
        "id": name or entry.id,
        "object": "model",
        "created": timestamp(as_of),
        "owned_by": entry.provider,
        "root": entry.id,
        "modality": entry.modality,
        "aliases": list(entry.aliases),
        "context_window": entry.context_window,
        "max_output_tokens": entry.max_output_tokens,
    }
    if entry.retires_on is not None:
        body["retires_on"] = entry.retires_on.isoformat()
        body["replacement"] = entry.replacement
    if entry.modality == "text":
        body["image_input"] = entry.image_input
        body["reasoning"] = entry.reasoning
        pricing = entry.pricing
        if pricing is not None:
            body["pricing"] = {
                "unit": "USD per 1M tokens",
                "input": _money(pricing.input_per_mtok),
                "cached_input": _money(pricing.cached_input_per_mtok),
                "cache_write_5m": _money(pricing.cache_write_5m_per_mtok),
                "cache_write_1h": _money(pricing.cache_write_1h_per_mtok),
                "output": _money(pricing.output_per_mtok),
                "as_of": as_of.isoformat(),
                "verified": entry.price_verified,
            }
    return body


def routing_object(name: str, catalog: Catalog) -> dict[str, Any]:
    """A routing name (`auto`, a strategy) as a model object."""
    return {
        "id": name,
        "object": "model",
        "created": timestamp(catalog.prices_as_of),
        "owned_by": "oneflow",
        "modality": "routing",
    }
