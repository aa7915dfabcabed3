"""`RateLimiter`: admits or refuses a request against every limit that applies to it.

Scopes, each a set of sliding windows (requests per minute, per hour, tokens per minute):

- the caller: its API key (or signed-in user), with the key's own limits over the defaults
  `RATE_LIMIT_PER_MINUTE` / `RATE_LIMIT_PER_HOUR` / `RATE_LIMIT_TOKENS_PER_MINUTE`;
- its project: the project's aggregate limits, when set;
- the upstream provider, when named: `RATE_LIMIT_PROVIDERS`.

All windows of one request are checked and charged together, atomically (one Redis round trip
with the Redis store). Unlimited principals (the master key, admin keys marked unlimited) are
exempt. Token windows are charged with the caller's estimate at admission and topped up with
`record_tokens` once the real usage is known; a window in debt refuses until it has recovered.
`record_tokens` does not wait: the Redis store sends the top-ups with its next checks, ahead of
them (or on their own within 20 ms), so a request costs one round trip in all.

A request whose windows are all far from their limits costs no round trip (`limits/shares.py`):
the script call also grants this replica a *share* of each window, a few units charged in Redis
like real use, which it then admits from in memory. Shares are granted only while a window's
use stays within half its limit, hold at most a sixteenth of it (sized from the last 250 ms of
this replica's traffic), live at most 1 s and never past the slice they are charged to, and
what is left of them goes back to that slice; a share half spent (or half through its life)
asks for the next one off the request path, so steady traffic never waits for Redis. The
limit is never exceeded (every unit admitted is a unit of the window); the price is bounded
under-admission: a request may be refused while other replicas hold unused shares, at most a
sixteenth of the limit per replica and window, only when a window went from under half its
limit to full within a share's life (1 s). Token top-ups come out of a share that covers them,
else go to Redis. `X-RateLimit-Remaining` of a request admitted from a share is what remained
when the share was granted (its units are consecutive positions of the window, each handed out
once); `windows` reads shares held as used (conservative).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import NamedTuple, Protocol

import structlog

from oneflow_ai.domain.limits import LimitPolicy
from oneflow_ai.errors import RateLimitedError, ServiceUnavailableError
from oneflow_ai.limits.decision import EXEMPT, RateDecision
from oneflow_ai.limits.window import Bucket, BucketResult, WindowStore

__all__ = ["RateLimiter", "RateSubject", "WindowUsage"]

log = structlog.get_logger("oneflow.limits")

_MINUTE_MS = 60_000
_HOUR_MS = 3_600_000
_WINDOW_NAMES = {
    "rpm": "requests_per_minute",
    "rph": "requests_per_hour",
    "tpm": "tokens_per_minute",
}


class WindowUsage(NamedTuple):
    """One window of a caller: its limit, what is used of it, and when its oldest use leaves."""

    name: str  # a LimitPolicy field: requests_per_minute, requests_per_hour, tokens_per_minute
    limit: int
    used: int
    reset_seconds: float


class RateSubject(Protocol):
    """What the limiter needs of a caller (`auth.Principal` has all of it)."""

    @property
    def subject(self) -> str: ...

    @property
    def project_id(self) -> str: ...

    @property
    def unlimited(self) -> bool: ...

    @property
    def limits(self) -> LimitPolicy | None: ...

    @property
    def project_limits(self) -> LimitPolicy | None: ...


class RateLimiter:
    def __init__(
        self,
        store: WindowStore,
        *,
        defaults: LimitPolicy,
        providers: Mapping[str, LimitPolicy] | None = None,
        key_prefix: str = "oneflow:",
        fail_open: bool = True,
    ) -> None:
        self.store = store
        self._defaults = defaults
        self._providers = dict(providers or {})
        self._prefix = f"{key_prefix}rl:"
        self._fail_open = fail_open
        self._last_failure_log = 0.0
        self._plans: dict[_PlanKey, _Plan] = {}

    @property
    def defaults(self) -> LimitPolicy:
        """The deployment's limits for a caller without its own."""
        return self._defaults

    @defaults.setter
    def defaults(self, policy: LimitPolicy) -> None:
        self._defaults = policy
        self._plans.clear()

    @property
    def providers(self) -> Mapping[str, LimitPolicy]:
        """The limits of each upstream provider that has some."""
        return MappingProxyType(self._providers)

    @providers.setter
    def providers(self, policies: Mapping[str, LimitPolicy]) -> None:
        self._providers = dict(policies)
        self._plans.clear()

    # ---- the gateway's calls ---------------------------------------------------------------

    async def admit(
        self, subject: RateSubject, *, provider: str | None = None, tokens: int = 0
    ) -> RateDecision:
        """Count one request (and `tokens` estimated tokens) for the caller, its project and
        `provider`; raises `RateLimitedError` (429 with `Retry-After` and `X-RateLimit-*`)."""
        if subject.unlimited:
            return EXEMPT
        return await self._admit(self._plan(subject, provider).charged(tokens), what="Rate limit")

    async def admit_provider(self, provider: str, *, tokens: int = 0) -> RateDecision:
        """Count a call on `provider` alone (a fallback to another provider mid-request)."""
        return await self._admit(self._provider_buckets(provider, tokens), what="Provider limit")

    async def record_tokens(
        self, subject: RateSubject, *, tokens: int, provider: str | None = None
    ) -> None:
        """Add tokens used beyond the estimate to every token window (never refuses)."""
        if subject.unlimited or tokens <= 0:
            return
        plan = self._plan(subject, provider)
        if plan.token_windows:
            try:
                self.store.charge_later([_costing(b, tokens) for b in plan.token_windows])
            except Exception as exc:  # never refuses: a lost top-up is logged
                log.error("rate_limit_store_failed", error=str(exc), fail_open=True)

    async def admit_bucket(self, name: str, *, per_minute: int) -> RateDecision:
        """A plain requests-per-minute window by name (e.g. sign-in attempts per email)."""
        if per_minute <= 0:
            return EXEMPT
        bucket = Bucket(f"{self._prefix}n:{name}", per_minute, _MINUTE_MS, 1)
        return await self._admit([bucket], what="Too many attempts")

    async def windows(self, subject: RateSubject) -> list[WindowUsage]:
        """The caller's own windows and what is used of each now (charges nothing; empty for
        an unlimited caller, or when the counter store cannot be read and limits fail open)."""
        if subject.unlimited:
            return []
        buckets = [b._replace(cost=0) for b in self._caller_buckets(subject, 0)]
        results = await self._hit(buckets, check=False) if buckets else []
        return [
            WindowUsage(
                _WINDOW_NAMES[bucket.key.rsplit(":", 1)[1]],
                bucket.limit,
                result.used,
                result.reset_ms / 1000,
            )
            for bucket, result in zip(buckets, results or [], strict=False)
        ]

    def counts_tokens(self, subject: RateSubject, *, provider: str | None = None) -> bool:
        """Whether a tokens-per-minute window applies to this caller, its project or
        `provider`: only then is a request's token count worth making before it runs."""
        return not subject.unlimited and bool(self._plan(subject, provider).token_windows)

    # ---- buckets ---------------------------------------------------------------------------

    def _plan(self, subject: RateSubject, provider: str | None) -> _Plan:
        """The windows of a caller's request on `provider`, planned once per caller and
        provider and planned again when the caller's policies change (new defaults or provider
        limits drop every plan)."""
        policies = (subject.limits, subject.project_limits)
        key = (subject.subject, subject.project_id, provider)
        plan = self._plans.get(key)
        if plan is None or plan.policies != policies:  # the same policies are the same objects
            if len(self._plans) >= _MAX_PLANS:
                self._plans.clear()
            windows = (
                *self._caller_buckets(subject, 0),
                *self._project_buckets(subject, 0),
                *self._provider_buckets(provider, 0),
            )
            plan = self._plans[key] = _Plan(policies, windows)
        return plan

    def _caller_buckets(self, subject: RateSubject, tokens: int) -> list[Bucket]:
        policy = self.defaults if subject.limits is None else _merged(subject.limits, self.defaults)
        return _buckets(f"{self._prefix}s:{subject.subject}", policy, tokens)

    def _project_buckets(self, subject: RateSubject, tokens: int) -> list[Bucket]:
        if subject.project_limits is None:
            return []
        return _buckets(f"{self._prefix}p:{subject.project_id}", subject.project_limits, tokens)

    def _provider_buckets(self, provider: str | None, tokens: int) -> list[Bucket]:
        policy = self._providers.get(provider) if provider else None
        return [] if policy is None else _buckets(f"{self._prefix}v:{provider}", policy, tokens)

    # ---- deciding --------------------------------------------------------------------------

    async def _admit(self, buckets: Sequence[Bucket], *, what: str) -> RateDecision:
        if not buckets:
            return EXEMPT
        results = await self._hit(buckets, check=True)
        if results is None:
            return EXEMPT
        decision = _admitted(buckets, results)
        if decision is not None:
            return decision
        decision = _refused(buckets, results)
        raise RateLimitedError(
            f"{what} exceeded: retry after {decision.headers['Retry-After']} s",
            retry_after=decision.retry_after,
            headers=decision.headers,
        )

    async def _hit(self, buckets: Sequence[Bucket], *, check: bool) -> list[BucketResult] | None:
        try:
            return await self.store.hit(buckets, check=check)
        except Exception as exc:
            now = time.monotonic()
            if now - self._last_failure_log > 10:
                self._last_failure_log = now
                log.error("rate_limit_store_failed", error=str(exc), fail_open=self._fail_open)
            if self._fail_open:
                return None
            raise ServiceUnavailableError(
                "Rate limiting is unavailable; retry shortly", retry_after=1
            ) from exc

    async def close(self) -> None:
        await self.store.close()


