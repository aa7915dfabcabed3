"""The state of a circuit breaker: its rules (a pure state machine), its configuration, the
snapshot others read, and the stores that keep it (the protocol and the in-process store).

The breaker in front of a store, with its hot-path caching, is
:class:`~oneflow_ai.resilience.cached_breaker.CircuitBreaker`; the set of them the gateway
uses (one per provider and one per model) is
:class:`~oneflow_ai.resilience.breaker_set.CircuitBreakers`.

States::

    CLOSED --(failure rate >= threshold over the window, with >= min_calls calls)--> OPEN
    OPEN --(cool-down elapsed; checked when a call asks to pass)--> HALF_OPEN
    HALF_OPEN --(half_open_probes probes succeeded)--> CLOSED
    HALF_OPEN --(a probe failed)--> OPEN (a new cool-down)

The window is a sliding window of ``buckets`` time buckets covering ``window_seconds``:
outcomes land in the bucket ``floor(now / bucket_width)`` and a bucket leaves the window when
it is ``buckets`` buckets old. The breaker opens only when a failure arrives, the window holds
at least ``min_calls`` outcomes and their failure rate reaches ``failure_rate``.

In HALF_OPEN at most ``half_open_probes`` calls are admitted as probes (a probe slot is freed
when the probe reports, and every slot is handed out again if no probe reported for
``probe_timeout_seconds``, so a lost probe cannot wedge the circuit). Outcomes of calls that
were admitted while CLOSED but report while the circuit is OPEN or HALF_OPEN are ignored.

:class:`BreakerCore` is the reference implementation used in process; the Redis store
(:mod:`oneflow_ai.resilience.breaker_redis`) runs the same rules in an atomic Lua script, and
the test suite runs one behaviour suite against both.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "Admission",
    "BreakerConfig",
    "BreakerCore",
    "BreakerSnapshot",
    "BreakerStore",
    "CircuitState",
    "MemoryBreakerStore",
    "Outcome",
]


class CircuitState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Admission(enum.Enum):
    """What a breaker says to a call that asks to pass."""

    ALLOWED = "allowed"  # closed: a normal call
    PROBE = "probe"  # half-open: a probe call (must report its outcome)
    REJECTED = "rejected"  # open, or half-open with every probe slot taken


class Outcome(enum.Enum):
    SUCCESS = "success"
    FAILURE = "failure"
    NEUTRAL = "neutral"  # neither (cancelled, or a caller's mistake): frees a probe slot only


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    """Thresholds of one breaker (see the module docstring for their meaning)."""

    failure_rate: float = 0.5
    min_calls: int = 10
    window_seconds: float = 30.0
    buckets: int = 10
    cooldown_seconds: float = 15.0
    half_open_probes: int = 1
    probe_timeout_seconds: float = 60.0

    def __post_init__(self) -> None:
        if not 0 < self.failure_rate <= 1:
            raise ValueError("failure_rate must be in (0, 1]")
        if self.min_calls < 1 or self.buckets < 1 or self.half_open_probes < 1:
            raise ValueError("min_calls, buckets and half_open_probes must be >= 1")
        if self.window_seconds <= 0 or self.cooldown_seconds < 0:
            raise ValueError("window_seconds must be > 0 and cooldown_seconds >= 0")
        if self.probe_timeout_seconds <= 0:
            raise ValueError("probe_timeout_seconds must be > 0")

    @property
    def bucket_width(self) -> float:
        return self.window_seconds / self.buckets

    def bucket_of(self, now: float) -> int:
        return math.floor(now / (self.window_seconds / self.buckets))


@dataclass(frozen=True, slots=True)
class BreakerSnapshot:
    """What a breaker looks like at one moment (for routing, metrics, /ready and the admin API).

    ``successes``/``failures`` count the outcomes in the current window (CLOSED only);
    ``retry_at`` is when an OPEN circuit lets a probe through (Unix time).
    """

    key: str
    state: CircuitState
    successes: int = 0
    failures: int = 0
    opened_at: float | None = None
    retry_at: float | None = None
    probes_in_flight: int = 0
    probe_successes: int = 0
    times_opened: int = 0

    @property
    def calls(self) -> int:
        return self.successes + self.failures

    @property
    def failure_rate(self) -> float:
        return self.failures / self.calls if self.calls else 0.0

    def open_for(self, now: float) -> float:
        """Seconds until this circuit admits a call again (0 when it does now).

        Half-open counts as admitting: a probe may still be free, and the router treats such a
        model as available (the call itself will find out).
        """
        if self.state is CircuitState.OPEN and self.retry_at is not None:
            return max(0.0, self.retry_at - now)
        return 0.0

    def as_dict(self, now: float) -> dict[str, object]:
        return {
            "key": self.key,
            "state": self.state.value,
            "successes": self.successes,
            "failures": self.failures,
            "failure_rate": round(self.failure_rate, 4),
            "opened_at": self.opened_at,
            "retry_in_seconds": round(self.open_for(now), 3),
            "probes_in_flight": self.probes_in_flight,
            "probe_successes": self.probe_successes,
            "times_opened": self.times_opened,
        }


class BreakerCore:
    """One breaker's state, advanced by :meth:`acquire` and :meth:`record` (pure, no I/O)."""

    __slots__ = (
        "buckets",
        "opened_at",
        "probe_at",
        "probe_successes",
        "probes",
        "state",
        "times_opened",
    )

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Back to a fresh, closed breaker."""
        self.state = CircuitState.CLOSED
        self.opened_at = 0.0
        self.probe_at = 0.0  # last time a probe slot was handed out or reported
        self.probes = 0
        self.probe_successes = 0
        self.times_opened = 0
        # bucket id -> [successes, failures]
        self.buckets: dict[int, list[int]] = {}

    def acquire(self, config: BreakerConfig, now: float) -> Admission:
        if self.state is CircuitState.CLOSED:
            return Admission.ALLOWED
        if self.state is CircuitState.OPEN:
            if now < self.opened_at + config.cooldown_seconds:
                return Admission.REJECTED
            self.state = CircuitState.HALF_OPEN
            self.probes = 0
            self.probe_successes = 0
        elif self.probes > 0 and now - self.probe_at >= config.probe_timeout_seconds:
            self.probes = 0  # probes that never reported: hand their slots out again
        if self.probes + self.probe_successes < config.half_open_probes:
            self.probes += 1
            self.probe_at = now
            return Admission.PROBE
        return Admission.REJECTED

    def record(
        self,
        config: BreakerConfig,
        now: float,
        *,
        successes: int = 0,
        failures: int = 0,
        probe: Outcome | None = None,
    ) -> None:
        """Count normal outcomes (``successes``/``failures``) and/or one probe's ``probe``."""
        if probe is not None:
            self._record_probe(config, now, probe)
        self.count(config, now, successes, failures)

    def snapshot(self, key: str, config: BreakerConfig, now: float) -> BreakerSnapshot:
        successes = failures = 0
        if self.state is CircuitState.CLOSED:
            self._prune(config, config.bucket_of(now))
            for s, f in self.buckets.values():
                successes += s
                failures += f
        is_open = self.state is CircuitState.OPEN
        return BreakerSnapshot(
            key=key,
            state=self.state,
            successes=successes,
            failures=failures,
            opened_at=self.opened_at if self.state is not CircuitState.CLOSED else None,
            retry_at=self.opened_at + config.cooldown_seconds if is_open else None,
            probes_in_flight=self.probes,
            probe_successes=self.probe_successes,
            times_opened=self.times_opened,
        )

    def _record_probe(self, config: BreakerConfig, now: float, outcome: Outcome) -> None:
        if self.state is not CircuitState.HALF_OPEN:
            return
        self.probes = max(0, self.probes - 1)
        self.probe_at = now
        if outcome is Outcome.SUCCESS:
            self.probe_successes += 1
            if self.probe_successes >= config.half_open_probes:
                self._close()
        elif outcome is Outcome.FAILURE:
            self._open(now)

    def count(self, config: BreakerConfig, now: float, successes: int, failures: int) -> None:
        """Count normal outcomes: a closed breaker's (in any other state they are ignored)."""
        if not (successes or failures) or self.state is not CircuitState.CLOSED:
            return
        current = config.bucket_of(now)
        bucket = self.buckets.get(current)
        if bucket is None:
            bucket = self.buckets[current] = [0, 0]
        bucket[0] += successes
        bucket[1] += failures
        if not failures:
            return
        self._prune(config, current)
        total_s = total_f = 0
        for s, f in self.buckets.values():
            total_s += s
            total_f += f
        calls = total_s + total_f
        if calls >= config.min_calls and total_f >= config.failure_rate * calls:
            self._open(now)

    def _prune(self, config: BreakerConfig, current: int) -> None:
        oldest = current - config.buckets + 1
        for bucket_id in [b for b in self.buckets if b < oldest]:
            del self.buckets[bucket_id]

    def _open(self, now: float) -> None:
        self.state = CircuitState.OPEN
        self.opened_at = now
        self.probes = 0
        self.probe_successes = 0
        self.buckets.clear()
        self.times_opened += 1

    def _close(self) -> None:
        self.state = CircuitState.CLOSED
        self.probes = 0
        self.probe_successes = 0
        self.buckets.clear()


