"""Hypothesis stateful tests: the breaker against a plain model of its specification.

The model keeps every outcome as a (time, failed) event and recomputes the window from scratch
on each question, where the breaker keeps bucket counters; both answer every call's admission
and report state, probes in flight and the window's counts, which must agree after every step.
The same machine runs against the in-process core and against the Redis store's Lua scripts.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
import redis.asyncio
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    precondition,
    rule,
)

from oneflow_ai.resilience import (
    BreakerConfig,
    CircuitState,
    MemoryBreakerStore,
    Outcome,
    RedisBreakerStore,
)
from oneflow_ai.resilience.breaker_set import BreakerStore
from oneflow_ai.resilience.breaker_state import Admission
from tests.conftest import redis_server_url

pytestmark = pytest.mark.property
T = TypeVar("T")

CFG = BreakerConfig(
    failure_rate=0.5,
    min_calls=4,
    window_seconds=8.0,
    buckets=4,
    cooldown_seconds=3.0,
    half_open_probes=2,
    probe_timeout_seconds=6.0,
)


@dataclass
class Model:
    """The specification, written as plainly as possible."""

    state: str = "closed"
    opened_at: float = 0.0
    probes: int = 0
    probe_successes: int = 0
    probe_at: float = 0.0
    events: list[tuple[float, bool]] = field(default_factory=list)

    def window(self, now: float) -> list[bool]:
        width = CFG.window_seconds / CFG.buckets
        current = math.floor(now / width)
        oldest = current - CFG.buckets + 1
        return [failed for t, failed in self.events if math.floor(t / width) >= oldest]

    def acquire(self, now: float) -> str:
        if self.state == "closed":
            return "allowed"
        if self.state == "open":
            if now < self.opened_at + CFG.cooldown_seconds:
                return "rejected"
            self.state, self.probes, self.probe_successes = "half_open", 0, 0
        elif self.probes > 0 and now - self.probe_at >= CFG.probe_timeout_seconds:
            self.probes = 0
        if self.probes + self.probe_successes < CFG.half_open_probes:
            self.probes += 1
            self.probe_at = now
            return "probe"
        return "rejected"

    def finish(self, now: float, probe: bool, outcome: Outcome) -> None:
        if probe:
            if self.state != "half_open":
                return
            self.probes = max(0, self.probes - 1)
            self.probe_at = now
            if outcome is Outcome.SUCCESS:
                self.probe_successes += 1
                if self.probe_successes >= CFG.half_open_probes:
                    self.state, self.events = "closed", []
            elif outcome is Outcome.FAILURE:
                self.open(now)
            return
        if self.state != "closed" or outcome is Outcome.NEUTRAL:
            return
        failed = outcome is Outcome.FAILURE
        self.events.append((now, failed))
        window = self.window(now)
        calls = len(window)
        if failed and calls >= CFG.min_calls and sum(window) >= CFG.failure_rate * calls:
            self.open(now)

    def open(self, now: float) -> None:
        self.state, self.opened_at, self.events = "open", now, []
        self.probes = self.probe_successes = 0


@dataclass(frozen=True)
class Permit:
    probe: bool
    serial: int


class BreakerMachine(RuleBasedStateMachine):
    """Drives a store and the model with the same calls and compares them."""

    permits = Bundle("permits")

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.model = Model()
        self.now = 1_000.0
        self.serial = 0
        self.key = "openai/gpt-4o"
        self.store = self.make_store()

    def make_store(self) -> BreakerStore:
        return MemoryBreakerStore()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coroutine)

    def teardown(self) -> None:
        self.loop.close()

    @rule(seconds=st.sampled_from([0.0, 0.5, 1.0, 1.99, 2.0, 3.0, 6.0, 9.0]) | st.floats(0, 12))
    def advance(self, seconds: float) -> None:
        self.now += seconds

    @rule(target=permits)
    def start_call(self) -> Permit:
        expected = self.model.acquire(self.now)
        admission, _ = self.run(self.store.acquire(self.key, CFG, self.now))
        assert admission.value == expected
        self.serial += 1
        if admission is Admission.REJECTED:
            return Permit(probe=False, serial=-self.serial)  # a refused call: nothing to finish
        return Permit(probe=admission is Admission.PROBE, serial=self.serial)

    @rule(permit=consumes(permits), outcome=st.sampled_from(list(Outcome)))
    def finish_call(self, permit: Permit, outcome: Outcome) -> None:
        if permit.serial < 0:
            return
        self.model.finish(self.now, permit.probe, outcome)
        if permit.probe:
            self.run(self.store.record(self.key, CFG, self.now, probe=outcome))
        else:
            self.run(
                self.store.record(
                    self.key,
                    CFG,
                    self.now,
                    successes=int(outcome is Outcome.SUCCESS),
                    failures=int(outcome is Outcome.FAILURE),
                )
            )

    @precondition(lambda self: self.model.state == "closed")
    @rule(failed=st.booleans())
    def quick_call(self, failed: bool) -> None:
        """A call that starts and ends at once (most traffic)."""
        assert self.model.acquire(self.now) == "allowed"
        outcome = Outcome.FAILURE if failed else Outcome.SUCCESS
        self.model.finish(self.now, False, outcome)
        self.run(
            self.store.record(
                self.key, CFG, self.now, successes=int(not failed), failures=int(failed)
            )
        )

    @invariant()
    def agrees_with_the_model(self) -> None:
        (snap,) = self.run(self.store.load([self.key], lambda _k: CFG, self.now))
        model = self.model
        assert snap.state is CircuitState(model.state)
        assert snap.probes_in_flight == model.probes
        if model.state == "half_open":
            assert snap.probe_successes == model.probe_successes
        if model.state == "closed":
            window = model.window(self.now)
            assert (snap.failures, snap.calls) == (sum(window), len(window))
        if model.state == "open":
            assert snap.retry_at == model.opened_at + CFG.cooldown_seconds

    @invariant()
    def never_more_probes_than_allowed(self) -> None:
        assert 0 <= self.model.probes <= CFG.half_open_probes


class RedisBreakerMachine(BreakerMachine):
    def make_store(self) -> BreakerStore:
        url = redis_server_url()
        assert url is not None
        self.client = redis.asyncio.Redis.from_url(url)
        self.prefix = f"oneflowtest:{uuid.uuid4().hex[:10]}:"
        return RedisBreakerStore(self.client, prefix=self.prefix)

    def teardown(self) -> None:
        async def clean() -> None:
            keys = [k async for k in self.client.scan_iter(match=f"{self.prefix}*")]
            if keys:
                await self.client.delete(*keys)
            await self.client.aclose()

        self.loop.run_until_complete(clean())
        super().teardown()


BreakerMachine.TestCase.settings = settings(max_examples=300, stateful_step_count=60, deadline=None)
TestBreakerAgainstModel = BreakerMachine.TestCase

RedisBreakerMachine.TestCase.settings = settings(
    max_examples=40, stateful_step_count=40, deadline=None
)
TestRedisBreakerAgainstModel = pytest.mark.redis(RedisBreakerMachine.TestCase)
