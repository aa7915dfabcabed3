"""Rate limits as a pipeline pre-hook: the limiter of `limits/` admits each model call.

Before the call: one request and the input tokens OneFlow counts (of chat and embedding
calls, on the planned model's tokenizer; counted only when a tokens-per-minute window
applies) are charged to the caller, its project and the planned model's provider; a refusal
is the limiter's 429 (`Retry-After`, `X-RateLimit-*`) and no provider is called. The decision
is kept as the call's `rate_limit`; the edge renders it as `X-RateLimit-*` headers. An answer
from the response cache counts like a live one unless `count_cache_hits` is off
(CACHE_COUNTS_RATE_LIMITS). After the call: the tokens the answer really used beyond that
count are added to the token windows (never refused). Exempt callers (the master key,
unlimited keys) cost nothing.
"""

from __future__ import annotations

from oneflow_ai.gateway.call import Call
from oneflow_ai.gateway.estimate import TokenEstimator
from oneflow_ai.gateway.hooks import Hook, ShortCircuit
from oneflow_ai.limits import RateLimiter

__all__ = ["RateLimitHook"]

_CHARGED = "rate_limit.tokens"
#: The operations whose tokens count against tokens-per-minute limits.
_TOKEN_OPERATIONS = ("chat", "embedding")


class RateLimitHook(Hook):
    name = "rate_limit"

    def __init__(
        self, limiter: RateLimiter, estimator: TokenEstimator, *, count_cache_hits: bool = True
    ) -> None:
        self._limiter = limiter
        self._estimator = estimator
        self._count_cache_hits = count_cache_hits

    def _exempt(self, call: Call) -> bool:
        cached = call.cache is not None and call.cache.hit
        return call.principal.unlimited or (cached and not self._count_cache_hits)

    async def before(self, call: Call) -> ShortCircuit | None:
        if self._exempt(call):
            return None
        route = call.candidates[0] if call.candidates else None
        provider = route.provider_name if route is not None else None
        tokens = 0
        if (
            call.operation in _TOKEN_OPERATIONS
            and route is not None
            and self._limiter.counts_tokens(call.principal, provider=provider)
        ):
            tokens = call.prompt_tokens(self._estimator, route.entry)
        call.state[_CHARGED] = tokens
        decision = await self._limiter.admit(call.principal, provider=provider, tokens=tokens)
        if decision.limit is not None:
            call.rate_limit = decision
        return None

    async def after(self, call: Call) -> None:
        usage, route = call.usage, call.route
        if (
            self._exempt(call)
            or usage is None
            or route is None
            or call.operation not in _TOKEN_OPERATIONS
        ):
            return
        charged = call.state.get(_CHARGED, 0)
        beyond = (
            usage.input_tokens + usage.output_tokens - (charged if isinstance(charged, int) else 0)
        )
        if beyond > 0:
            await self._limiter.record_tokens(
                call.principal, tokens=beyond, provider=route.provider_name
            )
