"""Router, breakers, retries and the fallback executor together, against the fake providers.

`MiniGateway` plays the part of the pipeline for text requests: route, then walk the chain
with `run_with_fallbacks`, calling each model through its provider's `ResilientHTTPClient` in
the provider's own wire format (OpenAI chat completions, Anthropic messages). Faults are
injected into the real fake provider servers.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import pytest

from oneflow_ai import IntelligentRouter, PricingEngine, ResilientHTTPClient
from oneflow_ai.errors import ProviderTimeoutError, ProviderUnavailableError
from oneflow_ai.resilience import (
    BreakerConfig,
    CircuitBreakers,
    CircuitState,
    FallbackResult,
    RetryPolicy,
    Turn,
    prime,
    run_with_fallbacks,
)
from oneflow_ai.routing import RouteDecision
from oneflow_fakes import FakeProviders
from tests.support.clock import ManualClock

HAIKU = "claude-3-haiku-20240307"
WINDOW = BreakerConfig(min_calls=5, failure_rate=0.5, window_seconds=30, cooldown_seconds=15)


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


class MiniGateway:
    def __init__(self, fake: FakeProviders, *, read_timeout: float = 5.0) -> None:
        self.fake = fake
        self.clock = ManualClock()
        self.sleeps = Sleeps()
        self.breakers = CircuitBreakers(
            provider_config=BreakerConfig(
                min_calls=5, failure_rate=0.8, window_seconds=30, cooldown_seconds=15
            ),
            model_config=WINDOW,
            clock=self.clock,
        )
        self.router = IntelligentRouter(PricingEngine(), circuits=self.breakers)
        self.clients = {
            provider: ResilientHTTPClient(
                provider,
                timeout=read_timeout,
                retry_policy=RetryPolicy(max_retries=1, max_retry_after=20),
                breakers=self.breakers,
                sleep=self.sleeps,
            )
            for provider in ("openai", "anthropic")
        }

    async def aclose(self) -> None:
        for client in self.clients.values():
            await client.aclose()

    def route(self, strategy: str) -> RouteDecision:
        return self.router.route(input_tokens=20, output_tokens=50, strategy=strategy)

    def request(self, model: str, provider: str, stream: bool) -> tuple[str, dict[str, object]]:
        base = self.fake.base_urls[provider]
        messages = [{"role": "user", "content": "hello"}]
        if provider == "anthropic":
            body = {"model": model, "max_tokens": 50, "messages": messages, "stream": stream}
            return f"{base}/v1/messages", body
        return f"{base}/chat/completions", {"model": model, "messages": messages, "stream": stream}

    async def chat(self, strategy: str = "cost_optimized") -> FallbackResult[object]:
        decision = self.route(strategy)
        request_id = uuid.uuid4().hex

        async def attempt(turn: Turn) -> object:
            provider = decision.provider_of(turn.model)
            url, body = self.request(turn.model, provider, stream=False)
            response = await self.clients[provider].post(
                url,
                json=body,
                headers=_auth(provider),
                idempotency_key=request_id,
                model=turn.model,
            )
            return response.json()

        return await run_with_fallbacks(
            decision.chain,
            attempt,
            open_for=lambda m: self.breakers.open_for(decision.provider_of(m), m),
        )

    async def stream(
        self, stack: AsyncExitStack, strategy: str = "cost_optimized"
    ) -> FallbackResult[AsyncIterator[bytes]]:
        decision = self.route(strategy)

        async def attempt(turn: Turn) -> AsyncIterator[bytes]:
            provider = decision.provider_of(turn.model)
            url, body = self.request(turn.model, provider, stream=True)
            upstream = await stack.enter_async_context(
                self.clients[provider].stream(
                    "POST", url, json=body, headers=_auth(provider), model=turn.model
                )
            )
            return await prime(upstream.chunks())

        return await run_with_fallbacks(decision.chain, attempt)


def _auth(provider: str) -> dict[str, str]:
    if provider == "anthropic":
        return {"x-api-key": "sk-ant-test", "anthropic-version": "2023-06-01"}
    return {"Authorization": "Bearer sk-test"}


@pytest.fixture
async def gateway() -> AsyncIterator[MiniGateway]:
    async with FakeProviders(hang_seconds=2) as fake:
        gw = MiniGateway(fake)
        try:
            yield gw
        finally:
            await gw.aclose()


async def test_a_failing_provider_is_bypassed_its_circuit_opens_and_recovers(
    gateway: MiniGateway,
) -> None:
    fake = gateway.fake
    assert gateway.route("cost_optimized").primary_model == HAIKU
    fake.add_fault(provider="anthropic", status=500)
    results = [await gateway.chat() for _ in range(8)]
    assert all(r.model == "gpt-3.5-turbo" for r in results)  # every request succeeded
    assert [r.fallbacks for r in results[:3]] == [1, 1, 1]
    # the circuit opened within its window after min_calls (5) failed attempts: each request
    # tried haiku twice (one retry, with an idempotency key), the third only once
    assert fake.call_count("anthropic") == 5
    assert gateway.breakers.breaker(f"anthropic/{HAIKU}").snapshot.state is CircuitState.OPEN
    # the whole provider's circuit opened too (its only traffic failed): its models go last,
    # here beyond the three fallbacks kept
    decision = gateway.route("cost_optimized")
    assert decision.primary_model == "gpt-3.5-turbo"
    assert decision.fallback_chain == ["gpt-4o", "gpt-4-turbo", "gpt-4"]
    assert all(s.open_for > 0 for s in decision.scores if s.provider == "anthropic")
    assert [r.fallbacks for r in results[3:]] == [0] * 5  # routed around, no time lost

    fake.clear_faults()  # the provider recovers
    gateway.clock.advance(15)  # the cool-down ends: haiku is callable again, as a probe
    recovered = await gateway.chat()
    assert (recovered.model, recovered.fallbacks) == (HAIKU, 0)
    assert gateway.breakers.breaker(f"anthropic/{HAIKU}").snapshot.state is CircuitState.CLOSED
    assert gateway.breakers.breaker("anthropic").snapshot.state is CircuitState.CLOSED


async def test_429_with_retry_after_is_respected(gateway: MiniGateway) -> None:
    gateway.fake.add_fault(provider="openai", status=429, retry_after=0.05, times=1)
    result = await gateway.chat("quality_optimized")
    assert (result.model, result.fallbacks) == ("gpt-4o", 0)
    assert gateway.sleeps.delays == [0.05]
    assert gateway.fake.call_count("openai") == 2


async def test_a_long_retry_after_moves_on_to_the_next_model(gateway: MiniGateway) -> None:
    gateway.fake.add_fault(provider="openai", status=429, retry_after=120)
    result = await gateway.chat("quality_optimized")
    assert result.model == "claude-3-opus-20240229" and result.fallbacks == 1
    assert gateway.sleeps.delays == []  # 120 s is beyond UPSTREAM_MAX_RETRY_AFTER: not waited


async def test_a_timeout_falls_through_to_the_next_model() -> None:
    async with FakeProviders(hang_seconds=2) as fake:
        gateway = MiniGateway(fake, read_timeout=0.2)
        try:
            fake.add_fault(provider="anthropic", timeout=True)
            result = await gateway.chat()
        finally:
            await gateway.aclose()
    assert (result.model, result.fallbacks) == ("gpt-3.5-turbo", 1)
    first = result.attempts[0]
    assert first.model == HAIKU and isinstance(first.error, ProviderTimeoutError)


async def test_a_stream_failing_before_its_first_byte_falls_back(gateway: MiniGateway) -> None:
    gateway.fake.add_fault(provider="anthropic", stream=True, status=529)
    async with AsyncExitStack() as stack:
        result = await gateway.stream(stack)
        body = b"".join([chunk async for chunk in result.value])
    assert (result.model, result.fallbacks) == ("gpt-3.5-turbo", 1)
    assert body.rstrip().endswith(b"data: [DONE]")


async def test_a_stream_failing_after_it_started_is_not_retried(gateway: MiniGateway) -> None:
    gateway.fake.add_fault(provider="anthropic", stream=True, drop_after_chunks=2)
    received: list[bytes] = []
    async with AsyncExitStack() as stack:
        result = await gateway.stream(stack)
        assert result.model == HAIKU
        with pytest.raises(ProviderUnavailableError):
            async for chunk in result.value:
                received.append(chunk)
    assert b"message_start" in b"".join(received)
    assert gateway.fake.call_count("anthropic") == 1
    assert gateway.fake.call_count("openai") == 0  # no fallback once bytes were received
    assert gateway.breakers.breaker(f"anthropic/{HAIKU}").snapshot.failures == 1
