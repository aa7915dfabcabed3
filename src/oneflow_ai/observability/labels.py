"""Metric label values, kept bounded.

Prometheus keeps one time series per distinct label set, so every label value OneFlow emits
comes from a closed set: model labels are catalog ids (aliases map to their id, anything else is
``other``), provider labels are the catalog's providers, outcomes follow the error tree, HTTP
routes are route templates, and free-form reasons are capped (:class:`BoundedLabel`). Request
ids, user ids, keys and raw paths never become labels.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable

from oneflow_ai.catalog import Catalog
from oneflow_ai.errors import GatewayError
from oneflow_ai.settings import PROVIDERS

__all__ = [
    "BREAKER_STATES",
    "HTTP_METHODS",
    "OTHER",
    "OUTCOMES",
    "UNMATCHED_ROUTE",
    "BoundedLabel",
    "CatalogLabels",
    "breaker_state_value",
    "outcome_of",
]

OTHER = "other"
UNMATCHED_ROUTE = "unmatched"

HTTP_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})

#: Outcomes of one upstream attempt: ``success``, the error tree's kinds, and ``cancelled``
#: (the caller went away or a deadline cancelled the call).
OUTCOMES = frozenset(
    {
        "success",
        "timeout",
        "rate_limited",
        "overloaded",
        "provider_auth",
        "invalid_request",
        "not_found",
        "content_filtered",
        "provider_error",
        "unavailable",
        "cancelled",
        "internal_error",
    }
)

#: Circuit-breaker states and the gauge value each one shows.
BREAKER_STATES = {"closed": 0, "half_open": 1, "half-open": 1, "open": 2}


def outcome_of(error: BaseException | None) -> str:
    """The outcome label for an attempt that ended with ``error`` (``None`` is success)."""
    if error is None:
        return "success"
    if isinstance(error, GatewayError):
        return error.kind if error.kind in OUTCOMES else "provider_error"
    if isinstance(error, asyncio.CancelledError):
        return "cancelled"
    if isinstance(error, TimeoutError):
        return "timeout"
    return "internal_error"


def breaker_state_value(state: str | int) -> int:
    """0 closed, 1 half-open, 2 open; accepts those names (any case) or the numbers."""
    if isinstance(state, int):
        if state not in (0, 1, 2):
            raise ValueError(f"circuit-breaker state must be 0, 1 or 2, got {state}")
        return state
    try:
        return BREAKER_STATES[state.lower()]
    except KeyError:
        raise ValueError(f"unknown circuit-breaker state {state!r}") from None


class CatalogLabels:
    """Maps provider and model names to bounded label values taken from the catalog."""

    __slots__ = ("_models", "_providers")

    def __init__(self, catalog: Catalog, providers: Iterable[str] = PROVIDERS) -> None:
        models: dict[str, str] = {}
        provider_names = set(providers)
        for entry in catalog.models:
            provider_names.add(entry.provider)
            for name in entry.names:
                models[name] = entry.id
        self._models = models
        self._providers = {name: name for name in provider_names}

    def model(self, name: str) -> str:
        """The catalog id for a model id or alias, ``other`` for anything else."""
        return self._models.get(name, OTHER)

    def provider(self, name: str) -> str:
        return self._providers.get(name, OTHER)

    @property
    def model_ids(self) -> frozenset[str]:
        return frozenset(self._models.values())

    @property
    def providers(self) -> frozenset[str]:
        return frozenset(self._providers)


_LABEL_SHAPE = re.compile(r"^[a-z0-9][a-z0-9_.\-]{0,47}$")


class BoundedLabel:
    """A free-form label (e.g. a rejection reason) capped at ``limit`` distinct values.

    Values must look like identifiers (lower case, digits, ``_.-``, at most 48 characters); the
    first ``limit`` distinct ones are kept, later or malformed ones become ``other``.
    """

    __slots__ = ("_limit", "_seen")

    def __init__(self, known: Iterable[str] = (), *, limit: int = 32) -> None:
        self._limit = limit
        self._seen: dict[str, str] = {value: value for value in known}

    def __call__(self, value: str) -> str:
        label = self._seen.get(value)
        if label is not None:
            return label
        if len(self._seen) >= self._limit or not _LABEL_SHAPE.match(value):
            return OTHER
        self._seen[value] = value
        return value
