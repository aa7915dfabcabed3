"""CircuitBreakers: per provider and per model, in process and shared through Redis."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from oneflow_ai.errors import (
    ProviderAuthError,
    ProviderBadRequestError,
    ProviderRateLimitedError,
    ProviderTimeoutError,
    ProviderUnavailableError,
)
from oneflow_ai.resilience import (
    BreakerConfig,
    CircuitBreakers,
    CircuitOpenError,
    CircuitState,
    Outcome,
    RedisBreakerStore,
    outcome_of,
)
from oneflow_ai.resilience.breaker_state import Admission
from tests.support.clock import ManualClock

FAST = BreakerConfig(
    failure_rate=0.5, min_calls=4, window_seconds=10, cooldown_seconds=5, half_open_probes=1
)


async def fail(breakers: CircuitBreakers, provider: str, model: str | None, times: int) -> None:
    for _ in range(times):
        permit = await breakers.acquire(provider, model)
        await breakers.release(permit, Outcome.FAILURE)


async def succeed(breakers: CircuitBreakers, provider: str, model: str | None, times: int) -> None:
    for _ in range(times):
        permit = await breakers.acquire(provider, model)
        await breakers.release(permit, Outcome.SUCCESS)


def test_outcomes_of_errors() -> None:
    assert outcome_of(None) is Outcome.SUCCESS
    for error in (ProviderUnavailableError, ProviderTimeoutError, ProviderRateLimitedError):
        assert outcome_of(error("x")) is Outcome.FAILURE
    assert outcome_of(ProviderAuthError("our key is wrong")) is Outcome.FAILURE
    assert outcome_of(ProviderBadRequestError("your request")) is Outcome.SUCCESS
    assert outcome_of(CircuitOpenError("p", retry_after=1, provider="p", model=None)) is (
        Outcome.NEUTRAL
    )
    assert outcome_of(asyncio.CancelledError()) is Outcome.NEUTRAL


async def test_one_failing_model_opens_its_own_circuit_not_the_providers() -> None:
    clock = ManualClock()
    breakers = CircuitBreakers(
        provider_config=BreakerConfig(failure_rate=0.8, min_calls=4, cooldown_seconds=5),
        model_config=FAST,
        clock=clock,
    )
    for _ in range(4):
        await fail(breakers, "openai", "gpt-4", 1)
        await succeed(breakers, "openai", "gpt-4o", 1)
    assert breakers.breaker("openai/gpt-4").snapshot.state is CircuitState.OPEN
    assert breakers.breaker("openai").snapshot.state is CircuitState.CLOSED  # 50 % < 80 %
    assert breakers.open_for("openai", "gpt-4") == 5.0
    assert breakers.open_for("openai", "gpt-4o") == 0.0
    with pytest.raises(CircuitOpenError) as caught:
        await breakers.acquire("openai", "gpt-4")
    assert caught.value.key == "openai/gpt-4" and caught.value.retry_after == 5.0
    await succeed(breakers, "openai", "gpt-4o", 1)  # its sibling still passes


async def test_an_open_provider_blocks_all_its_models() -> None:
    clock = ManualClock()
    breakers = CircuitBreakers(provider_config=FAST, model_config=FAST, clock=clock)
    for model in ("a", "b", "c", "d"):
        await fail(breakers, "anthropic", model, 1)
    assert breakers.breaker("anthropic").snapshot.state is CircuitState.OPEN
    with pytest.raises(CircuitOpenError) as caught:
        await breakers.acquire("anthropic", "e")
    assert caught.value.key == "anthropic"
    assert breakers.open_for("anthropic", "never-called") == 5.0


async def test_recovery_goes_through_half_open() -> None:
    clock = ManualClock()
    changes: list[tuple[str, str, str]] = []
    breakers = CircuitBreakers(
        provider_config=FAST,
        model_config=FAST,
        clock=clock,
        on_change=lambda key, old, new: changes.append((key, old.value, new.value)),
    )
    await fail(breakers, "openai", "gpt-4o", 4)
    clock.advance(5)
    assert breakers.open_for("openai", "gpt-4o") == 0.0  # the router may try it again
    permit = await breakers.acquire("openai", "gpt-4o")
    assert permit.probe
    assert breakers.breaker("openai/gpt-4o").snapshot.state is CircuitState.HALF_OPEN
    with pytest.raises(CircuitOpenError):  # one probe at a time
        await breakers.acquire("openai", "gpt-4o")
    await breakers.release(permit, Outcome.SUCCESS)
    assert breakers.breaker("openai/gpt-4o").snapshot.state is CircuitState.CLOSED
    assert breakers.breaker("openai").snapshot.state is CircuitState.CLOSED
    model = [(old, new) for key, old, new in changes if key == "openai/gpt-4o"]
    assert model == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]


async def test_a_refusal_hands_back_the_providers_probe() -> None:
    """A provider probe granted before the model's breaker refuses is released, not leaked."""
    clock = ManualClock()
    slow_model = BreakerConfig(failure_rate=0.5, min_calls=4, cooldown_seconds=60)
    breakers = CircuitBreakers(provider_config=FAST, model_config=slow_model, clock=clock)
    await fail(breakers, "openai", "gpt-4", 4)  # both circuits open
    clock.advance(5)  # the provider may probe, the model may not
    with pytest.raises(CircuitOpenError) as caught:
        await breakers.acquire("openai", "gpt-4")
    assert caught.value.key == "openai/gpt-4"
    assert breakers.breaker("openai").snapshot.probes_in_flight == 0
    permit = await breakers.acquire("openai", "gpt-4o")  # the slot is still there
    assert permit.probe
    await breakers.release(permit, Outcome.SUCCESS)
    assert breakers.breaker("openai").snapshot.state is CircuitState.CLOSED


