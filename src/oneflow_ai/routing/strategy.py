"""Routing strategies as pure scoring functions over the candidates' facts.

Each candidate has three facts: its estimated cost (whole micro-credits, exact), its expected
latency (ms)
and its quality (the catalog's 0..1 judgement). Each fact is normalized over the candidate set
into a component score in [0, 1], 1 being the best candidate:

- cost and latency on a **logarithmic** min-max scale,
  ``1 - (ln x - ln x_min) / (ln x_max - ln x_min)``: prices and latencies span orders of
  magnitude (Claude 3 Haiku is 75x cheaper than GPT-4 for the same tokens), and on a linear
  scale every cheap model would look alike; on a log scale "half the price" is worth the same
  everywhere. A free model (cost 0) counts as a tenth of the cheapest priced one.
- quality on a linear min-max scale, ``(q - q_min) / (q_max - q_min)``.

When every candidate has the same value the component is 1 for all. A strategy's score is:

- ``cost_optimized``: the cost component; ties go to higher quality, then lower latency;
- ``latency_optimized``: the latency component; ties go to lower cost, then higher quality;
- ``quality_optimized``: the quality component; ties go to lower cost, then lower latency;
- ``balanced``: ``(w_c * cost + w_l * latency + w_q * quality) / (w_c + w_l + w_q)`` with the
  configured weights (``ROUTING_WEIGHT_COST`` / ``_LATENCY`` / ``_QUALITY``, 1 each by default);
  ties go to lower cost, higher quality, lower latency.

Remaining ties go to the model id, so a ranking is always deterministic.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import NamedTuple

__all__ = [
    "BalancedWeights",
    "CandidateFacts",
    "CandidateScore",
    "RoutingStrategy",
    "rank",
]


class RoutingStrategy(enum.StrEnum):
    COST_OPTIMIZED = "cost_optimized"
    LATENCY_OPTIMIZED = "latency_optimized"
    QUALITY_OPTIMIZED = "quality_optimized"
    BALANCED = "balanced"


@dataclass(frozen=True, slots=True)
class BalancedWeights:
    """Relative weights of cost, latency and quality in the balanced score (any scale)."""

    cost: float = 1.0
    latency: float = 1.0
    quality: float = 1.0

    def __post_init__(self) -> None:
        values = (self.cost, self.latency, self.quality)
        if any(v < 0 or not math.isfinite(v) for v in values) or sum(values) <= 0:
            raise ValueError("weights must be finite, >= 0, and not all 0")


class CandidateFacts(NamedTuple):
    model: str
    provider: str
    micro_credits: int  # the estimated cost, exact (1 credit = 1,000,000 micro-credits)
    latency_ms: float
    quality: float


class CandidateScore(NamedTuple):
    """A ranked candidate: its facts, its normalized components and its strategy score.

    (Named tuples, not dataclasses: the router builds one per candidate per request.)"""

    model: str
    provider: str
    micro_credits: int
    latency_ms: float
    quality: float
    cost_score: float
    latency_score: float
    quality_score: float
    score: float
    open_for: float = 0.0  # seconds its circuit stays open (0: callable)

    @property
    def credits(self) -> Decimal:
        """The estimated cost in credits (exact, 6 decimal places)."""
        return Decimal(self.micro_credits).scaleb(-6)

    def as_dict(self) -> dict[str, object]:
        return {
            "model": self.model,
            "provider": self.provider,
            "estimated_credits": str(self.credits),
            "expected_latency_ms": round(self.latency_ms, 1),
            "quality": self.quality,
            "cost_score": round(self.cost_score, 4),
            "latency_score": round(self.latency_score, 4),
            "quality_score": round(self.quality_score, 4),
            "score": round(self.score, 4),
            "circuit_open": self.open_for > 0,
        }


def _log_scores(values: Sequence[float]) -> list[float]:
    floor = min([v for v in values if v > 0], default=10.0) / 10
    log = math.log
    logs = [log(v if v > floor else floor) for v in values]
    low, high = min(logs), max(logs)
    if high - low <= 1e-12:
        return [1.0] * len(values)
    return [1.0 - (x - low) / (high - low) for x in logs]


def _linear_scores(values: Sequence[float]) -> list[float]:
    low, high = min(values), max(values)
    if high - low <= 1e-12:
        return [1.0] * len(values)
    return [(v - low) / (high - low) for v in values]


def rank(
    strategy: RoutingStrategy,
    candidates: Sequence[CandidateFacts],
    weights: BalancedWeights | None = None,
) -> list[CandidateScore]:
    """Score ``candidates`` for ``strategy`` and sort them best first (module docstring)."""
    if not candidates:
        return []
    weights = weights or BalancedWeights()
    cost = _log_scores([c.micro_credits for c in candidates])
    latency = _log_scores([c.latency_ms for c in candidates])
    quality = _linear_scores([c.quality for c in candidates])
    if strategy is RoutingStrategy.COST_OPTIMIZED:
        scores = cost
    elif strategy is RoutingStrategy.LATENCY_OPTIMIZED:
        scores = latency
    elif strategy is RoutingStrategy.QUALITY_OPTIMIZED:
        scores = quality
    else:
        wc, wl, wq = weights.cost, weights.latency, weights.quality
        total = wc + wl + wq
        scores = [
            (wc * c + wl * lat + wq * q) / total
            for c, lat, q in zip(cost, latency, quality, strict=True)
        ]
    scored = [
        CandidateScore(f[0], f[1], f[2], f[3], f[4], c, lat, q, sc)
        for f, c, lat, q, sc in zip(candidates, cost, latency, quality, scores, strict=True)
    ]
    scored.sort(key=_SORT_KEYS[strategy])
    return scored


def _cost_key(s: CandidateScore) -> tuple[int, float, float, str]:
    return (s.micro_credits, -s.quality, s.latency_ms, s.model)


def _latency_key(s: CandidateScore) -> tuple[float, int, float, str]:
    return (s.latency_ms, s.micro_credits, -s.quality, s.model)


def _quality_key(s: CandidateScore) -> tuple[float, int, float, str]:
    return (-s.quality, s.micro_credits, s.latency_ms, s.model)


def _balanced_key(s: CandidateScore) -> tuple[float, int, float, float, str]:
    return (-s.score, s.micro_credits, -s.quality, s.latency_ms, s.model)


_SORT_KEYS: dict[RoutingStrategy, Callable[[CandidateScore], tuple[object, ...]]] = {
    RoutingStrategy.COST_OPTIMIZED: _cost_key,
    RoutingStrategy.LATENCY_OPTIMIZED: _latency_key,
    RoutingStrategy.QUALITY_OPTIMIZED: _quality_key,
    RoutingStrategy.BALANCED: _balanced_key,
}
