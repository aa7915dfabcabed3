"""`CircuitBreaker`: one breaker (one key) in front of the store of its state
(:mod:`oneflow_ai.resilience.breaker_state`), with the hot-path caching described in
:mod:`oneflow_ai.resilience.breaker_set`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import structlog

from oneflow_ai.resilience.breaker_state import (
    Admission,
    BreakerConfig,
    BreakerSnapshot,
    BreakerStore,
    CircuitState,
    MemoryBreakerStore,
    Outcome,
)

__all__ = ["CircuitBreaker", "Spawner", "StateListener"]

log = structlog.get_logger("oneflow.resilience")

#: Runs a coroutine in the background (the registry's keeps track of its tasks).
Spawner = Callable[[Coroutine[Any, Any, None]], None]
#: Told of every state change this process sees: ``(key, previous, current)`` (for metrics).
StateListener = Callable[[str, CircuitState, CircuitState], None]


class CircuitBreaker:
    """One breaker (one key) in front of a store; see the module docstring for caching."""

    def __init__(
        self,
        key: str,
        config: BreakerConfig,
        store: BreakerStore,
        *,
        clock: Callable[[], float] = time.time,
        cache_ttl: float = 1.0,
        flush_batch: int = 50,
        spawn: Spawner | None = None,
        on_change: StateListener | None = None,
    ) -> None:
        self.key = key
        self._on_change = on_change
        self.config = config
        self._store = store
        self._clock = clock
        self._cache_ttl = cache_ttl
        self._flush_batch = flush_batch
        self._spawn: Spawner = spawn or _spawn_task
        self._snapshot = BreakerSnapshot(key=key, state=CircuitState.CLOSED)
        self._fetched_at = float("-inf")
        self._pending_successes = 0
        self._pending_failures = 0
        self._flushed_at = clock()
        self._busy = False  # a background flush or refresh is running
        # In process the state is right here: no cache, no snapshot per call.
        self._core = store.core(key) if isinstance(store, MemoryBreakerStore) else None

    @property
    def snapshot(self) -> BreakerSnapshot:
        """The last known state (exact in process; at most about ``cache_ttl`` old with Redis)."""
        if self._core is not None:
            return self._core.snapshot(self.key, self.config, self._clock())
        return self._snapshot

    def open_for(self, now: float | None = None) -> float:
        now = self._clock() if now is None else now
        core = self._core
        if core is not None:
            if core.state is not CircuitState.OPEN:
                return 0.0
            return max(0.0, core.opened_at + self.config.cooldown_seconds - now)
        return self._snapshot.open_for(now)

    @property
    def pending(self) -> bool:
        """Outcomes counted here and not yet sent to the shared store."""
        return bool(self._pending_successes or self._pending_failures)

    async def acquire(self) -> Admission:
        now = self._clock()
        admission = self.admit_now(now)
        if admission is not None:
            return admission
        admission, snapshot = await self._store.acquire(self.key, self.config, now)
        self.remember(snapshot, now)
        return admission

    def admit_now(self, now: float | None = None) -> Admission | None:
        """What `acquire` answers, when that needs no round trip to the store (in process,
        always; with Redis, while the cached state decides); None when it does."""
        core = self._core
        if core is not None and core.state is CircuitState.CLOSED:
            return Admission.ALLOWED  # what `core.acquire` answers, without asking the clock
        now = self._clock() if now is None else now
        if core is not None:
            before = core.state
            admission = core.acquire(self.config, now)
            if core.state is not before:
                self._changed(before, now)
            return admission
        if self._store.shared:
            cached = self._snapshot
            if cached.state is CircuitState.CLOSED:
                if now - self._fetched_at >= self._cache_ttl:
                    self._background(self.flush)
                return Admission.ALLOWED
            if (
                cached.state is CircuitState.OPEN
                and cached.retry_at is not None
                and now < cached.retry_at
                and now - self._fetched_at < self._cache_ttl
            ):
                return Admission.REJECTED
        return None

    async def release(self, outcome: Outcome, *, probe: bool) -> None:
        now = self._clock()
        if self.record_now(outcome, probe=probe, now=now):
            return
        snapshot = await self._store.record(
            self.key,
            self.config,
            now,
            successes=int(outcome is Outcome.SUCCESS and not probe),
            failures=int(outcome is Outcome.FAILURE and not probe),
            probe=outcome if probe else None,
        )
        self.remember(snapshot, now)

    def record_now(self, outcome: Outcome, *, probe: bool, now: float | None = None) -> bool:
        """Do what `release` does, when that needs no round trip to the store (in process,
        always; with Redis, an outcome counted here to be sent later): whether it did."""
        now = self._clock() if now is None else now
        core = self._core
        if core is not None:
            before = core.state
            if probe:
                core.record(self.config, now, probe=outcome)
            elif outcome is Outcome.SUCCESS:
                core.count(self.config, now, 1, 0)
            elif outcome is Outcome.FAILURE:
                core.count(self.config, now, 0, 1)
            if core.state is not before:
                self._changed(before, now)
            return True
        if probe or not self._store.shared:
            return False
        if outcome is Outcome.SUCCESS:
            self._pending_successes += 1
        elif outcome is Outcome.FAILURE:
            self._pending_failures += 1
        else:
            return True
        if (
            outcome is Outcome.FAILURE
            or self._pending_successes >= self._flush_batch
            or now - self._flushed_at >= self._cache_ttl
        ):
            self._background(self.flush)
        return True

    async def flush(self) -> None:
        """Send counted outcomes to the store and refresh the cached state from it."""
        successes, failures = self._pending_successes, self._pending_failures
        self._pending_successes = self._pending_failures = 0
        now = self._clock()
        self._flushed_at = now
        try:
            if successes or failures:
                snapshot = await self._store.record(
                    self.key, self.config, now, successes=successes, failures=failures
                )
            else:
                loaded = await self._store.load([self.key], lambda _key: self.config, now)
                snapshot = loaded[0]
        except Exception as exc:  # Redis trouble must never fail a call; keep the last state
            log.warning("circuit_sync_failed", circuit=self.key, error=repr(exc))
            self._fetched_at = now
            return
        self.remember(snapshot, now)

    def remember(self, snapshot: BreakerSnapshot, now: float) -> None:
        """Adopt ``snapshot`` as the cached state (logs a state change)."""
        before = self._snapshot.state
        self._snapshot = snapshot
        self._fetched_at = now
        if snapshot.state is not before:
            self._changed(before, now)

    def _changed(self, before: CircuitState, now: float) -> None:
        snapshot = self.snapshot
        if self._on_change is not None:
            self._on_change(self.key, before, snapshot.state)
        log.info(
            "circuit_state",
            circuit=self.key,
            state=snapshot.state.value,
            previous=before.value,
            times_opened=snapshot.times_opened,
        )

    def _background(self, job: Callable[[], Awaitable[None]]) -> None:
        if self._busy:
            return
        self._busy = True

        async def run() -> None:
            try:
                await job()
            finally:
                self._busy = False

        self._spawn(run())


_ORPHANS: set[asyncio.Task[None]] = set()


def _spawn_task(job: Coroutine[Any, Any, None]) -> None:
    task = asyncio.get_running_loop().create_task(job)
    _ORPHANS.add(task)
    task.add_done_callback(_ORPHANS.discard)