@pytest.mark.redis
async def test_two_replicas_share_one_circuit(redis_client: Redis, redis_prefix: str) -> None:
    clock = ManualClock()

    def replica() -> CircuitBreakers:
        return CircuitBreakers(
            RedisBreakerStore(redis_client, prefix=redis_prefix),
            provider_config=FAST,
            model_config=FAST,
            clock=clock,
            cache_ttl=1.0,
        )

    one, two = replica(), replica()
    await succeed(two, "openai", "gpt-4o", 1)  # replica two has seen the circuit closed
    await two.aclose()
    await fail(one, "openai", "gpt-4o", 4)
    await one.aclose()  # failures are flushed in the background; wait for them
    assert one.breaker("openai/gpt-4o").snapshot.state is CircuitState.OPEN

    # Replica two still trusts its cached "closed" for up to cache_ttl (the documented staleness)
    permit = await two.acquire("openai", "gpt-4o")
    await two.release(permit, Outcome.NEUTRAL)
    clock.advance(1.0)
    await two.acquire("openai", "gpt-4o")  # stale: passes, and refreshes in the background
    await two.aclose()
    with pytest.raises(CircuitOpenError):
        await two.acquire("openai", "gpt-4o")
    assert two.open_for("openai", "gpt-4o") == pytest.approx(4.0)

    # After the cool-down, the one probe slot is shared: only one replica gets it
    clock.advance(5)
    probe = await one.acquire("openai", "gpt-4o")
    assert probe.probe
    with pytest.raises(CircuitOpenError):
        await two.acquire("openai", "gpt-4o")
    await one.release(probe, Outcome.SUCCESS)
    await two.sync()
    assert two.breaker("openai/gpt-4o").snapshot.state is CircuitState.CLOSED
    permit = await two.acquire("openai", "gpt-4o")
    assert not permit.probe

    listed = {s.key: s.state for s in await two.load_all()}
    assert listed == {"openai": CircuitState.CLOSED, "openai/gpt-4o": CircuitState.CLOSED}


@pytest.mark.redis
async def test_redis_outage_keeps_the_last_known_state() -> None:
    from oneflow_ai.storage.redis import create_redis

    dead = create_redis("redis://127.0.0.1:1/0")
    clock = ManualClock()
    breakers = CircuitBreakers(RedisBreakerStore(dead), model_config=FAST, clock=clock)
    permit = await breakers.acquire("openai", "gpt-4o")  # cached closed: no Redis needed
    await breakers.release(permit, Outcome.FAILURE)
    await breakers.aclose()  # the flush fails quietly
    assert breakers.breaker("openai/gpt-4o").snapshot.state is CircuitState.CLOSED
    await dead.aclose()


@pytest.mark.redis
async def test_the_refresh_loop_shows_circuits_opened_elsewhere(
    redis_client: Redis, redis_prefix: str
) -> None:
    """A replica that never called a model still sees its circuit open within cache_ttl."""
    one = CircuitBreakers(RedisBreakerStore(redis_client, prefix=redis_prefix), model_config=FAST)
    watcher = CircuitBreakers(
        RedisBreakerStore(redis_client, prefix=redis_prefix), model_config=FAST, cache_ttl=0.05
    )
    await watcher.start()
    try:
        await fail(one, "openai", "gpt-4", 4)
        await one.aclose()
        for _ in range(100):
            if watcher.open_for("openai", "gpt-4") > 0:
                break
            await asyncio.sleep(0.02)
        assert watcher.open_for("openai", "gpt-4") > 0
        assert watcher.open_for("openai", "gpt-4o") == 0
    finally:
        await watcher.aclose()


@pytest.mark.redis
async def test_what_needs_no_round_trip_is_answered_at_once(
    redis_client: Redis, redis_prefix: str
) -> None:
    """`admit_now` and `record_now` answer without the store when it has nothing to add (in
    process: always; with Redis: a cached closed circuit, an outcome counted to send later),
    and leave to `acquire` and `release` what must ask it (a probe's outcome)."""
    clock = ManualClock()
    local = CircuitBreakers(model_config=FAST, clock=clock).breaker("openai")
    assert local.admit_now() is Admission.ALLOWED
    assert local.record_now(Outcome.SUCCESS, probe=False)
    assert local.record_now(Outcome.SUCCESS, probe=True)

    breakers = CircuitBreakers(
        RedisBreakerStore(redis_client, prefix=redis_prefix), model_config=FAST, clock=clock
    )
    shared = breakers.breaker("openai")
    assert shared.admit_now() is Admission.ALLOWED  # the cached state: closed
    assert shared.record_now(Outcome.FAILURE, probe=False)  # counted, sent in the background
    assert shared.pending
    assert not shared.record_now(Outcome.SUCCESS, probe=True)  # for the store to decide
    await breakers.aclose()
    assert not shared.pending
