"""Why a model answers: at length (`explained`, the router's `RouteDecision.reason`) and in a
few words (`RouteReason`: what an answer's route header and log line say).

    cost_optimized: cheapest of 7 eligible
    model: gpt-4o requested
    fallback: gpt-4o failed (overloaded), answered by claude-3-5-sonnet-20241022

The router gives one with every decision (`RouteDecision.summary`, from `chosen`); a model the
caller named gets `requested(model)` (made once per model, not per request); a chain that
moved past its first model gets `fell_back(...)`; a model whose first deployment failed and
another answered adds that (`failed_over`: `model: gpt-4o requested; deployment openai failed
(overloaded), answered by openai-eu`). The text is printable ASCII (any other
character becomes `?`), so it goes unchanged into a header, a JSON log line or a terminal.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

from oneflow_ai.routing.strategy import BalancedWeights, CandidateScore, RoutingStrategy

__all__ = [
    "FALLBACK",
    "REQUESTED",
    "RouteReason",
    "chosen",
    "explained",
    "failed_over",
    "fell_back",
    "requested",
]

#: The `strategy` of a reason when the caller named the model, and when the chain fell back.
REQUESTED = "model"
FALLBACK = "fallback"

_BEST = {
    RoutingStrategy.COST_OPTIMIZED: "cheapest",
    RoutingStrategy.LATENCY_OPTIMIZED: "fastest",
    RoutingStrategy.QUALITY_OPTIMIZED: "highest quality",
    RoutingStrategy.BALANCED: "best balanced score",
}


@dataclass(frozen=True, slots=True)
class RouteReason:
    """`strategy` (a routing strategy, `model` or `fallback`), `detail`, and `text`: both as
    one printable-ASCII line (`strategy: detail`)."""

    strategy: str
    detail: str
    text: str

    @classmethod
    def of(cls, strategy: str, detail: str) -> RouteReason:
        return cls(strategy, detail, _printable(f"{strategy}: {detail}"))

    def __str__(self) -> str:
        return self.text


@functools.lru_cache(maxsize=1024)
def requested(model: str) -> RouteReason:
    """The caller named `model` (a catalog id)."""
    return RouteReason.of(REQUESTED, f"{model} requested")


def chosen(
    strategy: RoutingStrategy,
    *,
    eligible: int,
    circuit_open: int = 0,
    primary: str,
    pinned: str | None = None,
) -> RouteReason:
    """The router's pick among `eligible` candidates, `circuit_open` of which it put last;
    `pinned` is the model the caller asked for (it answers first unless its circuit is open)."""
    if pinned is not None and pinned == primary:
        return requested(pinned)
    best = _BEST[strategy]
    detail = "only eligible model" if eligible == 1 else f"{best} of {eligible} eligible"
    if circuit_open:
        detail += f", {circuit_open} with circuit open"
    if pinned is not None:
        detail = f"{pinned} unavailable (circuit open), {detail}"
    return RouteReason.of(strategy.value, detail)


def fell_back(passed: Sequence[tuple[str, str | None]], answered: str) -> RouteReason:
    """The models before `answered` in the chain, each with the kind of error it failed with
    (`None`: skipped, its circuit open)."""
    steps = [
        f"{model} failed ({kind})" if kind is not None else f"{model} skipped (circuit open)"
        for model, kind in passed
    ]
    return RouteReason.of(FALLBACK, f"{', '.join(steps)}, answered by {answered}")


def failed_over(
    reason: RouteReason, passed: Sequence[tuple[str, str]], answered_by: str
) -> RouteReason:
    """`reason`, plus the deployments (providers) of the answering model that failed, each with
    the kind of its error, before `answered_by` answered."""
    steps = ", ".join(f"{provider} failed ({kind})" for provider, kind in passed)
    return RouteReason.of(
        reason.strategy, f"{reason.detail}; deployment {steps}, answered by {answered_by}"
    )


def explained(
    strategy: RoutingStrategy,
    primary: CandidateScore,
    ranked: Sequence[CandidateScore],
    *,
    pinned: str | None,
    circuit_open: Sequence[CandidateScore],
    weights: BalancedWeights,
) -> str:
    """The pick at length: the primary's winning figure among the candidates, the requested
    model when its circuit is open, and the candidates tried last because theirs is."""
    n = len(ranked)
    if pinned is not None and primary.model == pinned:
        why = f"{primary.model} was requested"
    elif strategy is RoutingStrategy.COST_OPTIMIZED:
        why = f"{primary.model} has the lowest estimated cost ({primary.credits} credits)"
    elif strategy is RoutingStrategy.LATENCY_OPTIMIZED:
        why = f"{primary.model} has the lowest expected latency ({primary.latency_ms:.0f} ms)"
    elif strategy is RoutingStrategy.QUALITY_OPTIMIZED:
        why = f"{primary.model} has the highest quality score ({primary.quality:g})"
    else:
        w = weights
        why = (
            f"{primary.model} has the best balanced score {primary.score:.3f} (cost "
            f"{primary.cost_score:.2f}, latency {primary.latency_score:.2f}, quality "
            f"{primary.quality_score:.2f}; weights {w.cost:g}/{w.latency:g}/{w.quality:g})"
        )
    text = f"{strategy.value}: {why} among {n} candidate{'s' if n != 1 else ''}"
    if pinned is not None and primary.model != pinned:
        text += f"; the requested {pinned} is unavailable (circuit open)"
    if circuit_open:
        names = ", ".join(s.model for s in circuit_open)
        text += f"; circuit open, tried last: {names}"
    return text


def _printable(text: str) -> str:
    if text.isascii() and text.isprintable():
        return text
    return "".join(c if " " <= c <= "~" else "?" for c in text)
