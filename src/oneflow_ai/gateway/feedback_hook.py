"""What each call teaches the rest of the gateway, as a pipeline hook (it does no I/O).

- the router's latency tracker learns the answering model's time to first token (streams) and
  total time, measured from the start of the attempt that answered (failed attempts before it
  are not that model's latency);
- metrics: tokens and credits per provider and model, each fallback taken, and refusals by
  OneFlow's own rate limits and budgets.

It runs first among the hooks, so its `after` sees calls the others refused.
"""

from __future__ import annotations

import time
from itertools import pairwise

from oneflow_ai.errors import InsufficientCreditsError, RateLimitedError
from oneflow_ai.gateway.call import Call
from oneflow_ai.gateway.hooks import Hook
from oneflow_ai.observability.metrics import GatewayMetrics
from oneflow_ai.routing.latency import LatencyTracker

__all__ = ["FeedbackHook"]


class FeedbackHook(Hook):
    name = "feedback"

    def __init__(self, latency: LatencyTracker, metrics: GatewayMetrics) -> None:
        self._latency = latency
        self._metrics = metrics

    async def after(self, call: Call) -> None:
        metrics = self._metrics
        error = call.error
        if isinstance(error, InsufficientCreditsError):
            metrics.record_budget_rejected(error.code or "credits")
        elif isinstance(error, RateLimitedError):  # OneFlow's limits; a provider's is another type
            metrics.record_rate_limited(error.code or "rate_limit")
        attempts = call.attempts
        for failed, following in pairwise(attempts):
            reason = failed.error.kind if failed.error is not None else "error"
            metrics.record_fallback(failed.model, following.model, reason)
        route, usage = call.route, call.usage
        if route is None or usage is None:
            return
        metrics.count_tokens(
            route.provider_name, route.model, usage.input_tokens, usage.output_tokens
        )
        if call.cost is not None:
            metrics.add_credits(route.provider_name, route.model, call.cost.micro_credits)
        if call.outcome != "ok" or not attempts or attempts[-1].error is not None:
            return
        answered = attempts[-1]
        finished = call.finished_at if call.finished_at is not None else time.perf_counter()
        self._latency.observe(
            answered.model,
            total_ms=(finished - answered.started_at) * 1000,
            ttft_ms=answered.latency_ms if call.stream else None,
            output_tokens=usage.output_tokens,
        )
