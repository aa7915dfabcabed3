"""Which model answers: a concrete model as named, or one chosen by strategy.

A caller names a catalog model (id or alias) or lets OneFlow choose: `auto` or a strategy name
(`cost_optimized`, `latency_optimized`, `quality_optimized`, `balanced`) as the model, or the
`X-OneFlow-Strategy` header with `auto`. A concrete model always wins over the header.

After the chosen models come the fallbacks (`fallback_entries`): the ones the caller named
(body `models` or `X-OneFlow-Fallbacks`), every one checked (unknown: 400; outside the key's
allow-list: 403; another modality or unpriced: 400, each naming it), or else, for a concrete
model, the catalog's `routing:` fallbacks the caller may use and that fit the request
(silently left out otherwise: the caller did not ask for them).

Choosing is a `ModelSelector`: given what the request needs and the eligible models, it returns
a `Selection`: the models to try, best first (the first is the primary, the rest are
fallbacks), and why in a few words. `select_by_router` asks the `IntelligentRouter` (strategy
scores, learned latency, open circuits last) for its chain over the eligible models.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from oneflow_ai.auth.permissions import may_use
from oneflow_ai.catalog import Catalog, Modality, ModelEntry
from oneflow_ai.domain.usage import Usage
from oneflow_ai.errors import BadRequestError, PermissionDeniedError
from oneflow_ai.routing.reasons import RouteReason
from oneflow_ai.routing.router import IntelligentRouter

if TYPE_CHECKING:
    from oneflow_ai.gateway.call import Call

__all__ = [
    "AUTO",
    "DEFAULT_STRATEGY",
    "MAX_REQUESTED_FALLBACKS",
    "STRATEGIES",
    "ModelSelector",
    "RouteQuery",
    "Selection",
    "fallback_entries",
    "resolve_strategy",
    "select_by_router",
]

AUTO = "auto"
STRATEGIES = ("cost_optimized", "latency_optimized", "quality_optimized", "balanced")
DEFAULT_STRATEGY = "balanced"
#: The most fallback models a caller may name in one request.
MAX_REQUESTED_FALLBACKS = 8
#: Expected answer length of a text request that sets no `max_tokens`, for comparing costs.
EXPECTED_OUTPUT_TOKENS = 512


@dataclass(frozen=True, slots=True)
class RouteQuery:
    """What a request needs, as far as choosing a model goes."""

    modality: Modality
    strategy: str
    input_tokens: int = 0
    output_tokens: int = 0
    images: int = 0
    image_size: str | None = None
    image_quality: str | None = None
    characters: int = 0
    audio_seconds: int = 0

    def usage(self) -> Usage:
        if self.modality == "text":
            return Usage(
                input_tokens=self.input_tokens, output_tokens=self.output_tokens, estimated=True
            )
        if self.modality == "image":
            return Usage(
                images=self.images,
                image_size=self.image_size,
                image_quality=self.image_quality,
                estimated=True,
            )
        if self.modality == "embedding":
            return Usage(input_tokens=self.input_tokens, estimated=True)
        if self.modality == "transcription":
            return Usage(audio_seconds=self.audio_seconds, estimated=True)
        return Usage(characters=self.characters, estimated=True)


@dataclass(frozen=True, slots=True)
class Selection:
    """The models to try, best first, and why the first (`RouteReason`)."""

    models: Sequence[ModelEntry]
    reason: RouteReason


ModelSelector = Callable[[RouteQuery, Sequence[ModelEntry]], Selection]


def resolve_strategy(model: str, header: str | None, *, header_name: str) -> str | None:
    """The strategy that chooses the model, or None when `model` is a concrete model.

    `header` is the caller's strategy header (or field), validated here: an unknown strategy is
    a 400 naming `header_name`."""
    if header is not None:
        header = header.strip().lower()
        if header and header != AUTO and header not in STRATEGIES:
            raise BadRequestError(
                f"Unknown routing strategy '{header}': use one of {', '.join(STRATEGIES)}",
                param=header_name,
            )
    if model in STRATEGIES:
        return model
    if model == AUTO:
        return header if header and header != AUTO else DEFAULT_STRATEGY
    return None


def select_by_router(
    router: IntelligentRouter, query: RouteQuery, candidates: Sequence[ModelEntry]
) -> Selection:
    """The router's chain for the query over `candidates` (primary first, then fallbacks)."""
    if not candidates:
        return Selection((), RouteReason.of(query.strategy, "no eligible model"))
    decision = router.route(
        input_tokens=query.input_tokens,
        output_tokens=query.output_tokens,
        strategy=query.strategy,
        modality=query.modality,
        allowed_models=[entry.id for entry in candidates],
        images=query.images or 1,
        image_size=query.image_size,
        image_quality=query.image_quality,
        characters=query.characters,
        audio_seconds=query.audio_seconds,
    )
    by_id = {entry.id: entry for entry in candidates}
    models = [by_id[model] for model in decision.chain if model in by_id]
    assert decision.summary is not None  # the router always explains its pick
    return Selection(models, decision.summary)


def fallback_entries(
    catalog: Catalog,
    call: Call,
    chosen: Sequence[ModelEntry],
    *,
    usable: Callable[[ModelEntry], bool],
) -> list[ModelEntry]:
    """The models to try after `chosen` (see the module docstring). `usable(entry)` says
    whether this gateway serves `entry` and it fits the request (context window, image size)."""
    have = {entry.id for entry in chosen}
    out: list[ModelEntry] = []
    if call.requested_fallbacks is None:
        if call.strategy is not None or not chosen:
            return out  # the router's chain already holds every eligible model
        for entry in catalog.fallbacks(chosen[0]):
            if (
                entry.id not in have
                and entry.modality == call.modality
                and entry.is_priced
                and may_use(call.principal, entry.id)
                and usable(entry)
            ):
                have.add(entry.id)
                out.append(entry)
        return out
    where = call.fallbacks_param
    for name in call.requested_fallbacks:
        found = catalog.find(name)
        if found is None:
            raise BadRequestError(
                f"The fallback model '{name}' in {where} does not exist "
                "(GET /v1/models lists the models)",
                param=where,
                code="model_not_found",
            )
        entry = found
        if entry.id in have:
            continue
        if not may_use(call.principal, entry.id):
            raise PermissionDeniedError(
                f"This API key may not use the model '{entry.id}' (in {where})",
                param=where,
                code="model_not_allowed",
            )
        if entry.modality != call.modality:
            raise BadRequestError(
                f"The fallback model '{entry.id}' in {where} is a {entry.modality} model; this "
                f"endpoint needs a {call.modality} model",
                param=where,
            )
        if not entry.is_priced or not usable(entry):
            raise BadRequestError(
                f"The fallback model '{entry.id}' in {where} cannot serve this request on this "
                "gateway (not configured, not priced, or the request does not fit it)",
                param=where,
                code="model_not_available",
            )
        have.add(entry.id)
        out.append(entry)
    return out
