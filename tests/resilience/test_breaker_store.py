"""The breaker's rules, on both stores: in process and Redis (the same Lua-coded rules)."""

from __future__ import annotations

from oneflow_ai.resilience import BreakerConfig, CircuitState, Outcome
from oneflow_ai.resilience.breaker_set import BreakerStore
from oneflow_ai.resilience.breaker_state import Admission

CFG = BreakerConfig(
    failure_rate=0.5,
    min_calls=4,
    window_seconds=10.0,
    buckets=10,
    cooldown_seconds=5.0,
    half_open_probes=2,
    probe_timeout_seconds=30.0,
)
T0 = 1_000_000.0


async def open_circuit(store: BreakerStore, key: str, now: float) -> None:
    for _ in range(4):
        await store.record(key, CFG, now, failures=1)
    admission, snap = await store.acquire(key, CFG, now)
    assert admission is Admission.REJECTED and snap.state is CircuitState.OPEN


async def test_stays_closed_below_min_calls_then_opens_at_the_failure_rate(
    breaker_store: BreakerStore,
) -> None:
    store = breaker_store
    await store.record("openai", CFG, T0, successes=2)
    snap = await store.record("openai", CFG, T0, failures=1)
    assert snap.state is CircuitState.CLOSED and snap.calls == 3  # 3 < min_calls
    snap = await store.record("openai", CFG, T0 + 0.5, failures=1)
    # 4 calls, 2 failures: a rate of 0.5 reaches the threshold
    assert snap.state is CircuitState.OPEN
    assert snap.opened_at == T0 + 0.5
    assert snap.retry_at == T0 + 5.5
    assert snap.times_opened == 1
    assert snap.calls == 0  # the window starts afresh


async def test_a_low_failure_rate_keeps_it_closed(breaker_store: BreakerStore) -> None:
    store = breaker_store
    await store.record("p", CFG, T0, successes=7)
    for _ in range(3):
        snap = await store.record("p", CFG, T0, failures=1)
    assert snap.state is CircuitState.CLOSED  # 3 / 10 < 0.5
    assert (snap.successes, snap.failures) == (7, 3)


async def test_failures_older_than_the_window_do_not_count(breaker_store: BreakerStore) -> None:
    store = breaker_store
    # bucket width 1 s; the window holds the current bucket and the 9 before it
    await store.record("p", CFG, T0, failures=3)
    snap = await store.record("p", CFG, T0 + 9.99, failures=1)
    assert snap.state is CircuitState.OPEN  # 4 failures within 10 buckets

    await store.record("q", CFG, T0, failures=3)
    snap = await store.record("q", CFG, T0 + 10.0, failures=1)
    assert snap.state is CircuitState.CLOSED  # the first bucket has left the window
    assert snap.failures == 1


async def test_open_refuses_until_the_cool_down_then_admits_limited_probes(
    breaker_store: BreakerStore,
) -> None:
    store = breaker_store
    await open_circuit(store, "p", T0)
    admission, snap = await store.acquire("p", CFG, T0 + 4.99)
    assert admission is Admission.REJECTED
    assert abs(snap.open_for(T0 + 4.99) - 0.01) < 1e-6

    first, snap = await store.acquire("p", CFG, T0 + 5.0)
    assert first is Admission.PROBE and snap.state is CircuitState.HALF_OPEN
    second, _ = await store.acquire("p", CFG, T0 + 5.0)
    third, snap = await store.acquire("p", CFG, T0 + 5.1)
    assert (second, third) == (Admission.PROBE, Admission.REJECTED)
    assert snap.probes_in_flight == 2


async def test_half_open_closes_after_every_probe_succeeded(breaker_store: BreakerStore) -> None:
    store = breaker_store
    await open_circuit(store, "p", T0)
    await store.acquire("p", CFG, T0 + 5)
    await store.acquire("p", CFG, T0 + 5)
    snap = await store.record("p", CFG, T0 + 5.2, probe=Outcome.SUCCESS)
    assert snap.state is CircuitState.HALF_OPEN and snap.probe_successes == 1
    snap = await store.record("p", CFG, T0 + 5.3, probe=Outcome.SUCCESS)
    assert snap.state is CircuitState.CLOSED
    assert snap.calls == 0
    admission, _ = await store.acquire("p", CFG, T0 + 5.4)
    assert admission is Admission.ALLOWED


async def test_a_failed_probe_opens_it_again_with_a_new_cool_down(
    breaker_store: BreakerStore,
) -> None:
    store = breaker_store
    await open_circuit(store, "p", T0)
    await store.acquire("p", CFG, T0 + 5)
    snap = await store.record("p", CFG, T0 + 6, probe=Outcome.FAILURE)
    assert snap.state is CircuitState.OPEN
    assert snap.opened_at == T0 + 6 and snap.retry_at == T0 + 11
    assert snap.times_opened == 2
    admission, _ = await store.acquire("p", CFG, T0 + 10.9)
    assert admission is Admission.REJECTED


async def test_a_neutral_probe_frees_its_slot(breaker_store: BreakerStore) -> None:
    store = breaker_store
    await open_circuit(store, "p", T0)
    await store.acquire("p", CFG, T0 + 5)
    await store.acquire("p", CFG, T0 + 5)
    snap = await store.record("p", CFG, T0 + 5.1, probe=Outcome.NEUTRAL)
    assert snap.state is CircuitState.HALF_OPEN and snap.probes_in_flight == 1
    admission, _ = await store.acquire("p", CFG, T0 + 5.2)
    assert admission is Admission.PROBE


async def test_lost_probes_are_handed_out_again_after_the_probe_timeout(
    breaker_store: BreakerStore,
) -> None:
    store = breaker_store
    await open_circuit(store, "p", T0)
    await store.acquire("p", CFG, T0 + 5)
    await store.acquire("p", CFG, T0 + 5)
    admission, _ = await store.acquire("p", CFG, T0 + 34.9)
    assert admission is Admission.REJECTED
    admission, snap = await store.acquire("p", CFG, T0 + 35.0)
    assert admission is Admission.PROBE and snap.probes_in_flight == 1


async def test_outcomes_of_calls_admitted_before_it_opened_are_ignored(
    breaker_store: BreakerStore,
) -> None:
    store = breaker_store
    await open_circuit(store, "p", T0)
    snap = await store.record("p", CFG, T0 + 1, failures=5, successes=5)
    assert snap.state is CircuitState.OPEN and snap.calls == 0
    await store.acquire("p", CFG, T0 + 5)  # half-open now
    snap = await store.record("p", CFG, T0 + 5.1, successes=3)
    assert snap.state is CircuitState.HALF_OPEN and snap.probe_successes == 0


async def test_load_lists_breakers(breaker_store: BreakerStore) -> None:
    store = breaker_store
    await open_circuit(store, "openai", T0)
    await store.record("anthropic/claude-3-haiku-20240307", CFG, T0, successes=2)
    snaps = await store.load(None, lambda _key: CFG, T0 + 1)
    by_key = {s.key: s for s in snaps}
    assert by_key["openai"].state is CircuitState.OPEN
    assert by_key["anthropic/claude-3-haiku-20240307"].successes == 2
    await store.reset("openai")
    (snap,) = await store.load(["openai"], lambda _key: CFG, T0 + 1)
    assert snap.state is CircuitState.CLOSED
