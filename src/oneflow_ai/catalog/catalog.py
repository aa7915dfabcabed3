"""The model catalog: every model OneFlow can route to, with its prices."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator, Mapping
from datetime import date
from types import MappingProxyType

from oneflow_ai.catalog.deployments import Deployment, ModelRouting
from oneflow_ai.catalog.errors import CatalogError, UnknownModelError
from oneflow_ai.catalog.schema import (
    BUILTIN_PROVIDERS,
    Modality,
    ModelEntry,
    PriceSource,
    ProviderEntry,
)

__all__ = ["Catalog"]


class Catalog:
    """An immutable set of :class:`ModelEntry` with the price table's version and sources, and
    the providers declared by configuration (:class:`ProviderEntry`).

    Models are found by id or alias (:meth:`get`, :meth:`find`); disabled models are kept in
    :attr:`models` but never found or listed. Construct it with :func:`load_catalog`, which
    validates the YAML; the constructor checks only what spans entries (unique names, known
    price sources, known providers) and raises :class:`CatalogError` naming the entry.
    """

    __slots__ = (
        "_by_name",
        "_models",
        "_prices_as_of",
        "_providers",
        "_routing",
        "_sources",
        "_version",
    )

    def __init__(
        self,
        *,
        price_table_version: str,
        prices_as_of: date,
        sources: Mapping[str, PriceSource],
        models: Iterable[ModelEntry],
        providers: Iterable[ProviderEntry] = (),
        routing: Mapping[str, ModelRouting] | None = None,
    ) -> None:
        self._version = price_table_version
        self._prices_as_of = prices_as_of
        self._sources: Mapping[str, PriceSource] = MappingProxyType(dict(sources))
        self._providers: Mapping[str, ProviderEntry] = MappingProxyType(
            {entry.name: entry for entry in providers}
        )
        self._models = tuple(models)
        by_name: dict[str, ModelEntry] = {}
        for entry in self._models:
            if entry.price_source is not None and entry.price_source not in self._sources:
                raise CatalogError(
                    f"catalog entry {entry.id!r}: price_source: {entry.price_source!r} "
                    "is not in the catalog's sources"
                )
            self._check_provider(entry)
            for name in entry.names:
                other = by_name.get(name)
                if other is not None:
                    field = "id" if name == entry.id else "aliases"
                    raise CatalogError(
                        f"catalog entry {entry.id!r}: {field}: {name!r} is already "
                        f"a name of catalog entry {other.id!r}"
                    )
                by_name[name] = entry
        self._by_name: Mapping[str, ModelEntry] = MappingProxyType(by_name)
        for entry in self._models:
            self._check_retirement(entry)
        self._routing: Mapping[str, ModelRouting] = MappingProxyType(
            self._check_routing(routing or {})
        )

    def _check_routing(self, routing: Mapping[str, ModelRouting]) -> dict[str, ModelRouting]:
        """Each `routing:` entry names a model (by id or alias; kept by its id), providers
        that can serve it and fallbacks of the same modality."""
        checked: dict[str, ModelRouting] = {}
        for name, entry in routing.items():
            where = f"catalog routing {name!r}"
            model = self._by_name.get(name)
            if model is None:
                raise CatalogError(f"{where}: no catalog model has this id or alias")
            if model.id in checked:
                raise CatalogError(f"{where}: model {model.id!r} has another routing entry")
            for index, deployment in enumerate(entry.deployments):
                self._check_deployment(f"{where}: deployments.{index}", model, deployment)
            for fallback in entry.fallbacks:
                other = self._by_name.get(fallback)
                if other is None:
                    raise CatalogError(f"{where}: fallbacks: {fallback!r} is not a catalog model")
                if other.id == model.id:
                    raise CatalogError(f"{where}: fallbacks: {fallback!r} is the model itself")
                if other.modality != model.modality:
                    raise CatalogError(
                        f"{where}: fallbacks: {fallback!r} is a {other.modality} model, "
                        f"not {model.modality}"
                    )
            checked[model.id] = entry
        return checked

    def _check_retirement(self, entry: ModelEntry) -> None:
        """A retirement's source is a catalog source; its replacement a catalog model of the
        same modality that does not itself retire first."""
        where = f"catalog entry {entry.id!r}"
        source = entry.retirement_source
        if source is not None and source not in self._sources:
            raise CatalogError(
                f"{where}: retirement_source: {source!r} is not in the catalog's sources"
            )
        if entry.replacement is None or entry.retires_on is None:
            return
        other = self._by_name.get(entry.replacement)
        if other is None or other.id == entry.id:
            raise CatalogError(
                f"{where}: replacement: {entry.replacement!r} is not another catalog model"
            )
        if other.modality != entry.modality:
            raise CatalogError(
                f"{where}: replacement: {entry.replacement!r} is a {other.modality} model, "
                f"not {entry.modality}"
            )
        if other.retires_on is not None and other.retires_on <= entry.retires_on:
            raise CatalogError(
                f"{where}: replacement: {entry.replacement!r} retires on "
                f"{other.retires_on.isoformat()}, no later than this model"
            )

    def _check_deployment(self, where: str, model: ModelEntry, deployment: Deployment) -> None:
        provider = deployment.provider
        if provider in BUILTIN_PROVIDERS:
            return
        if provider not in self._providers:
            raise CatalogError(
                f"{where}: provider: {provider!r} is neither built in "
                f"({', '.join(BUILTIN_PROVIDERS)}) nor declared under providers"
            )
        if model.modality != "text":
            raise CatalogError(
                f"{where}: provider: {provider!r} serves chat (text) models only, "
                f"{model.id!r} is {model.modality}"
            )

    def _check_provider(self, entry: ModelEntry) -> None:
        """A model's provider is built in, or declared and able to serve it (chat, priced)."""
        if entry.provider in BUILTIN_PROVIDERS:
            return
        where = f"catalog entry {entry.id!r}"
        if entry.provider not in self._providers:
            raise CatalogError(
                f"{where}: provider: {entry.provider!r} is neither built in "
                f"({', '.join(BUILTIN_PROVIDERS)}) nor declared under providers"
            )
        if entry.modality not in ("text", "embedding"):
            raise CatalogError(
                f"{where}: modality: provider {entry.provider!r} serves chat (text) and "
                "embedding models only"
            )
        if not entry.is_priced:
            raise CatalogError(
                f"{where}: pricing: required for a model of provider {entry.provider!r} "
                '(input_per_mtok and output_per_mtok, "0" allowed; or free: true)'
            )

    @property
    def price_table_version(self) -> str:
        """Version label of the price table; recorded with every cost."""
        return self._version

    @property
    def prices_as_of(self) -> date:
        """The date the prices were taken."""
        return self._prices_as_of

    @property
    def sources(self) -> Mapping[str, PriceSource]:
        """Where the prices were taken, by the key models name in ``price_source``."""
        return self._sources

    @property
    def providers(self) -> Mapping[str, ProviderEntry]:
        """The providers declared by configuration, by name (the built-in ones are not here)."""
        return self._providers

    def routing(self, model_id: str) -> ModelRouting | None:
        """The `routing:` entry of the model `model_id` (deployments, balance, fallbacks)."""
        return self._routing.get(model_id)

    def deployments(self, entry: ModelEntry) -> tuple[Deployment, ...]:
        """Who serves `entry`: its routing's deployments, else its own provider alone."""
        routing = self._routing.get(entry.id)
        if routing is not None and routing.deployments:
            return routing.deployments
        return (Deployment(provider=entry.provider),)

    def fallbacks(self, entry: ModelEntry) -> tuple[ModelEntry, ...]:
        """The enabled models configured to stand in for `entry`, in order."""
        routing = self._routing.get(entry.id)
        if routing is None:
            return ()
        found = (self.find(name) for name in routing.fallbacks)
        return tuple(model for model in found if model is not None)

    @property
    def models(self) -> tuple[ModelEntry, ...]:
        """All entries, enabled or not, in catalog order."""
        return self._models

    def find(self, name: str) -> ModelEntry | None:
        """The enabled model whose id or alias is ``name``, or ``None``."""
        entry = self._by_name.get(name)
        return entry if entry is not None and entry.enabled else None

    def get(self, name: str) -> ModelEntry:
        """The enabled model whose id or alias is ``name``; :class:`UnknownModelError` if none."""
        entry = self.find(name)
        if entry is None:
            raise UnknownModelError(name)
        return entry

    def closest(self, name: str, limit: int = 3) -> list[str]:
        """The ids of the enabled models whose id or an alias is most like ``name``, closest
        first (for "did you mean" in an error), at most ``limit``."""
        names = [n for n, entry in self._by_name.items() if entry.enabled]
        ids: list[str] = []
        for match in difflib.get_close_matches(name, names, n=len(names), cutoff=0.5):
            model = self._by_name[match].id
            if model not in ids:
                ids.append(model)
        return ids[:limit]

    def by_modality(self, modality: Modality) -> tuple[ModelEntry, ...]:
        """Enabled models of ``modality``, in catalog order (priced or not)."""
        return tuple(m for m in self._models if m.enabled and m.modality == modality)

    def unpriced(self) -> tuple[ModelEntry, ...]:
        """Enabled models that are neither free nor priced (billing refuses them)."""
        return tuple(m for m in self._models if m.enabled and not m.is_priced)

    def __iter__(self) -> Iterator[ModelEntry]:
        return (m for m in self._models if m.enabled)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.find(name) is not None

    def __len__(self) -> int:
        return sum(1 for m in self._models if m.enabled)

    def __repr__(self) -> str:
        return f"Catalog(version={self._version!r}, models={len(self)})"
