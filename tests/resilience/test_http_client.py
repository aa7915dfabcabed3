"""ResilientHTTPClient over the in-process transport answering failures on purpose (retries,
breakers, budgets), and over its own pooled client against the real HTTP fakes (the seed's
example, timeouts, a refused connection, a stalled stream, a stream left early)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import aiohttp
import pytest

from oneflow_ai import ResilientHTTPClient
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
    RetryBudget,
    RetryEvent,
    RetryPolicy,
)
from oneflow_fakes import FakeProviders
from tests.support.clock import ManualClock
from tests.support.ports import refusing_port
from tests.support.transport import MockResponse, MockTransport, Script

OVERLOADED = b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}'
SERVER_ERROR = b'{"error":{"message":"The server had an error","type":"server_error"}}'


class Sleeps:
    """An injected sleep that records the delays instead of waiting them out."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await asyncio.sleep(0)


#: Where the in-process upstream answers (any URL would do: no socket is opened).
URL = "http://upstream.test"
CHAT = {"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}]}
KEY = {"Authorization": "Bearer sk-test"}  # what the fakes want to see


@pytest.fixture
def upstream() -> Script:
    """Answers what a test queues, then 200 `{"ok": true}`."""
    return Script(default=MockResponse.json({"ok": True}))


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProviders]:
    with FakeProviders() as running:
        yield running


@pytest.fixture
def chat_url(fake: FakeProviders) -> str:
    """The fake OpenAI's chat endpoint, its faults and calls forgotten."""
    fake.reset()
    return f"{fake.base_urls['openai']}/chat/completions"


def client_for(upstream: Script | None, **options: object) -> tuple[ResilientHTTPClient, Sleeps]:
    """A client over `upstream` (in process), or over its own pooled client when None."""
    sleeps = Sleeps()
    options.setdefault("sleep", sleeps)
    if upstream is not None:
        options["transport"] = MockTransport(upstream, provider="openai")
    return ResilientHTTPClient("openai", **options), sleeps  # type: ignore[arg-type]


