"""Calls in flight and rate-limit headroom per deployment, read from the providers' answers."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import pytest

from oneflow_ai.errors import ProviderError, ProviderRateLimitedError, ProviderUnavailableError
from oneflow_ai.providers.upstream import UpstreamRequest
from oneflow_ai.resilience.load import DeploymentLoad, LoadTrackingUpstream, parse_reset
from tests.support.clock import ManualClock
from tests.support.transport import MockRequest, MockResponse, MockTransport

WALL = 1_800_000_000.0


def map_error(status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
    if status == 429:
        retry = headers.get("retry-after")
        return ProviderRateLimitedError(
            "slow down", retry_after=float(retry) if retry else None, upstream_status=429
        )
    return ProviderUnavailableError("down", upstream_status=status)


def request(model: str = "gpt-4o") -> UpstreamRequest:
    return UpstreamRequest("POST", "/chat/completions", map_error, body=b"{}", model=model)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("1s", 1.0),
        ("6m0s", 360.0),
        ("1h2m3.5s", 3723.5),
        ("20ms", 0.02),
        ("59.997s", 59.997),
        ("7", 7.0),
        ("2026-12-06T20:00:30Z", 30.0),
        ("x", None),
        ("", None),
        ("5q", None),
    ],
)
def test_reset_times_in_both_providers_formats(value: str, seconds: float | None) -> None:
    wall = 1_796_587_200.0  # 2026-12-06T20:00:00Z
    got = parse_reset(value, wall)
    assert got == pytest.approx(seconds) if seconds is not None else got is None


def test_headroom_is_short_when_in_flight_calls_would_use_it_up() -> None:
    clock = ManualClock()
    load = DeploymentLoad(clock=clock, wall_clock=lambda: WALL)
    load.observe(
        "openai/gpt-4o",
        {
            "x-ratelimit-remaining-requests": "2",
            "x-ratelimit-remaining-tokens": "1000",
            "x-ratelimit-reset-requests": "10s",
            "x-ratelimit-reset-tokens": "2s",
        },
    )
    key = "openai/gpt-4o"
    assert not load.short(key, tokens=900)
    assert load.short(key, tokens=1001)  # more tokens than are left
    load.started(key)
    assert not load.short(key)
    load.started(key)
    assert load.short(key)  # two in flight take the two requests left
    clock.advance(10.1)  # the later reset passed: what was said no longer holds
    assert load.headroom(key) is None and not load.short(key)
    load.ended(key)
    load.ended(key)
    assert load.in_flight(key) == 0


def test_anthropic_headers_and_answers_without_any() -> None:
    load = DeploymentLoad(default_window=30)
    load.observe("a/m", {"anthropic-ratelimit-requests-remaining": "0"})
    assert load.short("a/m")
    load.observe("b/m", {"content-type": "application/json"})
    assert load.headroom("b/m") is None


async def test_the_tracking_client_counts_calls_and_reads_every_answer() -> None:
    gate = asyncio.Event()

    async def handler(sent: MockRequest) -> MockResponse:
        await gate.wait()
        if sent.json().get("refuse"):
            return MockResponse.json({}, status=429, headers={"retry-after": "7"})
        return MockResponse.json({}, headers={"x-ratelimit-remaining-requests": "41"})

    clock = ManualClock()
    load = DeploymentLoad(clock=clock)
    client = LoadTrackingUpstream(MockTransport(handler, provider="openai"), load)
    calls = [asyncio.create_task(client.send(request())) for _ in range(3)]
    await asyncio.sleep(0)
    assert load.in_flight("openai/gpt-4o") == 3
    gate.set()
    await asyncio.gather(*calls)
    assert load.in_flight("openai/gpt-4o") == 0
    headroom = load.headroom("openai/gpt-4o")
    assert headroom is not None and headroom.requests == 41

    async with client.stream(request("other")) as stream:
        assert load.in_flight("openai/other") == 1
        await stream.read()
    assert load.in_flight("openai/other") == 0

    refused = UpstreamRequest("POST", "/c", map_error, body=b'{"refuse": true}', model="gpt-4o")
    with pytest.raises(ProviderRateLimitedError):
        await client.send(refused)
    assert load.short("openai/gpt-4o") and load.in_flight("openai/gpt-4o") == 0
    clock.advance(7.1)  # its Retry-After passed
    assert not load.short("openai/gpt-4o")
    with pytest.raises(ProviderRateLimitedError):
        async with client.stream(refused):
            pass
    assert load.short("openai/gpt-4o") and load.in_flight("openai/gpt-4o") == 0


async def test_only_tracked_deployments_are_followed() -> None:
    def handler(sent: MockRequest) -> MockResponse:
        return MockResponse.json({}, headers={"x-ratelimit-remaining-requests": "0"})

    load = DeploymentLoad(tracked=frozenset({"openai/gpt-4o"}))
    client = LoadTrackingUpstream(MockTransport(handler, provider="openai"), load)
    await client.send(request("gpt-3.5-turbo"))
    async with client.stream(request("gpt-3.5-turbo")) as stream:
        await stream.read()
    assert load.headroom("openai/gpt-3.5-turbo") is None
    await client.send(request("gpt-4o"))
    assert load.short("openai/gpt-4o")
