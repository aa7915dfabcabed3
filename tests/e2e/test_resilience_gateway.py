"""Faults injected into the fake providers, seen through the running gateway.

Every request goes over HTTP to a live gateway (router, fallback executor, breakers, retries,
the real aiohttp upstream clients) and from there over HTTP to the fake providers, whose
control plane injects the faults and whose call log shows what reached them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anthropic
import openai
import pytest

from oneflow_fakes import FakeProviders
from tests.conftest import redis_server_url
from tests.support.databases import migrated_sqlite_url
from tests.support.gateway_process import gateway_process
from tests.support.resilience_world import (
    COOLDOWN,
    DEFAULTS,
    HAIKU,
    KEY,
    MIN_CALLS,
    Resilient,
    resilient_gateway,
    wait_until,
)

CHEAP_FALLBACK = ("gpt-3.5-turbo", "openai")


@pytest.fixture(scope="module")
def fakes() -> Iterator[FakeProviders]:
    with FakeProviders(hang_seconds=2) as server:
        yield server


@pytest.fixture
def world(fakes: FakeProviders, tmp_path: Path) -> Iterator[Resilient]:
    fakes.reset()
    with resilient_gateway(fakes, tmp_path) as gateway:
        yield gateway


def test_a_failing_provider_is_bypassed_its_circuit_opens_and_recovers(world: Resilient) -> None:
    fakes, model_key = world.fakes, f"anthropic/{HAIKU}"
    assert world.primary("cost_optimized") == HAIKU
    fakes.add_fault(provider="anthropic", status=500)

    # Every request succeeds, one model down the chain; the window fills with failures.
    answers = [world.request() for _ in range(MIN_CALLS)]
    assert {(a.model, a.provider, a.fallbacks) for a in answers} == {(*CHEAP_FALLBACK, 1)}
    assert fakes.call_count("anthropic") == MIN_CALLS
    # ... and the circuits opened: the model's, and the provider's (all its traffic failed).
    circuits = world.circuits()
    assert circuits[model_key]["state"] == circuits["anthropic"]["state"] == "open"
    assert circuits[model_key]["failures"] == 0 and circuits[model_key]["times_opened"] == 1
    assert set(world.ready_circuits()["open"]) == {"anthropic", model_key}
    assert world.breaker_gauge("anthropic") == 2 and world.breaker_gauge("openai") == 0

    # While open, the provider is not called at all and nobody waits for it.
    skipped = [world.request() for _ in range(3)]
    assert {(a.model, a.provider, a.fallbacks) for a in skipped} == {(*CHEAP_FALLBACK, 0)}
    assert fakes.call_count("anthropic") == MIN_CALLS
    assert world.primary("cost_optimized") != HAIKU

    # The provider recovers; after the cool-down one probe goes through and closes both.
    fakes.clear_faults()
    wait_until(lambda: world.circuits()[model_key]["retry_in_seconds"] == 0)
    recovered = world.request()
    assert (recovered.model, recovered.fallbacks) == (HAIKU, 0)
    assert fakes.call_count("anthropic") == MIN_CALLS + 1
    circuits = world.circuits()
    assert circuits[model_key]["state"] == circuits["anthropic"]["state"] == "closed"
    assert world.ready_circuits() == {"open": [], "half_open": []}
    assert world.breaker_gauge("anthropic") == 0


@pytest.fixture
def retrying(fakes: FakeProviders, tmp_path: Path) -> Iterator[Resilient]:
    """A gateway that retries once and waits a provider's Retry-After of up to 1 s."""
    fakes.reset()
    with resilient_gateway(
        fakes, tmp_path, upstream_max_retries=1, upstream_max_retry_after=1.0
    ) as gateway:
        yield gateway


def test_a_429_with_retry_after_within_the_limit_is_waited(retrying: Resilient) -> None:
    fakes = retrying.fakes
    primary = retrying.primary("quality_optimized")
    fakes.add_fault(provider="openai", model=primary, status=429, retry_after=0.3, times=1)
    answer = retrying.request("quality_optimized")
    assert (answer.model, answer.fallbacks) == (primary, 0)
    refused, served = fakes.calls("openai", primary)
    assert (refused.status, served.status) == (429, 200)
    assert served.at - refused.at >= 0.3  # the provider's Retry-After was honoured
    assert served.idempotency_key == refused.idempotency_key is not None


def test_a_429_with_retry_after_beyond_the_limit_moves_to_the_next_model(
    retrying: Resilient,
) -> None:
    fakes = retrying.fakes
    primary = retrying.primary("quality_optimized")
    fakes.add_fault(provider="openai", model=primary, status=429, retry_after=120)
    answer = retrying.request("quality_optimized")
    assert answer.model != primary and answer.fallbacks == 1
    assert fakes.call_count("openai", primary) == 1  # not retried: 120 s is past the limit
    assert fakes.call_count(model=answer.model) == 1