async def test_the_seed_example_runs_and_sends_the_idempotency_key(
    fake: FakeProviders, chat_url: str
) -> None:
    api_key = "sk-test"
    client = ResilientHTTPClient(provider_name="openai", timeout=30.0, max_retries=3)
    try:
        response = await client.post(
            url=chat_url,
            json={"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}]},
            headers={"Authorization": f"Bearer {api_key}"},
            idempotency_key="req-unique-id",
        )
    finally:
        await client.aclose()
    assert response.status == 200
    assert response.json()["object"] == "chat.completion"
    (sent,) = fake.calls("openai")
    assert sent.raw_headers["Idempotency-Key"] == "req-unique-id"
    assert sent.raw_headers["Authorization"] == "Bearer sk-test"
    assert sent.raw_headers["Content-Type"] == "application/json"
    body = b'{"model":"gpt-4","messages":[{"role":"user","content":"hi"}]}'
    assert sent.body == CHAT and sent.raw_headers["Content-Length"] == str(len(body))
    assert client.read_timeout == 30.0 and client.connect_timeout == 10.0
    assert client.policy.max_retries == 3


async def test_5xx_is_retried_with_full_jitter_backoff_when_idempotent(
    upstream: Script,
) -> None:
    upstream.add(
        MockResponse(500, SERVER_ERROR), MockResponse(503, b""), MockResponse.json({"ok": 1})
    )
    client, sleeps = client_for(
        upstream,
        retry_policy=RetryPolicy(max_retries=3, base_delay=0.1, max_delay=1.0),
        rng=lambda: 0.5,
    )
    async with client:
        response = await client.post(f"{URL}/x", json={}, idempotency_key="k1")
    assert response.status == 200 and response.attempts == 3
    assert upstream.count == 3
    # full jitter: rng() * min(max_delay, base * 2**retry)
    assert sleeps.delays == [0.05, 0.1]
    assert {r.headers["Idempotency-Key"] for r in upstream.requests} == {"k1"}


async def test_gives_up_after_max_retries_with_the_last_error(upstream: Script) -> None:
    upstream.default = MockResponse(500, SERVER_ERROR)
    client, sleeps = client_for(upstream, max_retries=2)
    async with client:
        with pytest.raises(ProviderUnavailableError) as caught:
            await client.post(f"{URL}/x", json={}, idempotency_key="k")
    assert upstream.count == 3
    assert len(sleeps.delays) == 2
    error = caught.value
    assert error.upstream_status == 500 and error.provider == "openai"
    assert error.message == "The server had an error"


async def test_a_post_without_idempotency_key_is_not_retried_after_a_5xx(
    upstream: Script,
) -> None:
    upstream.default = MockResponse(502, b"bad gateway")
    client, sleeps = client_for(upstream, max_retries=3)
    async with client:
        with pytest.raises(ProviderUnavailableError):
            await client.post(f"{URL}/x", json={})
    assert upstream.count == 1 and sleeps.delays == []


async def test_a_get_is_idempotent_and_retried(upstream: Script) -> None:
    upstream.add(MockResponse(503, b""), MockResponse.json({"data": []}))
    client, _ = client_for(upstream)
    async with client:
        response = await client.get(f"{URL}/v1/models")
    assert response.status == 200 and upstream.count == 2


async def test_429_is_retried_even_without_a_key_and_retry_after_is_honoured(
    upstream: Script,
) -> None:
    upstream.add(
        MockResponse(429, b'{"error":{"message":"slow down"}}', {"Retry-After": "0.05"}),
        MockResponse.json({"ok": True}),
    )
    client, sleeps = client_for(upstream, rng=lambda: 0.999)
    async with client:
        response = await client.post(f"{URL}/x", json={})
    assert response.status == 200 and upstream.count == 2
    assert sleeps.delays == [0.05]  # the provider's hint, not the jittered backoff


async def test_retry_after_ms_wins_over_retry_after(upstream: Script) -> None:
    upstream.add(
        MockResponse(529, OVERLOADED, {"retry-after-ms": "20", "retry-after": "3"}),
        MockResponse.json({"ok": True}),
    )
    client, sleeps = client_for(upstream)
    async with client:
        await client.post(f"{URL}/v1/messages", json={}, idempotency_key="k")
    assert sleeps.delays == [0.02]


async def test_a_retry_after_beyond_the_limit_is_not_waited_for(
    upstream: Script,
) -> None:
    upstream.default = MockResponse(429, b"{}", {"Retry-After": "120"})
    client, sleeps = client_for(
        upstream, retry_policy=RetryPolicy(max_retries=3, max_retry_after=20)
    )
    async with client:
        with pytest.raises(ProviderRateLimitedError) as caught:
            await client.post(f"{URL}/x", json={}, idempotency_key="k")
    assert upstream.count == 1 and sleeps.delays == []
    assert caught.value.retry_after == 120.0  # the caller (and the fallback) learn when


async def test_anthropic_overloaded_529_is_an_unavailable_provider(
    upstream: Script,
) -> None:
    upstream.default = MockResponse(529, OVERLOADED)
    client, _ = client_for(upstream, max_retries=1)
    async with client:
        with pytest.raises(ProviderUnavailableError) as caught:
            await client.post(f"{URL}/v1/messages", json={}, idempotency_key="k")
    assert caught.value.upstream_status == 529
    assert caught.value.message == "Overloaded"
    assert upstream.count == 2


async def test_x_should_retry_false_stops_retries(upstream: Script) -> None:
    upstream.default = MockResponse(500, b"{}", {"x-should-retry": "false"})
    client, _ = client_for(upstream, max_retries=3)
    async with client:
        with pytest.raises(ProviderUnavailableError):
            await client.post(f"{URL}/x", json={}, idempotency_key="k")
    assert upstream.count == 1


async def test_client_errors_are_not_retried_and_do_not_trip_the_breaker(
    upstream: Script,
) -> None:
    upstream.default = MockResponse(
        400, b'{"error":{"message":"max_tokens is too large","type":"invalid_request_error"}}'
    )
    breakers = CircuitBreakers(model_config=BreakerConfig(min_calls=2))
    client, _ = client_for(upstream, breakers=breakers)
    async with client:
        for _ in range(4):
            with pytest.raises(ProviderBadRequestError) as caught:
                await client.post(f"{URL}/x", json={}, idempotency_key="k", model="m")
    assert caught.value.message == "max_tokens is too large"
    assert upstream.count == 4
    assert breakers.breaker("openai/m").snapshot.state is CircuitState.CLOSED
    assert breakers.breaker("openai/m").snapshot.successes == 4  # the provider did answer


async def test_upstream_auth_failure_is_a_provider_auth_error(upstream: Script) -> None:
    upstream.default = MockResponse(401, b'{"error":{"message":"Incorrect API key provided"}}')
    client, _ = client_for(upstream)
    async with client:
        with pytest.raises(ProviderAuthError):
            await client.post(f"{URL}/x", json={}, idempotency_key="k")
    assert upstream.count == 1


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (402, ProviderAuthError),  # the provider account, not the request
        (409, ProviderUnavailableError),  # a conflict such as a lock timeout: retryable
        (422, ProviderBadRequestError),
        (504, ProviderTimeoutError),
    ],
)
async def test_error_statuses_map_as_the_providers_do(
    upstream: Script, status: int, kind: type[Exception]
) -> None:
    upstream.default = MockResponse(status, b"{}")
    client, _ = client_for(upstream, max_retries=0)
    async with client:
        with pytest.raises(kind) as caught:
            await client.post(f"{URL}/x", json={})
    assert type(caught.value) is kind


