"""What a request would cost: the answer of `POST /api/v1/estimate` and `oneflow estimate`.

One function, `estimate_answer`, reads the request's fields (the JSON body's, or the command's
options turned into the same fields), prices the request on every eligible model (or the one it
names) and asks the router which model its strategy would pick among those that fit, are
available and are on the caller's allow-list. The endpoint runs it on the gateway's own services;
the command on an `EstimateContext.offline` one built from the settings alone: the same catalog
and prices, the catalog's latency priors instead of the latency learned from traffic, every
circuit closed, and no allow-list.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, cast

from oneflow_ai.api.validation import Fields, invalid
from oneflow_ai.billing.estimates import Estimator, ModelEstimate
from oneflow_ai.billing.pricing import PricingEngine
from oneflow_ai.catalog import Modality, load_catalog
from oneflow_ai.gateway.planning import DEFAULT_STRATEGY, STRATEGIES
from oneflow_ai.providers.registry import utc_today
from oneflow_ai.routing.router import IntelligentRouter
from oneflow_ai.routing.setup import build_latency_tracker, build_router
from oneflow_ai.settings import PROVIDERS, Settings

__all__ = ["ESTIMATE_FIELDS", "MODALITIES", "EstimateContext", "estimate_answer"]

MODALITIES = ("text", "image", "audio", "embedding", "transcription")
ESTIMATE_FIELDS = frozenset(
    {
        "model",
        "strategy",
        "modality",
        "input_tokens",
        "output_tokens",
        "max_tokens",
        "prompt",
        "messages",
        "images",
        "size",
        "quality",
        "characters",
        "seconds",
    }
)


@dataclass(frozen=True, slots=True)
class EstimateContext:
    """What an estimate reads: the prices and token counts, the router, and which models
    a running provider adapter serves (by modality)."""

    estimator: Estimator
    router: IntelligentRouter
    available: Callable[[Modality], Collection[str]]

    @classmethod
    def offline(cls, settings: Settings) -> EstimateContext:
        """From the settings alone: a provider is available when its key is configured, every
        provider when the fake providers would serve (`FAKE_PROVIDERS`); a retired model
        (`retires_on`) never is, as on a running gateway."""
        catalog = load_catalog(settings.catalog_path)
        pricing = PricingEngine(catalog)
        latency = build_latency_tracker(settings, catalog, None)
        router = build_router(settings, pricing, latency=latency)
        fakes = settings.use_fake_providers
        providers = {p for p in PROVIDERS if fakes or settings.provider(p).configured}
        today = utc_today()
        served = {
            entry.id
            for entry in catalog
            if entry.provider in providers and not entry.retired(today)
        }
        return cls(Estimator(pricing), router, lambda _modality: served)


@dataclass(frozen=True, slots=True)
class _Query:
    strategy: str
    modality: Modality
    input_tokens: int | None
    output_tokens: int | None
    prompt: str | None
    messages: list[Any] | None
    images: int
    size: str | None
    quality: str | None
    characters: int | None
    model: str | None
    seconds: int | None


def _query(body: object) -> _Query:
    fields = Fields(body)
    fields.only(ESTIMATE_FIELDS)
    strategy = fields.opt_str("strategy", choices=STRATEGIES) or DEFAULT_STRATEGY
    modality = cast(Modality, fields.opt_str("modality", choices=MODALITIES) or "text")
    input_tokens = fields.opt_int("input_tokens", minimum=0)
    output_tokens = fields.opt_int("output_tokens", minimum=0)
    if output_tokens is None:  # the name /api/v1/request and the chat APIs use
        output_tokens = fields.opt_int("max_tokens", minimum=0)
    return _Query(
        strategy=strategy,
        modality=modality,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        prompt=fields.opt_str("prompt"),
        messages=fields.opt_list("messages"),
        images=fields.opt_int("images", minimum=1, maximum=10) or 1,
        size=fields.opt_str("size"),
        quality=fields.opt_str("quality"),
        characters=fields.opt_int("characters", minimum=0),
        model=fields.opt_str("model"),  # one model instead of every eligible one
        seconds=fields.opt_int("seconds", minimum=1),
    )


def estimate_answer(
    body: object, context: EstimateContext, *, allowed_models: Collection[str] | None = None
) -> dict[str, object]:
    """The estimate of the request `body` (a JSON object's fields): every eligible model's
    cost, cheapest first, and the router's decision among the models the caller may use
    (`routing` is None when none fits). Bad fields raise `BadRequestError` naming them."""
    query = _query(body)
    estimates = context.estimator.estimate(
        modality=query.modality,
        input_tokens=query.input_tokens,
        output_tokens=query.output_tokens,
        prompt=query.prompt,
        messages=query.messages,
        images=query.images,
        image_size=query.size,
        image_quality=query.quality,
        characters=query.characters,
        models=None if query.model is None else [query.model],
        seconds=query.seconds,
    )
    if query.model is not None and not estimates:
        raise invalid("model", f"{query.model!r} is not a {query.modality} model")
    ranked = sorted(estimates, key=lambda e: (not e.fits, e.cost.micro_credits, e.model))
    available = set(context.available(query.modality))
    allowed = [
        e.model
        for e in ranked
        if e.fits and e.model in available and (allowed_models is None or e.model in allowed_models)
    ]
    return {
        "strategy": query.strategy,
        "modality": query.modality,
        "routing": _routing(context.router, query, ranked, allowed) if allowed else None,
        "estimates": [
            {
                "model": e.model,
                "provider": e.provider,
                "input_tokens": e.input_tokens,
                "output_tokens": e.output_tokens,
                "tokens_exact": e.tokens_exact,
                **({"audio_seconds": e.audio_seconds} if e.audio_seconds else {}),
                "fits": e.fits,
                "available": e.model in available,
                # whether automatic routing may choose it (catalog `auto_route`)
                "auto_route": context.router.catalog.get(e.model).auto_route,
                "credits": str(e.cost.credits),
                "cost_usd": str(e.cost.usd),
            }
            for e in ranked
        ],
    }


def _routing(
    router: IntelligentRouter, query: _Query, ranked: list[ModelEstimate], allowed: list[str]
) -> dict[str, object]:
    decision = router.route(
        input_tokens=max((e.input_tokens for e in ranked), default=0),
        output_tokens=max((e.output_tokens for e in ranked), default=0),
        strategy=query.strategy,
        modality=query.modality,
        allowed_models=allowed,
        images=query.images,
        image_size=query.size,
        image_quality=query.quality,
        characters=query.characters if query.characters is not None else len(query.prompt or ""),
        audio_seconds=query.seconds or 0,
    )
    pick = next(e for e in ranked if e.model == decision.primary_model)
    return {
        "primary_model": decision.primary_model,
        "provider": decision.primary_provider,
        "estimated_credits": str(pick.cost.credits),
        "cost_usd": str(pick.cost.usd),
        "fallback_chain": decision.fallback_chain,
        "reason": decision.reason,
        "scores": [score.as_dict() for score in decision.scores],
    }