def test_a_timeout_falls_through_to_the_next_model(world: Resilient) -> None:
    fakes = world.fakes
    fakes.add_fault(provider="anthropic", model=HAIKU, timeout=True)
    answer = world.request()
    assert (answer.model, answer.provider, answer.fallbacks) == (*CHEAP_FALLBACK, 1)
    (hung,) = fakes.calls("anthropic")
    wait_until(lambda: hung.outcome != "pending")
    assert hung.outcome in ("timeout", "client_closed")  # the gateway gave up on it


@pytest.mark.parametrize("fault", ["drop_after_chunks", "error_after_chunks"])
def test_a_stream_failing_after_it_started_ends_in_an_openai_error_event(
    world: Resilient, fault: str
) -> None:
    fakes = world.fakes
    fakes.add_fault(provider="anthropic", stream=True, **{fault: 2})
    received: list[str] = []
    stream = world.openai().chat.completions.create(
        model="cost_optimized",
        messages=[{"role": "user", "content": "a story"}],
        stream=True,
    )
    with pytest.raises(openai.APIError) as caught:
        for chunk in stream:
            received.append(chunk.model)
    assert not isinstance(caught.value, openai.APIStatusError)  # an event inside the stream
    assert caught.value.type == "server_error"
    assert received and set(received) == {HAIKU}  # content had reached the caller
    assert fakes.call_count("anthropic") == 1
    assert fakes.call_count("openai") == 0  # no other model once the answer had started


def test_a_stream_failing_after_it_started_ends_in_an_anthropic_error_event(
    world: Resilient,
) -> None:
    fakes = world.fakes
    fakes.add_fault(provider="anthropic", stream=True, drop_after_chunks=2)
    client = anthropic.Anthropic(base_url=world.url, api_key=KEY, max_retries=0)
    received: list[str] = []
    with (
        pytest.raises(anthropic.APIStatusError) as caught,
        client.messages.stream(
            model="cost_optimized",
            max_tokens=100,
            messages=[{"role": "user", "content": "a story"}],
        ) as stream,
    ):
        received.extend(stream.text_stream)
    assert received
    assert caught.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]
    assert fakes.call_count("anthropic") == 1 and fakes.call_count("openai") == 0


@pytest.mark.redis
def test_replicas_share_their_circuits_through_redis(
    fakes: FakeProviders, tmp_path: Path, redis_prefix: str
) -> None:
    fakes.reset()
    url = redis_server_url()
    assert url is not None
    env = {
        **fakes.env(),
        **{name.upper(): str(value) for name, value in DEFAULTS.items()},
        "DATABASE_URL": migrated_sqlite_url(tmp_path / "oneflow.db"),
        "REDIS_URL": url,
        "REDIS_KEY_PREFIX": redis_prefix,
        "FAKE_PROVIDERS": "off",
        "CIRCUIT_COOLDOWN_SECONDS": "60",  # stays open for the whole test
        "LOG_LEVEL": "WARNING",
    }
    model_key = f"anthropic/{HAIKU}"
    with (
        gateway_process(env, tmp_path / "a.log") as process_a,
        gateway_process(env, tmp_path / "b.log") as process_b,
    ):
        a, b = Resilient(process_a.url, fakes), Resilient(process_b.url, fakes)
        try:
            fakes.add_fault(provider="anthropic", status=500)
            answers = [a.request() for _ in range(MIN_CALLS)]
            assert {(x.model, x.fallbacks) for x in answers} == {(CHEAP_FALLBACK[0], 1)}
            assert a.state(model_key) == "open"
            # Replica B never called the provider; it learns the state from Redis...
            assert b.circuits()[model_key]["state"] == "open"
            wait_until(lambda: model_key in b.ready_circuits()["open"])
            # ... and skips the provider without trying it.
            skipped = [b.request() for _ in range(3)]
            assert {(x.model, x.fallbacks) for x in skipped} == {(CHEAP_FALLBACK[0], 0)}
            assert fakes.call_count("anthropic") == MIN_CALLS
        finally:
            a.close()
            b.close()


def test_a_named_model_whose_circuit_is_open_is_refused_without_a_call(world: Resilient) -> None:
    fakes = world.fakes
    fakes.add_fault(provider="openai", model="gpt-4o", status=500)
    chat = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
    for _ in range(MIN_CALLS):  # a named model has no fallback: the caller sees each failure
        failed = world.http.post("/v1/chat/completions", json=chat)
        assert failed.status_code == 503
        assert failed.json()["error"]["code"] == "upstream_unavailable"
    assert world.state("openai/gpt-4o") == "open"

    refused = world.http.post("/v1/chat/completions", json=chat)
    assert refused.status_code == 503, refused.text
    error = refused.json()["error"]
    assert (error["type"], error["code"]) == ("server_error", "all_circuits_open")
    assert 0 < int(refused.headers["retry-after"]) <= COOLDOWN
    assert fakes.call_count("openai", "gpt-4o") == MIN_CALLS  # not called again
