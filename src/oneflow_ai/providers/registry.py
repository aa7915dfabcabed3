"""The provider registry: which adapters run, what they can do, and which one serves a model.

`build_registry(settings, catalog)` builds one adapter per provider that is configured: the
built-in ones whose key is set (when the fake providers serve, the settings point every
provider at them, keys included), and the OpenAI-compatible ones the catalog declares
(`compatible.py`), each over its own pooled upstream client. `register` checks an adapter's
capabilities once, against the modalities of its catalog models, so that no adapter needs stub
methods. `resolve(name)` turns a catalog id or alias into a `Route`: the catalog entry, the
adapter (as the capability the call needs) and the model id the provider is called with.
A model the catalog's `routing:` gives several deployments has a `Route` per deployment whose
provider runs (`deployments(entry)`, with their weights and how to balance them); `route`
is the first of them.

Adding a provider: an OpenAI-compatible one is a catalog entry (docs/configuration.md); one of
another dialect is one module exposing a `SPEC` (`ProviderSpec`), its entry in `SPECS`, its
`*_API_KEY`/`*_BASE_URL` settings, and its models in the catalog (docs/contributing.md,
"Adding a provider").
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import TypeVar

from oneflow_ai.catalog import Balance, Catalog, Modality, ModelEntry
from oneflow_ai.domain.chat import WireDialect
from oneflow_ai.errors import NotFoundError
from oneflow_ai.providers import anthropic, elevenlabs, openai, stability
from oneflow_ai.providers.base import (
    ChatCapable,
    EmbeddingCapable,
    ImageCapable,
    Provider,
    SpeechCapable,
    TranscriptionCapable,
)
from oneflow_ai.providers.compatible import compatible_specs
from oneflow_ai.providers.http import AiohttpUpstream, TraceInjector
from oneflow_ai.providers.spec import ProviderSpec
from oneflow_ai.providers.upstream import UpstreamClient
from oneflow_ai.settings import ProviderSettings, Settings

__all__ = [
    "SPECS",
    "ClientFactory",
    "Deployments",
    "ProviderRegistry",
    "Route",
    "build_registry",
    "default_client",
    "retired_error",
    "utc_today",
]

SPECS: tuple[ProviderSpec, ...] = (openai.SPEC, anthropic.SPEC, stability.SPEC, elevenlabs.SPEC)


def utc_today() -> date:
    """Today's date in UTC (the day providers' retirement dates are read in)."""
    return datetime.now(UTC).date()


_CAPABILITIES: dict[Modality, type] = {
    "text": ChatCapable,
    "image": ImageCapable,
    "audio": SpeechCapable,
    "embedding": EmbeddingCapable,
    "transcription": TranscriptionCapable,
}

ClientFactory = Callable[[ProviderSettings, Mapping[str, str]], UpstreamClient]
"""Builds the upstream client of one provider from its settings and its fixed headers. The
resilience layer passes a factory that wraps `default_client` in retries and a breaker."""


def default_client(
    settings: ProviderSettings,
    headers: Mapping[str, str],
    *,
    trace_context: TraceInjector | None = None,
) -> UpstreamClient:
    """The pooled aiohttp client of one provider (`trace_context`: see `AiohttpUpstream`)."""
    return AiohttpUpstream(
        settings.name,
        settings.base_url,
        headers=headers,
        query=settings.query,
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.read_timeout,
        max_connections=settings.max_connections,
        trace_context=trace_context,
    )


@dataclass(frozen=True, slots=True)
class _Capabilities:
    """An adapter as each capability it has (None where it has not), checked once."""

    chat: ChatCapable | None
    images: ImageCapable | None
    speech: SpeechCapable | None
    embeddings: EmbeddingCapable | None
    transcriptions: TranscriptionCapable | None

    @classmethod
    def of(cls, provider: Provider) -> _Capabilities:
        return cls(
            provider if isinstance(provider, ChatCapable) else None,
            provider if isinstance(provider, ImageCapable) else None,
            provider if isinstance(provider, SpeechCapable) else None,
            provider if isinstance(provider, EmbeddingCapable) else None,
            provider if isinstance(provider, TranscriptionCapable) else None,
        )


@dataclass(frozen=True, slots=True)
class Route:
    """A catalog model bound to the adapter that serves it."""

    entry: ModelEntry
    provider: Provider
    upstream_model: str
    _capabilities: _Capabilities
    # Read several times by every call: kept as plain values, taken from `entry` and
    # `provider` when the route is made (routes are made once per model and kept).
    #: The catalog id (what OneFlow reports and bills): `entry.id`.
    model: str = field(init=False, repr=False, compare=False)
    #: `provider.name`.
    provider_name: str = field(init=False, repr=False, compare=False)
    #: The chat dialect the provider speaks (None for one without chat).
    dialect: WireDialect | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "model", self.entry.id)
        object.__setattr__(self, "provider_name", self.provider.name)
        object.__setattr__(self, "dialect", getattr(self.provider, "dialect", None))

    @property
    def deployment(self) -> str:
        """`provider/upstream model`: this deployment's name (its circuit breaker's key)."""
        return f"{self.provider.name}/{self.upstream_model}"

    def chat(self) -> ChatCapable:
        return _capable(self._capabilities.chat, self, "chat")

    def images(self) -> ImageCapable:
        return _capable(self._capabilities.images, self, "images")

    def speech(self) -> SpeechCapable:
        return _capable(self._capabilities.speech, self, "speech")

    def embeddings(self) -> EmbeddingCapable:
        return _capable(self._capabilities.embeddings, self, "embeddings")

    def transcriptions(self) -> TranscriptionCapable:
        return _capable(self._capabilities.transcriptions, self, "transcriptions")


@dataclass(frozen=True, slots=True)
class Deployments:
    """The running deployments of one model (never empty), their weights, in catalog order,
    and how calls are spread over them."""

    routes: tuple[Route, ...]
    weights: tuple[int, ...]
    balance: Balance = "weighted"


C = TypeVar("C")


def _capable(capability: C | None, route: Route, what: str) -> C:
    if capability is None:  # the registry checked the catalog's modalities: a caller's slip
        raise TypeError(f"provider {route.provider_name!r} has no {what}")
    return capability


class ProviderRegistry:
    """The running adapters, by provider name, and the routes to catalog models."""

    __slots__ = (
        "_capabilities",
        "_catalog",
        "_deployments",
        "_modalities",
        "_providers",
        "_routes",
        "_today",
    )

    def __init__(self, catalog: Catalog, *, today: Callable[[], date] = utc_today) -> None:
        self._catalog = catalog
        self._today = today  # retired models (`ModelEntry.retires_on`) are not offered
        self._providers: dict[str, Provider] = {}
        self._modalities: dict[str, frozenset[Modality]] = {}
        self._capabilities: dict[str, _Capabilities] = {}
        self._routes: dict[str, Route] = {}  # by catalog id, made on first use
        self._deployments: dict[str, Deployments] = {}  # by catalog id, made on first use

    @property
    def catalog(self) -> Catalog:
        return self._catalog

    def register(self, provider: Provider) -> None:
        """Add an adapter; `TypeError` if it lacks a capability its catalog models need."""
        if not isinstance(provider, Provider):
            raise TypeError(f"{provider!r} does not implement Provider (name, aclose)")
        modalities = frozenset(
            m for m, proto in _CAPABILITIES.items() if isinstance(provider, proto)
        )
        for entry in self._catalog:
            if entry.provider == provider.name and entry.modality not in modalities:
                raise TypeError(
                    f"provider {provider.name!r} cannot serve catalog model {entry.id!r}: "
                    f"it does not implement {_CAPABILITIES[entry.modality].__name__}"
                )
        self._providers[provider.name] = provider
        self._modalities[provider.name] = modalities
        self._capabilities[provider.name] = _Capabilities.of(provider)
        self._routes.clear()
        self._deployments.clear()

    def __contains__(self, name: object) -> bool:
        return name in self._providers

    def __iter__(self) -> Iterator[Provider]:
        return iter(self._providers.values())

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._providers)

    def is_available(self, entry: ModelEntry) -> bool:
        """Whether a running adapter serves `entry` (one of its deployments) and the model has
        not retired."""
        return not self._retired(entry) and any(
            entry.modality in self._modalities.get(d.provider, frozenset())
            for d in self._catalog.deployments(entry)
        )

    def _retired(self, entry: ModelEntry) -> bool:
        """Whether `entry` has retired; today's date is read only for a model that has a
        retirement date (the routes of every call ask, several times)."""
        return entry.retires_on is not None and entry.retired(self._today())

    def deployments(self, entry: ModelEntry) -> Deployments:
        """The running deployments of `entry` (`NotFoundError` when none runs)."""
        if self._retired(entry):
            raise retired_error(entry)
        found = self._deployments.get(entry.id)
        if found is not None and found.routes[0].entry is entry:
            return found
        routes: list[Route] = []
        weights: list[int] = []
        for deployment in self._catalog.deployments(entry):
            name = deployment.provider
            if entry.modality not in self._modalities.get(name, frozenset()):
                continue
            upstream = deployment.upstream_model(entry.id)
            routes.append(Route(entry, self._providers[name], upstream, self._capabilities[name]))
            weights.append(deployment.weight)
        if not routes:
            raise self._not_available(entry)
        if not any(weights):  # only standbys run: they share the calls
            weights = [1] * len(weights)
        routing = self._catalog.routing(entry.id)
        found = Deployments(
            tuple(routes), tuple(weights), routing.balance if routing else "weighted"
        )
        self._deployments[entry.id] = found
        return found

    def _not_available(self, entry: ModelEntry) -> NotFoundError:
        providers = ", ".join(dict.fromkeys(d.provider for d in self._catalog.deployments(entry)))
        return NotFoundError(
            f"The model '{entry.id}' is not available: its provider ({providers}) "
            "is not configured on this gateway",
            param="model",
            code="model_not_available",
        )

    def available(self, modality: Modality | None = None) -> tuple[ModelEntry, ...]:
        """Enabled catalog models a running adapter serves, in catalog order."""
        return tuple(
            e
            for e in self._catalog
            if (modality is None or e.modality == modality) and self.is_available(e)
        )

    def route(self, entry: ModelEntry) -> Route:
        route = self._routes.get(entry.id)
        if route is not None and route.entry is entry:
            return route
        route = self.deployments(entry).routes[0]
        self._routes[entry.id] = route
        return route

    def resolve(self, name: str) -> Route:
        """The route to a catalog model named by id or alias (`NotFoundError` otherwise)."""
        entry = self._catalog.find(name)
        if entry is None:
            raise NotFoundError(
                f"The model '{name}' does not exist (GET /v1/models lists the models)",
                param="model",
                code="model_not_found",
            )
        if self._retired(entry):
            raise retired_error(entry, name)
        return self.route(entry)

    async def aclose(self) -> None:
        for provider in self._providers.values():
            await provider.aclose()
        self._providers.clear()
        self._modalities.clear()
        self._capabilities.clear()
        self._routes.clear()
        self._deployments.clear()


def retired_error(entry: ModelEntry, name: str | None = None) -> NotFoundError:
    """404 for a model past its end of life, naming its replacement when it has one."""
    day = entry.retires_on.isoformat() if entry.retires_on else "an earlier day"
    instead = f"; use '{entry.replacement}' instead" if entry.replacement else ""
    return NotFoundError(
        f"The model '{name or entry.id}' was retired by its provider on "
        f"{day}{instead} (GET /v1/models lists the models)",
        param="model",
        code="model_retired",
    )


def build_registry(
    settings: Settings, catalog: Catalog, *, client_factory: ClientFactory = default_client
) -> ProviderRegistry:
    """One adapter per configured provider (built in, or declared in the catalog), each with
    its own client."""
    registry = ProviderRegistry(catalog)
    for spec in (*SPECS, *compatible_specs(catalog)):
        connection = spec.connection(settings)
        if connection is None:
            continue
        key = connection.api_key.get_secret_value() if connection.api_key is not None else ""
        client = client_factory(connection, spec.headers(key))
        registry.register(spec.build(client, settings))
    return registry