class BreakerStore(Protocol):
    """Where breaker state lives: :class:`MemoryBreakerStore` or ``RedisBreakerStore``."""

    shared: bool

    async def acquire(
        self, key: str, config: BreakerConfig, now: float
    ) -> tuple[Admission, BreakerSnapshot]: ...

    async def record(
        self,
        key: str,
        config: BreakerConfig,
        now: float,
        *,
        successes: int = 0,
        failures: int = 0,
        probe: Outcome | None = None,
    ) -> BreakerSnapshot: ...

    async def load(
        self, keys: list[str] | None, config_for: Callable[[str], BreakerConfig], now: float
    ) -> list[BreakerSnapshot]: ...

    async def reset(self, key: str) -> None: ...


class MemoryBreakerStore:
    """Breaker state in this process (the embedded default: no Redis configured)."""

    shared = False

    def __init__(self) -> None:
        self._cores: dict[str, BreakerCore] = {}

    def core(self, key: str) -> BreakerCore:
        """The state of breaker ``key`` (created closed on first use)."""
        core = self._cores.get(key)
        if core is None:
            core = self._cores[key] = BreakerCore()
        return core

    async def acquire(
        self, key: str, config: BreakerConfig, now: float
    ) -> tuple[Admission, BreakerSnapshot]:
        core = self.core(key)
        admission = core.acquire(config, now)
        return admission, core.snapshot(key, config, now)

    async def record(
        self,
        key: str,
        config: BreakerConfig,
        now: float,
        *,
        successes: int = 0,
        failures: int = 0,
        probe: Outcome | None = None,
    ) -> BreakerSnapshot:
        core = self.core(key)
        core.record(config, now, successes=successes, failures=failures, probe=probe)
        return core.snapshot(key, config, now)

    async def load(
        self, keys: list[str] | None, config_for: Callable[[str], BreakerConfig], now: float
    ) -> list[BreakerSnapshot]:
        names = sorted(self._cores) if keys is None else keys
        return [self.core(k).snapshot(k, config_for(k), now) for k in names]

    async def reset(self, key: str) -> None:
        core = self._cores.get(key)
        if core is not None:
            core.reset()
