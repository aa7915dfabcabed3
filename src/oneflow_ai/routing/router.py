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
from dataclasses import dataclass
from typing import Protocol

from oneflow_ai.catalog import Catalog, ModelEntry
from oneflow_ai.domain.money import MICRO_CREDITS_PER_USD
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
        self._by_modality: dict[str, list[_Static]] = {}
        for entry in self.catalog:
            self._by_modality.setdefault(entry.modality, []).append(_Static.of(entry))

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
        facts: list[CandidateFacts] = []
        excluded: list[Exclusion] = []
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
        if not facts:
            reasons = "; ".join(f"{e.model}: {e.reason}" for e in excluded) or "none in catalog"
            raise BadRequestError(
                f"No {modality} model can serve this request ({reasons})",
                code="no_eligible_model",
            )
        ranked = self._with_circuits(rank(strategy, facts, self.weights))
        callable_ = [s for s in ranked if s.open_for <= 0]
        blocked = [s for s in ranked if s.open_for > 0]
        if not callable_:
            soonest = min(s.open_for for s in blocked)
            raise ServiceUnavailableError(
                f"Every {modality} model that could serve this request is temporarily "
                f"unavailable (circuits open); retry in {soonest:.1f} s",
                code="all_circuits_open",
                retry_after=soonest,
            )
        primary = callable_[0]
        if pinned is not None:
            primary = next((s for s in callable_ if s.model == pinned.id), primary)
        rest = [s for s in callable_ if s is not primary]
        chain = self._fallbacks(primary, rest) + [s.model for s in blocked]
        chain = chain[: self.max_fallbacks]
        chain = self._span_providers(primary, chain, rest)
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
                pinned=pinned.id if pinned is not None else None,
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
                pinned=pinned.id if pinned is not None else None,
            ),
        )

    # ---- candidates ------------------------------------------------------------------------

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


@dataclass(frozen=True, slots=True)
class _Static:
    """What routing needs of a catalog entry, looked up once."""

    id: str
    provider: str
    quality: float
    priced: bool
    text: bool
    context_window: int
    max_output_tokens: int
    # Micro-credits per input and output token when both are whole numbers (every packaged
    # text model): the cost is then computed here exactly as the engine would (each line item
    # is tokens x price micro-credits and nothing is rounded), without the engine's overhead.
    token_prices: tuple[int, int] | None
    auto_route: bool = True

    @classmethod
    def of(cls, entry: ModelEntry) -> _Static:
        return cls(
            id=entry.id,
            provider=entry.provider,
            quality=entry.quality,
            priced=entry.is_priced,
            text=entry.modality == "text",
            context_window=entry.context_window or 0,
            max_output_tokens=entry.max_output_tokens or 0,
            token_prices=_whole_micro_credits_per_token(entry),
            auto_route=entry.auto_route,
        )

    def unfit(self, tokens_in: int, tokens_out: int, allowed: frozenset[str] | None) -> str | None:
        """Why this model cannot serve the request, or ``None``."""
        if not self.priced:
            return "has no price"
        if allowed is not None and self.id not in allowed:
            return "not allowed for this caller"
        if self.text:
            if self.max_output_tokens and tokens_out > self.max_output_tokens:
                return (
                    f"{tokens_out} output tokens exceed its maximum output of "
                    f"{self.max_output_tokens}"
                )
            if self.context_window and tokens_in + tokens_out > self.context_window:
                return (
                    f"{tokens_in + tokens_out} tokens exceed its context window of "
                    f"{self.context_window}"
                )
        return None


def _whole_micro_credits_per_token(entry: ModelEntry) -> tuple[int, int] | None:
    pricing = entry.pricing
    if entry.modality != "text" or entry.free or pricing is None:
        return None
    if pricing.input_per_mtok is None or pricing.output_per_mtok is None:
        return None
    per_token = MICRO_CREDITS_PER_USD // 1_000_000  # micro-credits per token at 1 USD/MTok
    units = (pricing.input_per_mtok * per_token, pricing.output_per_mtok * per_token)
    if any(u != u.to_integral_value() for u in units):
        return None
    return int(units[0]), int(units[1])


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
