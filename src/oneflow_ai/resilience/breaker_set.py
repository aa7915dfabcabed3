"""The set of circuit breakers a process uses: one per provider and one per (provider, model),
in process or shared through Redis.

:class:`CircuitBreakers` is what the rest of OneFlow uses::

    permit = await breakers.acquire("openai", "gpt-4o")   # CircuitOpenError when blocked
    try:
        ...call upstream...
    except ProviderError as exc:
        await breakers.release(permit, outcome_of(exc)); raise
    else:
        await breakers.release(permit, Outcome.SUCCESS)

A call passes only when both its provider's breaker and its model's breaker admit it; its
outcome is counted by both. The provider's breaker catches a provider-wide outage; the model's
breaker catches one model failing while its siblings work (its threshold can be set lower).

**Hot path and staleness with Redis.** A breaker keeps its last known snapshot locally. While
that snapshot says CLOSED the call passes without touching Redis; when it is older than
``cache_ttl`` (1 s by default) a refresh runs in the background (the call does not wait).
While it says OPEN and the cool-down has not elapsed the call is refused locally. Only the rare
transitions (probing a half-open circuit, reporting a probe) wait for Redis. Outcomes of normal
calls are counted locally and flushed in batches: a failure is flushed at once (in the
background), successes when ``flush_batch`` have accumulated or ``cache_ttl`` has passed. So a
replica learns that another replica opened a circuit within about ``cache_ttl``, and until then
it may send a few more calls to the failing provider; their failures are counted too. If Redis
is unreachable, breakers keep their last known state and traffic is not blocked by it.

:meth:`CircuitBreakers.open_for` is the synchronous, no-I/O view the router uses.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any, NamedTuple

import structlog

from oneflow_ai.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderRateLimitedError,
    ProviderTimeoutError,
    ProviderUnavailableError,
)
from oneflow_ai.resilience.breaker_state import (
    Admission,
    BreakerConfig,
    BreakerSnapshot,
    BreakerStore,
    CircuitState,
    MemoryBreakerStore,
    Outcome,
)
from oneflow_ai.resilience.cached_breaker import CircuitBreaker, StateListener
from oneflow_ai.tasks import stop

__all__ = [
    "BreakerStore",
    "CallPermit",
    "CircuitBreaker",
    "CircuitBreakers",
    "CircuitOpenError",
    "StateListener",
    "outcome_of",
]

log = structlog.get_logger("oneflow.resilience")


class CircuitOpenError(ProviderUnavailableError):
    """The circuit of a provider (or of one of its models) is open: the call was not made."""

    def __init__(self, key: str, *, retry_after: float | None, provider: str, model: str | None):
        seconds = f" for {retry_after:.1f} s" if retry_after else ""
        super().__init__(
            f"{key} is temporarily unavailable (circuit open{seconds})",
            provider=provider,
            model=model,
            code="circuit_open",
            retry_after=retry_after,
        )
        self.key = key


def outcome_of(error: BaseException | None) -> Outcome:
    """How a call's result counts for its breakers.

    Failures: the provider is unavailable (5xx, 529, connection errors), timed out, rate-limited
    us (429), or refused our credentials (its configuration is broken for every caller).
    A bad request or filtered content is the caller's doing: the provider answered, so it
    counts as a success. Cancellation, an open circuit and anything unexpected are neutral.
    """
    if error is None:
        return Outcome.SUCCESS
    if isinstance(error, CircuitOpenError):
        return Outcome.NEUTRAL
    if isinstance(
        error,
        ProviderUnavailableError
        | ProviderTimeoutError
        | ProviderRateLimitedError
        | ProviderAuthError,
    ):
        return Outcome.FAILURE
    if isinstance(error, ProviderError):
        return Outcome.SUCCESS
    return Outcome.NEUTRAL


class CallPermit(NamedTuple):
    """Leave to make one call; hand it back with :meth:`CircuitBreakers.release`."""

    provider: str
    model: str | None
    breakers: tuple[CircuitBreaker, ...]
    probes: tuple[bool, ...]  # per breaker: admitted as a half-open probe

    @property
    def probe(self) -> bool:
        return any(self.probes)


class CircuitBreakers:
    """The breakers of one process: one per provider and one per (provider, model).

    ``provider_config`` and ``model_config`` give the thresholds (the provider's usually a
    higher failure rate, so one failing model does not close a whole provider).
    """

    def __init__(
        self,
        store: BreakerStore | None = None,
        *,
        provider_config: BreakerConfig | None = None,
        model_config: BreakerConfig | None = None,
        clock: Callable[[], float] = time.time,
        cache_ttl: float = 1.0,
        flush_batch: int = 50,
        on_change: StateListener | None = None,
    ) -> None:
        self.store: BreakerStore = store if store is not None else MemoryBreakerStore()
        self.provider_config = provider_config or BreakerConfig(failure_rate=0.8)
        self.model_config = model_config or BreakerConfig()
        self._clock = clock
        self._cache_ttl = cache_ttl
        self._flush_batch = flush_batch
        self.on_change = on_change
        self._breakers: dict[str, CircuitBreaker] = {}
        self._allowed: dict[tuple[str, str | None], CallPermit] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.Task[None] | None = None

    @property
    def shared(self) -> bool:
        return self.store.shared

    @staticmethod
    def model_key(provider: str, model: str) -> str:
        return f"{provider}/{model}"

    def config_for(self, key: str) -> BreakerConfig:
        return self.model_config if "/" in key else self.provider_config

    def breaker(self, key: str) -> CircuitBreaker:
        found = self._breakers.get(key)
        if found is None:
            found = self._breakers[key] = CircuitBreaker(
                key,
                self.config_for(key),
                self.store,
                clock=self._clock,
                cache_ttl=self._cache_ttl,
                flush_batch=self._flush_batch,
                spawn=self._spawn,
                on_change=self._changed,
            )
        return found

    def keys_for(self, provider: str, model: str | None) -> tuple[str, ...]:
        if model is None:
            return (provider,)
        return (provider, self.model_key(provider, model))

    def breakers_for(self, provider: str, model: str | None) -> tuple[CircuitBreaker, ...]:
        """The provider's breaker, then the model's (looked up once per pair)."""
        return self._allowed_permit(provider, model).breakers

    def _allowed_permit(self, provider: str, model: str | None) -> CallPermit:
        """The permit of a call that every breaker of the pair admitted as a normal call (the
        usual): made once per pair, handed out to every such call."""
        permit = self._allowed.get((provider, model))
        if permit is None:
            breakers = tuple(self.breaker(key) for key in self.keys_for(provider, model))
            permit = CallPermit(provider, model, breakers, (False,) * len(breakers))
            self._allowed[(provider, model)] = permit
        return permit

    async def acquire(self, provider: str, model: str | None = None) -> CallPermit:
        """Leave for one call, or :class:`CircuitOpenError` naming the open circuit."""
        allowed = self._allowed_permit(provider, model)
        breakers = allowed.breakers
        probes: list[bool] = []
        for index, breaker in enumerate(breakers):
            admission = breaker.admit_now()  # no coroutine when no store is asked (the usual)
            if admission is None:
                admission = await breaker.acquire()
            if admission is Admission.REJECTED:
                for granted, probe in zip(breakers[:index], probes, strict=True):
                    await granted.release(Outcome.NEUTRAL, probe=probe)  # hand it back
                retry = breaker.open_for()
                raise CircuitOpenError(
                    breaker.key, retry_after=retry or None, provider=provider, model=model
                )
            probes.append(admission is Admission.PROBE)
        if True in probes:
            return CallPermit(provider, model, breakers, tuple(probes))
        return allowed

    async def release(self, permit: CallPermit, outcome: Outcome) -> None:
        now = self._clock()
        for breaker, probe in zip(permit.breakers, permit.probes, strict=True):
            if not breaker.record_now(outcome, probe=probe, now=now):
                await breaker.release(outcome, probe=probe)

    def open_for(self, provider: str, model: str | None = None) -> float:
        """Seconds until a call to ``model`` of ``provider`` may pass (0: now). No I/O."""
        now = self._clock()
        permit = self._allowed.get((provider, model))
        if permit is not None:
            pair = permit.breakers
        else:  # never called from here: whatever a refresh brought in
            found = (self._breakers.get(k) for k in self.keys_for(provider, model))
            pair = tuple(b for b in found if b is not None)
        longest = 0.0
        for breaker in pair:
            wait = breaker.open_for(now)
            if wait > longest:
                longest = wait
        return longest

    def snapshots(self) -> list[BreakerSnapshot]:
        """This process's view of every breaker it has used (for metrics and /ready)."""
        return [self._breakers[k].snapshot for k in sorted(self._breakers)]

    async def load_all(self) -> list[BreakerSnapshot]:
        """Every breaker in the store (with Redis: those any replica used)."""
        keys = None if self.store.shared else sorted(self._breakers)
        return await self.store.load(keys, self.config_for, self._clock())

    async def sync(self) -> None:
        """Flush counted outcomes and refresh every cached state from Redis, including
        circuits that only other replicas have used (Redis only; no-op in process)."""
        if not self.store.shared:
            return
        for key in sorted(self._breakers):
            breaker = self._breakers[key]
            if breaker.pending:
                await breaker.flush()
        now = self._clock()
        try:
            snapshots = await self.store.load(None, self.config_for, now)
        except Exception as exc:  # keep the last known states
            log.warning("circuit_sync_failed", error=repr(exc))
            return
        for snapshot in snapshots:
            self.breaker(snapshot.key).remember(snapshot, now)

    async def start(self) -> None:
        """With Redis, refresh every circuit each ``cache_ttl`` in the background, so the
        router's view stays fresh even for models this replica is not calling."""
        if not self.store.shared or self._loop is not None:
            return
        self._loop = asyncio.get_running_loop().create_task(self._refresh_forever())

    async def aclose(self) -> None:
        """Stop the refresh loop, finish background work, flush what is still counted."""
        await stop(self._loop)
        self._loop = None
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        for breaker in self._breakers.values():
            if breaker.pending:
                await breaker.flush()

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(max(0.1, self._cache_ttl))
            await self.sync()

    def _changed(self, key: str, previous: CircuitState, current: CircuitState) -> None:
        if self.on_change is not None:
            self.on_change(key, previous, current)

    def _spawn(self, job: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(job)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