_PlanKey = tuple[str, str, str | None]  # subject, project, provider
_Policies = tuple[LimitPolicy | None, LimitPolicy | None]  # the caller's own, its project's
#: Callers whose plans are kept (all are dropped when there are more).
_MAX_PLANS = 8192


class _Plan:
    """Every window of one caller's requests on one provider, in checking order: request
    windows charged one, token windows planned at zero and charged per request."""

    __slots__ = ("policies", "token_at", "token_windows", "windows")

    def __init__(self, policies: _Policies, windows: tuple[Bucket, ...]) -> None:
        self.policies = policies
        self.windows = windows
        self.token_at = tuple(i for i, b in enumerate(windows) if not b.counts_requests)
        self.token_windows = tuple(windows[i] for i in self.token_at)

    def charged(self, tokens: int) -> Sequence[Bucket]:
        """The windows of one request estimated at `tokens` tokens."""
        if tokens <= 0 or not self.token_at:
            return self.windows
        windows = list(self.windows)
        for i in self.token_at:
            windows[i] = _costing(windows[i], tokens)
        return windows


def _costing(bucket: Bucket, cost: int) -> Bucket:
    # tuple.__new__: no Python-level __new__ for the few buckets each request costs
    return tuple.__new__(Bucket, (bucket[0], bucket[1], bucket[2], cost, bucket[4]))


