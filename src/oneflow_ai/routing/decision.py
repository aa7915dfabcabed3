"""The router's answer: which model first, which next, why, and what it should cost."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from oneflow_ai.routing.reasons import RouteReason
from oneflow_ai.routing.strategy import CandidateScore, RoutingStrategy

__all__ = ["Exclusion", "RouteDecision"]


@dataclass(frozen=True, slots=True)
class Exclusion:
    """A catalog model of the modality that was not a candidate, and why."""

    model: str
    reason: str


@dataclass(frozen=True, slots=True)
class RouteDecision:
    """A routing decision.

    ``primary_model`` is called first, then ``fallback_chain`` in order (the gateway's fallback
    executor walks ``chain``). ``estimated_credits`` is the primary's estimated cost for the
    given token counts (exact, ``Decimal``; ``estimated_micro_credits`` is the same amount as
    an integer). ``scores`` holds every candidate in rank order
    with its cost, latency and quality components; ``excluded`` the models that could not
    serve the request and why. ``reason`` explains the pick at length; ``summary`` in a few
    words (``cost_optimized: cheapest of 7 eligible``), as an answer's route header says it.
    """

    primary_model: str
    primary_provider: str
    estimated_credits: Decimal
    fallback_chain: list[str]
    reason: str
    strategy: RoutingStrategy
    modality: str
    estimated_micro_credits: int = 0
    scores: tuple[CandidateScore, ...] = ()
    excluded: tuple[Exclusion, ...] = field(default=())
    summary: RouteReason | None = None

    @property
    def chain(self) -> list[str]:
        """The primary followed by the fallbacks: the order in which models are tried."""
        return [self.primary_model, *self.fallback_chain]

    def score_of(self, model: str) -> CandidateScore:
        for score in self.scores:
            if score.model == model:
                return score
        raise KeyError(model)

    def provider_of(self, model: str) -> str:
        return self.score_of(model).provider

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready view (for ``/api/v1/estimate`` and logs)."""
        return {
            "primary_model": self.primary_model,
            "primary_provider": self.primary_provider,
            "estimated_credits": str(self.estimated_credits),
            "fallback_chain": list(self.fallback_chain),
            "strategy": self.strategy.value,
            "modality": self.modality,
            "reason": self.reason,
            "summary": self.summary.text if self.summary is not None else None,
            "candidates": [s.as_dict() for s in self.scores],
            "excluded": [{"model": e.model, "reason": e.reason} for e in self.excluded],
        }
