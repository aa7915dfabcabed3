"""`IntelligentRouter`: ranks the catalog's models for a request and picks the chain to try.

>>> engine = PricingEngine()
>>> router = IntelligentRouter(engine)
>>> decision = router.route(input_tokens=1500, output_tokens=500,
...                         strategy=RoutingStrategy.COST_OPTIMIZED, modality="text")
>>> decision.primary_model, decision.estimated_credits, decision.fallback_chain

**Candidates** are the enabled, priced catalog models of the requested modality that

- are on the caller's allow-list (``allowed_models``: ids or aliases; ``None`` allows all);
- fit the request: for text, ``input + output <= context_window`` and
  ``output <= max_output_tokens``; for images, the model has a price for the requested size
  and quality (a model without one cannot produce it).

Each candidate's cost comes from the pricing engine, its expected latency from the
:class:`~oneflow_ai.routing.latency.LatencyTracker` (learned from traffic, seeded by the
catalog), its quality from the catalog; :func:`~oneflow_ai.routing.strategy.rank` orders them.

**The chain.** The primary is the best-ranked candidate whose circuit is not open (or the
requested ``model`` when the caller named one and its circuit is not open). The fallbacks
follow in rank order with one adjustment that spreads the chain over providers: at each step,
among the remaining candidates whose score is within ``near_equal`` (0.05 on the 0..1 score
scale) of the best remaining one, the first whose provider differs from the previous model's is
taken. If the chain is cut to ``max_fallbacks`` and would then hold no provider other than the
primary's while one is available, its last slot goes to the best candidate of another
provider. Candidates whose circuit is open come last, after every callable one. When every
candidate's circuit is open the router refuses at once (503, ``Retry-After`` = the soonest
reopening) instead of sending the request into known failures.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Protocol

from oneflow_ai.catalog import Catalog, ModelEntry
from oneflow_ai.domain.usage import Usage
from oneflow_ai.errors import (
    BadRequestError,
    NotFoundError,
    PermissionDeniedError,
    ServiceUnavailableError,
)
from oneflow_ai.routing.decision import Exclusion, RouteDecision
from oneflow_ai.routing.latency import LatencyTracker
from oneflow_ai.routing.reasons import chosen, explained
from oneflow_ai.routing.static_facts import StaticFacts
from oneflow_ai.routing.strategy import (
    BalancedWeights,
    CandidateFacts,
    CandidateScore,
    RoutingStrategy,
    rank,
)

__all__ = ["CircuitView", "IntelligentRouter", "Pricer"]


class _Priced(Protocol):
    @property
    def micro_credits(self) -> int: ...


class Pricer(Protocol):
    """What the router needs of the pricing engine (``billing.PricingEngine`` is one)."""

    @property
    def catalog(self) -> Catalog: ...

    def price(self, model: str, usage: Usage) -> _Priced: ...


class CircuitView(Protocol):
    """Seconds until a model may be called again (0: now); no I/O. ``CircuitBreakers`` is one."""

    def open_for(self, provider: str, model: str | None = None) -> float: ...


class IntelligentRouter:
    """Routes requests over a pricing engine's catalog (see the module docstring)."""

    def __init__(
        self,
        engine: Pricer,
        *,
        latency: LatencyTracker | None = None,
        circuits: CircuitView | None = None,
        weights: BalancedWeights | None = None,
        near_equal: float = 0.05,
        max_fallbacks: int = 3,
    ) -> None:
        if near_equal < 0 or max_fallbacks < 0:
            raise ValueError("near_equal and max_fallbacks must be >= 0")
        self.engine = engine
        self.catalog = engine.catalog
        self.latency = latency if latency is not None else LatencyTracker(engine.catalog)
        self.circuits = circuits
        self.weights = weights or BalancedWeights()
        self.near_equal = near_equal
        self.max_fallbacks = max_fallbacks
        self._by_modality: dict[str, list[StaticFacts]] = {}
        for entry in self.catalog:
            self._by_modality.setdefault(entry.modality, []).append(StaticFacts.of(entry))

    def route(
        self,
        *,
        input_tokens: int = 0,
        output_tokens: int = 0,
        strategy: RoutingStrategy | str = RoutingStrategy.BALANCED,
        modality: str = "text",
        allowed_models: Collection[str] | None = None,
        model: str | None = None,
        images: int = 1,
        image_size: str | None = None,
        image_quality: str | None = None,
        characters: int = 0,
        audio_seconds: int = 0,
    ) -> RouteDecision:
        """Rank the candidates and choose the chain (see the module docstring).

        ``model`` pins the primary (an id or alias the caller asked for); the fallbacks are
        still ranked by ``strategy``. Raises ``NotFoundError`` for an unknown ``model``,
        ``PermissionDeniedError`` when it is not on the allow-list, ``BadRequestError`` when
        nothing can serve the request, ``ServiceUnavailableError`` when every candidate's
        circuit is open.
        """
        strategy = _strategy(strategy)
        usage = _usage(
            modality, input_tokens, output_tokens, images, image_size, image_quality, characters
        )
        if modality == "transcription":
            usage = Usage(audio_seconds=audio_seconds, estimated=True)
        allowed = self._allowed(allowed_models)
        pinned = self._pinned(model, modality, allowed)
        excluded: list[Exclusion] = []
        facts = self._candidates(modality, usage, allowed, pinned, excluded)
        if not facts:
            raise _nothing_fits(modality, excluded)
        ranked = self._with_circuits(rank(strategy, facts, self.weights))
        callable_ = [s for s in ranked if s.open_for <= 0]
        blocked = [s for s in ranked if s.open_for > 0]
        if not callable_:
            raise _all_circuits_open(modality, blocked)
        primary = callable_[0]
        if pinned is not None:
            primary = next((s for s in callable_ if s.model == pinned.id), primary)
        rest = [s for s in callable_ if s is not primary]
        chain = self._fallbacks(primary, rest) + [s.model for s in blocked]
        chain = self._span_providers(primary, chain[: self.max_fallbacks], rest)
        return self._decision(strategy, modality, primary, ranked, blocked, chain, excluded, pinned)

    def _decision(
        self,
        strategy: RoutingStrategy,
        modality: str,
        primary: CandidateScore,
        ranked: list[CandidateScore],
        blocked: list[CandidateScore],
        chain: list[str],
        excluded: list[Exclusion],
        pinned: ModelEntry | None,
    ) -> RouteDecision:
        pinned_id = pinned.id if pinned is not None else None
        return RouteDecision(
            primary_model=primary.model,
            primary_provider=primary.provider,
            estimated_credits=primary.credits,
            estimated_micro_credits=primary.micro_credits,
            fallback_chain=chain,
            reason=explained(
                strategy,
                primary,
                ranked,
                pinned=pinned_id,
                circuit_open=blocked,
                weights=self.weights,
            ),
            strategy=strategy,
            modality=modality,
            scores=tuple(ranked),
            excluded=tuple(excluded),
            summary=chosen(
                strategy,
                eligible=len(ranked),
                circuit_open=len(blocked),
                primary=primary.model,
                pinned=pinned_id,
            ),
        )

    # ---- candidates ------------------------------------------------------------------------

    def _candidates(
        self,
        modality: str,
        usage: Usage,
        allowed: frozenset[str] | None,
        pinned: ModelEntry | None,
        excluded: list[Exclusion],
    ) -> list[CandidateFacts]:
        """The facts of each model that can serve ``usage``; the others go to ``excluded``."""
        facts: list[CandidateFacts] = []
        tokens_in, tokens_out = usage.input_tokens, usage.output_tokens
        expected_ms = self.latency.expected_ms
        for static in self._by_modality.get(modality, ()):
            if not static.auto_route and (pinned is None or static.id != pinned.id):
                continue  # served only when named (catalog `auto_route: false`)
            why = static.unfit(tokens_in, tokens_out, allowed)
            if why is None:
                unit = static.token_prices
                if unit is not None:
                    micro = tokens_in * unit[0] + tokens_out * unit[1]
                else:
                    try:
                        micro = self.engine.price(static.id, usage).micro_credits
                    except ValueError as exc:  # e.g. no price for this image size
                        why = str(exc)
            if why is not None:
                excluded.append(Exclusion(static.id, why))
                if pinned is not None and static.id == pinned.id:
                    raise _pinned_error(pinned, why)
                continue
            facts.append(
                CandidateFacts(
                    static.id,
                    static.provider,
                    micro,
                    expected_ms(static.id, tokens_out),
                    static.quality,
                )
            )
        return facts

    def _allowed(self, allowed_models: Collection[str] | None) -> frozenset[str] | None:
        if allowed_models is None:
            return None
        ids = set()
        for name in allowed_models:
            entry = self.catalog.find(name)
            if entry is not None:
                ids.add(entry.id)
        return frozenset(ids)

    def _pinned(
        self, model: str | None, modality: str, allowed: frozenset[str] | None
    ) -> ModelEntry | None:
        if model is None:
            return None
        entry = self.catalog.find(model)
        if entry is None:
            raise NotFoundError(f"The model '{model}' does not exist", param="model")
        if entry.modality != modality:
            raise BadRequestError(
                f"The model '{model}' is a {entry.modality} model, not {modality}", param="model"
            )
        if allowed is not None and entry.id not in allowed:
            raise PermissionDeniedError(
                f"Your key may not use the model '{model}'", param="model", code="model_not_allowed"
            )
        return entry

    def _with_circuits(self, ranked: list[CandidateScore]) -> list[CandidateScore]:
        if self.circuits is None:
            return ranked
        out = []
        for s in ranked:
            wait = self.circuits.open_for(s.provider, s.model)
            out.append(s if wait <= 0 else s._replace(open_for=wait))
        return out

    # ---- the chain -------------------------------------------------------------------------

    def _fallbacks(self, primary: CandidateScore, rest: Sequence[CandidateScore]) -> list[str]:
        remaining = list(rest)
        chain: list[str] = []
        previous = primary.provider
        while remaining:
            best = remaining[0]
            pick = best
            for candidate in remaining:
                if best.score - candidate.score > self.near_equal:
                    break
                if candidate.provider != previous:
                    pick = candidate
                    break
            chain.append(pick.model)
            remaining.remove(pick)
            previous = pick.provider
        return chain

    def _span_providers(
        self, primary: CandidateScore, chain: list[str], rest: Sequence[CandidateScore]
    ) -> list[str]:
        if not chain:
            return chain
        providers = {s.model: s.provider for s in rest}
        if any(providers.get(m, primary.provider) != primary.provider for m in chain):
            return chain
        other = next((s for s in rest if s.provider != primary.provider), None)
        if other is None:
            return chain
        return [*chain[:-1], other.model]