@functools.lru_cache(maxsize=4096)
def _merged(own: LimitPolicy, defaults: LimitPolicy) -> LimitPolicy:
    return own.over(defaults)


def _buckets(key: str, policy: LimitPolicy, tokens: int) -> list[Bucket]:
    """The windows of one scope, charged one request and `tokens` tokens."""
    return [
        bucket if bucket.counts_requests else bucket._replace(cost=max(0, tokens))
        for bucket in _planned(key, policy)
    ]


@functools.lru_cache(maxsize=8192)
def _planned(key: str, policy: LimitPolicy) -> tuple[Bucket, ...]:
    """The windows a policy sets on a scope (planned once per scope and policy: the keys are
    strings built per caller, and every request of that caller needs the same ones)."""
    buckets: list[Bucket] = []
    if policy.requests_per_minute:
        buckets.append(Bucket(f"{key}:rpm", policy.requests_per_minute, _MINUTE_MS, 1))
    if policy.requests_per_hour:
        buckets.append(Bucket(f"{key}:rph", policy.requests_per_hour, _HOUR_MS, 1))
    if policy.tokens_per_minute:
        buckets.append(Bucket(f"{key}:tpm", policy.tokens_per_minute, _MINUTE_MS, 0, False))
    return tuple(buckets)


def _admitted(buckets: Sequence[Bucket], results: Sequence[BucketResult]) -> RateDecision | None:
    """Headers from the caller's tightest request window (least remaining); None when a
    window refused."""
    best: BucketResult | None = None
    limit = remaining = 0
    for bucket, result in zip(buckets, results, strict=True):
        if not result.allowed:
            return None
        if bucket.counts_requests and (best is None or bucket.limit - result.used < remaining):
            best, limit, remaining = result, bucket.limit, bucket.limit - result.used
    if best is None:
        return EXEMPT
    return RateDecision(
        allowed=True, limit=limit, remaining=remaining, reset_seconds=best.reset_ms / 1000
    )


def _refused(buckets: Sequence[Bucket], results: Sequence[BucketResult]) -> RateDecision:
    """Headers from the refusing window that frees room last (every window must admit)."""
    refusals = [(b, r) for b, r in zip(buckets, results, strict=True) if not r.allowed]
    bucket, result = max(refusals, key=lambda pair: pair[1].retry_after_ms)
    return RateDecision(
        allowed=False,
        limit=bucket.limit,
        remaining=max(0, bucket.limit - result.used),
        reset_seconds=result.reset_ms / 1000,
        retry_after=result.retry_after_ms / 1000,
    )