async def test_raise_for_status_false_returns_the_last_error_answer(
    upstream: Script,
) -> None:
    upstream.add(MockResponse(500, b"first"), MockResponse(400, b'{"error":{"message":"bad"}}'))
    client, _ = client_for(upstream)
    async with client:
        response = await client.post(
            f"{URL}/x", json={}, idempotency_key="k", raise_for_status=False
        )
    assert response.status == 400 and response.json() == {"error": {"message": "bad"}}
    assert response.attempts == 2


async def test_a_read_timeout_is_retried_and_then_succeeds(
    fake: FakeProviders, chat_url: str
) -> None:
    fake.add_fault(provider="openai", latency_ms=1000, times=1)
    client, _ = client_for(None, timeout=0.2)
    async with client:
        response = await client.post(chat_url, json=CHAT, headers=KEY, idempotency_key="k")
    assert response.json()["object"] == "chat.completion" and response.attempts == 2
    first, second = fake.calls("openai")
    assert first.fault == {"latency_ms": 1000.0} and second.outcome == "ok"


async def test_a_read_timeout_without_key_raises_a_timeout(
    fake: FakeProviders, chat_url: str
) -> None:
    fake.add_fault(provider="openai", latency_ms=1000)
    client, _ = client_for(None, timeout=0.2)
    async with client:
        with pytest.raises(ProviderTimeoutError) as caught:
            await client.post(chat_url, json=CHAT, headers=KEY)
    assert caught.value.code == "read_timeout"
    assert fake.call_count("openai") == 1  # it may have been processed: not repeated


async def test_a_refused_connection_is_retried_even_without_a_key() -> None:
    events: list[RetryEvent] = []
    client, sleeps = client_for(None, max_retries=2, on_retry=events.append)
    async with client:
        with refusing_port() as port, pytest.raises(ProviderUnavailableError) as caught:
            await client.post(f"http://127.0.0.1:{port}/x", json={})
    assert caught.value.code == "connect_error"
    assert [e.retry for e in events] == [1, 2] and len(sleeps.delays) == 2


async def test_the_total_timeout_bounds_the_retries(upstream: Script) -> None:
    upstream.default = MockResponse(503, b"", {"Retry-After": "20"})
    clock = ManualClock()

    async def sleep(seconds: float) -> None:
        clock.advance(seconds)

    client = ResilientHTTPClient(
        "openai",
        total_timeout=50,
        retry_policy=RetryPolicy(max_retries=5, max_retry_after=20),
        sleep=sleep,
        clock=clock,
        transport=MockTransport(upstream, provider="openai"),
    )
    async with client:
        with pytest.raises(ProviderUnavailableError):
            await client.post(f"{URL}/x", json={}, idempotency_key="k")
    # attempts at t=0, 20 and 40; a wait of 20 s more would end after the 50 s deadline
    assert upstream.count == 3


