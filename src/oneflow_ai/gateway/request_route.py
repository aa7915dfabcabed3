"""How a call was routed, as its usage record (and so the request log) keeps it."""

from __future__ import annotations

from oneflow_ai.domain.usage_record import ERROR_MESSAGE_CHARS, AttemptSummary, RequestRoute
from oneflow_ai.gateway.call import Attempt, Call

__all__ = ["request_route", "route_reason"]


def route_reason(call: Call) -> str | None:
    """Why the answering model, in a few words (the routing's reason, `X-OneFlow-Route`)."""
    return call.route_reason.text if call.route_reason is not None else None


def request_route(call: Call) -> RequestRoute:
    candidates = tuple(route.model for route in call.candidates)
    fallbacks = call.fallbacks
    if call.outcome == "error" and call.route is not None and call.route.model in candidates:
        fallbacks = candidates.index(call.route.model)  # how far down the chain it failed
    return RequestRoute(
        model_requested=call.model,
        strategy=call.strategy,
        reason=route_reason(call),
        fallbacks=fallbacks,
        candidates=candidates,
        attempts=tuple(_summary(attempt) for attempt in call.attempts),
    )


def _summary(attempt: Attempt) -> AttemptSummary:
    error = attempt.error
    return AttemptSummary(
        model=attempt.model,
        provider=attempt.provider,
        latency_ms=round(attempt.latency_ms),
        error=error.kind if error is not None else None,
        status=error.status if error is not None else None,
        message=error.message[:ERROR_MESSAGE_CHARS] if error is not None else None,
    )