def _strategy(value: RoutingStrategy | str) -> RoutingStrategy:
    try:
        return RoutingStrategy(value)
    except ValueError:
        names = ", ".join(s.value for s in RoutingStrategy)
        raise BadRequestError(
            f"Unknown routing strategy {value!r}; use one of {names}", param="strategy"
        ) from None


def _usage(
    modality: str,
    input_tokens: int,
    output_tokens: int,
    images: int,
    image_size: str | None,
    image_quality: str | None,
    characters: int,
) -> Usage:
    try:
        if modality == "text":
            return Usage(input_tokens=input_tokens, output_tokens=output_tokens, estimated=True)
        if modality == "image":
            return Usage(
                images=images, image_size=image_size, image_quality=image_quality, estimated=True
            )
        if modality == "audio":
            return Usage(characters=characters, estimated=True)
        if modality == "embedding":
            return Usage(input_tokens=input_tokens, estimated=True)
        if modality == "transcription":
            return Usage(estimated=True)
    except (TypeError, ValueError) as exc:
        raise BadRequestError(str(exc)) from None
    raise BadRequestError(
        f"Unknown modality {modality!r}; use text, image, audio, embedding or transcription",
        param="modality",
    )


def _pinned_error(entry: ModelEntry, why: str) -> BadRequestError:
    code = "context_length_exceeded" if "exceed" in why else "model_cannot_serve"
    return BadRequestError(
        f"The model '{entry.id}' cannot serve this request: {why}", param="model", code=code
    )


def _nothing_fits(modality: str, excluded: list[Exclusion]) -> BadRequestError:
    reasons = "; ".join(f"{e.model}: {e.reason}" for e in excluded) or "none in catalog"
    return BadRequestError(
        f"No {modality} model can serve this request ({reasons})", code="no_eligible_model"
    )


def _all_circuits_open(modality: str, blocked: list[CandidateScore]) -> ServiceUnavailableError:
    soonest = min(s.open_for for s in blocked)
    return ServiceUnavailableError(
        f"Every {modality} model that could serve this request is temporarily "
        f"unavailable (circuits open); retry in {soonest:.1f} s",
        code="all_circuits_open",
        retry_after=soonest,
    )