async def test_the_retry_budget_caps_retries_during_an_outage(upstream: Script) -> None:
    upstream.default = MockResponse(500, b"")
    budget = RetryBudget(ratio=0.0, min_per_second=0.0, capacity=2, initial=2)
    client, _ = client_for(upstream, max_retries=3, budget=budget)
    async with client:
        for _ in range(3):
            with pytest.raises(ProviderUnavailableError):
                await client.post(f"{URL}/x", json={}, idempotency_key="k")
    # 3 calls x 4 attempts without a budget; with 2 tokens: 3 first attempts + 2 retries
    assert upstream.count == 5


async def test_the_breaker_opens_and_then_refuses_without_calling(
    upstream: Script,
) -> None:
    upstream.default = MockResponse(500, b"")
    config = BreakerConfig(min_calls=3, failure_rate=0.5, cooldown_seconds=60)
    breakers = CircuitBreakers(provider_config=config, model_config=config)
    client, _ = client_for(upstream, max_retries=0, breakers=breakers)
    async with client:
        for _ in range(3):
            with pytest.raises(ProviderUnavailableError):
                await client.post(f"{URL}/x", json={}, model="gpt-4o")
        with pytest.raises(CircuitOpenError) as caught:
            await client.post(f"{URL}/x", json={}, model="gpt-4o")
    assert upstream.count == 3
    assert caught.value.retry_after is not None and 59 < caught.value.retry_after <= 60
    assert breakers.open_for("openai", "gpt-4o") > 59


async def test_the_model_is_passed_explicitly(upstream: Script) -> None:
    upstream.default = MockResponse(500, b"")
    breakers = CircuitBreakers()
    client, _ = client_for(upstream, max_retries=0, breakers=breakers)
    async with client:
        with pytest.raises(ProviderUnavailableError) as caught:
            await client.post(f"{URL}/x", json={}, model="claude-3-haiku-20240307")
        with pytest.raises(ProviderUnavailableError) as unnamed:
            await client.post(f"{URL}/x", json={})
    assert caught.value.model == "claude-3-haiku-20240307"
    assert caught.value.provider == "openai"
    assert breakers.breaker("openai/claude-3-haiku-20240307").snapshot.failures == 1
    assert unnamed.value.model is None  # no model named: the provider's breaker alone
    assert breakers.breaker("openai").snapshot.failures == 2


async def test_multipart_bodies_survive_a_retry(upstream: Script) -> None:
    upstream.add(MockResponse(503, b""), MockResponse.json({"image": "ok"}))
    form = aiohttp.FormData()
    form.add_field("prompt", "a lighthouse")
    form.add_field("init_image", b"\x89PNG...", filename="init.png", content_type="image/png")
    client, _ = client_for(upstream)
    async with client:
        response = await client.post(f"{URL}/v2beta/sd3", data=form, idempotency_key="k")
    assert response.status == 200
    first, second = upstream.requests
    assert first.headers["Content-Type"].startswith("multipart/form-data")
    assert first.body == second.body and b"a lighthouse" in second.body


# ---- streams -----------------------------------------------------------------------------

EVENTS = (b'data: {"n":1}\n\n', b'data: {"n":2}\n\n', b"data: [DONE]\n\n")


async def test_a_stream_is_retried_before_its_status_and_read_to_the_end(
    upstream: Script,
) -> None:
    upstream.add(MockResponse(503, b'{"error":{"message":"busy"}}'), MockResponse(chunks=EVENTS))
    breakers = CircuitBreakers()
    client, _ = client_for(upstream, breakers=breakers)
    async with (
        client,
        client.stream(
            "POST", f"{URL}/x", json={"stream": True}, idempotency_key="k", model="m"
        ) as stream,
    ):
        assert stream.status == 200
        body = await stream.read()
    assert body == b"".join(EVENTS) and upstream.count == 2
    snap = breakers.breaker("openai/m").snapshot
    assert (snap.failures, snap.successes) == (1, 1)


async def test_an_error_status_on_a_stream_raises_before_the_block(
    upstream: Script,
) -> None:
    upstream.default = MockResponse(400, b'{"error":{"message":"nope"}}')
    client, _ = client_for(upstream)
    async with client:
        with pytest.raises(ProviderBadRequestError) as caught:
            async with client.stream("POST", f"{URL}/x", json={}):
                raise AssertionError("the block must not run")
    assert caught.value.message == "nope"


