"""Routing: strategies (pure scoring), the latency tracker, and the `IntelligentRouter`."""

from oneflow_ai.routing.decision import Exclusion, RouteDecision
from oneflow_ai.routing.latency import LatencyEstimate, LatencyTracker
from oneflow_ai.routing.reasons import RouteReason
from oneflow_ai.routing.router import CircuitView, IntelligentRouter, Pricer
from oneflow_ai.routing.strategy import (
    BalancedWeights,
    CandidateFacts,
    CandidateScore,
    RoutingStrategy,
    rank,
)

__all__ = [
    "BalancedWeights",
    "CandidateFacts",
    "CandidateScore",
    "CircuitView",
    "Exclusion",
    "IntelligentRouter",
    "LatencyEstimate",
    "LatencyTracker",
    "Pricer",
    "RouteDecision",
    "RouteReason",
    "RoutingStrategy",
    "rank",
]