async def test_a_dropped_stream_raises_mid_body_and_counts_as_a_failure(
    upstream: Script,
) -> None:
    upstream.default = MockResponse(chunks=EVENTS, cut_after=1)
    breakers = CircuitBreakers()
    client, _ = client_for(upstream, breakers=breakers)
    received: list[bytes] = []
    async with client:
        with pytest.raises(ProviderUnavailableError):
            async with client.stream(
                "POST", f"{URL}/x", json={}, idempotency_key="k", model="m"
            ) as stream:
                async for chunk in stream.chunks():
                    received.append(chunk)
    assert b"".join(received) == EVENTS[0]
    assert upstream.count == 1  # a stream that started is never repeated
    assert breakers.breaker("openai/m").snapshot.failures == 1


async def test_a_stalled_stream_times_out(fake: FakeProviders, chat_url: str) -> None:
    fake.add_fault(provider="openai", chunk_delay_ms=1000)
    client, _ = client_for(None, timeout=0.2)
    async with client:
        with pytest.raises(ProviderTimeoutError):
            async with client.stream(
                "POST", chat_url, json={**CHAT, "stream": True}, headers=KEY
            ) as stream:
                await stream.read()


async def test_leaving_a_stream_early_closes_the_connection(
    fake: FakeProviders, chat_url: str
) -> None:
    fake.add_fault(provider="openai", chunk_delay_ms=10, reply_words=60, times=1)
    breakers = CircuitBreakers()
    client, _ = client_for(None, breakers=breakers)
    streamed = {**CHAT, "stream": True}
    async with client:
        async with client.stream("POST", chat_url, json=streamed, headers=KEY, model="m") as stream:
            async for _chunk in stream.chunks():
                break
            assert not stream.at_eof
        # the pool is free again: a new call works at once
        response = await client.get(f"{fake.base_urls['openai']}/models", headers=KEY)
    assert response.json()["object"] == "list"
    assert breakers.breaker("openai/m").snapshot.successes == 1


async def test_after_recovery_the_circuit_closes_through_half_open(
    upstream: Script,
) -> None:
    clock = ManualClock()
    config = BreakerConfig(min_calls=4, failure_rate=0.5, cooldown_seconds=15, half_open_probes=1)
    breakers = CircuitBreakers(provider_config=config, model_config=config, clock=clock)
    client, _ = client_for(upstream, max_retries=0, breakers=breakers)
    upstream.default = MockResponse(503, b"")
    async with client:
        for _ in range(4):
            with pytest.raises(ProviderUnavailableError):
                await client.post(f"{URL}/x", json={}, model="gpt-4o")
        assert breakers.breaker("openai/gpt-4o").snapshot.state is CircuitState.OPEN
        upstream.default = MockResponse.json({"ok": True})  # the provider recovers
        clock.advance(14.9)
        with pytest.raises(CircuitOpenError):
            await client.post(f"{URL}/x", json={}, model="gpt-4o")
        clock.advance(0.1)  # the cool-down is over: one probe goes through
        response = await client.post(f"{URL}/x", json={}, model="gpt-4o")
        assert response.status == 200
        assert breakers.breaker("openai/gpt-4o").snapshot.state is CircuitState.CLOSED
        assert breakers.breaker("openai").snapshot.state is CircuitState.CLOSED
        await client.post(f"{URL}/x", json={}, model="gpt-4o")
    assert upstream.count == 6  # 4 failures, the probe, one normal call


async def test_a_failed_probe_opens_the_circuit_again(upstream: Script) -> None:
    clock = ManualClock()
    config = BreakerConfig(min_calls=2, failure_rate=0.5, cooldown_seconds=15)
    breakers = CircuitBreakers(provider_config=config, model_config=config, clock=clock)
    client, _ = client_for(upstream, max_retries=0, breakers=breakers)
    upstream.default = MockResponse(500, b"")
    async with client:
        for _ in range(2):
            with pytest.raises(ProviderUnavailableError):
                await client.post(f"{URL}/x", json={}, model="m")
        clock.advance(15)
        with pytest.raises(ProviderUnavailableError):  # the probe fails
            await client.post(f"{URL}/x", json={}, model="m")
        with pytest.raises(CircuitOpenError) as caught:
            await client.post(f"{URL}/x", json={}, model="m")
    assert caught.value.retry_after == 15.0
    assert breakers.breaker("openai/m").snapshot.times_opened == 2
    assert upstream.count == 3
