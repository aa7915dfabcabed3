"""ResilientUpstream around a plain upstream client of the providers' protocol shape: the
in-process transport, and the pooled aiohttp client for a refused connection."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from oneflow_ai.errors import ProviderError, ProviderUnavailableError
from oneflow_ai.providers.http import AiohttpUpstream
from oneflow_ai.providers.upstream import UpstreamClient, UpstreamRequest
from oneflow_ai.resilience import (
    BreakerConfig,
    CircuitBreakers,
    CircuitOpenError,
    CircuitState,
    ResilientCaller,
    ResilientUpstream,
    RetryPolicy,
    map_status_error,
)
from tests.support.ports import refusing_port
from tests.support.transport import MockResponse, MockTransport, Script


def upstream_request(
    method: str,
    path: str,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    model: str | None = None,
) -> UpstreamRequest:
    return UpstreamRequest(method, path, map_status_error, body=body, headers=headers, model=model)


@pytest.fixture
def upstream() -> Script:
    """Answers what a test queues, then 200 `{"ok": true}`."""
    return Script(default=MockResponse.json({"ok": True}))


async def no_sleep(_seconds: float) -> None:
    return None


def wrap(upstream: Script | str, **options: object) -> tuple[ResilientUpstream, CircuitBreakers]:
    """`upstream` (in process) in breakers and retries; a URL: the gateway's own pooled client
    to it (no retries, no breaker, errors as ProviderError)."""
    breakers = CircuitBreakers(model_config=BreakerConfig(min_calls=3, cooldown_seconds=60))
    caller = ResilientCaller(
        "anthropic", breakers=breakers, policy=RetryPolicy(max_retries=3), sleep=no_sleep
    )
    plain: UpstreamClient
    if isinstance(upstream, str):
        plain = AiohttpUpstream(
            "anthropic", upstream, headers={}, connect_timeout=10.0, read_timeout=30.0
        )
    else:
        plain = MockTransport(upstream, provider="anthropic")
    return ResilientUpstream(plain, caller, **options), breakers  # type: ignore[arg-type]


async def test_a_post_gets_one_idempotency_key_kept_across_its_retries(
    upstream: Script,
) -> None:
    upstream.add(MockResponse(529, b""), MockResponse(500, b""), MockResponse.json({"id": "msg_1"}))
    client, _ = wrap(upstream)
    try:
        answer = await client.send(upstream_request("POST", "/v1/messages", b"{}", model="m"))
        other = await client.send(upstream_request("POST", "/v1/messages", b"{}", model="m"))
    finally:
        await client.aclose()
    assert answer.status == 200 and other.status == 200
    keys = [r.headers["Idempotency-Key"] for r in upstream.requests]
    assert len(keys) == 4 and len(set(keys[:3])) == 1 and keys[3] != keys[0]


async def test_a_callers_own_key_is_kept(upstream: Script) -> None:
    upstream.add(MockResponse(503, b""), MockResponse.json({}))
    client, _ = wrap(upstream)
    try:
        await client.send(
            upstream_request("POST", "/x", b"{}", headers={"idempotency-key": "mine"})
        )
    finally:
        await client.aclose()
    assert [r.headers["Idempotency-Key"] for r in upstream.requests] == ["mine", "mine"]


async def test_without_keys_a_failed_post_is_not_repeated(upstream: Script) -> None:
    upstream.default = MockResponse(500, b"")
    client, _ = wrap(upstream, idempotency_keys=False)
    try:
        with pytest.raises(ProviderUnavailableError):
            await client.send(upstream_request("POST", "/x", b"{}"))
    finally:
        await client.aclose()
    assert upstream.count == 1 and "Idempotency-Key" not in upstream.requests[0].headers


async def test_without_keys_a_refused_connection_is_still_retried() -> None:
    attempts: list[int] = []
    with refusing_port() as port:
        client, _ = wrap(f"http://127.0.0.1:{port}", idempotency_keys=False)
        client.caller.on_retry = lambda event: attempts.append(event.retry)
        try:
            with pytest.raises(ProviderUnavailableError):
                await client.send(upstream_request("POST", "/x", b"{}"))
        finally:
            await client.aclose()
    assert attempts == [1, 2, 3]


async def test_breakers_are_keyed_by_the_model_the_request_names(upstream: Script) -> None:
    upstream.default = MockResponse(500, b"")
    client, breakers = wrap(upstream)
    client.caller.policy = RetryPolicy(max_retries=0)
    haiku = "claude-3-haiku-20240307"
    try:
        for _ in range(3):
            with pytest.raises(ProviderUnavailableError) as caught:
                await client.send(upstream_request("POST", "/x", b"{}", model=haiku))
        with pytest.raises(CircuitOpenError):
            await client.send(upstream_request("POST", "/x", b"{}", model=haiku))
        upstream.default = MockResponse.json({})
        other = await client.send(upstream_request("POST", "/x", b"{}", model="other-model"))
    finally:
        await client.aclose()
    assert upstream.count == 4 and other.status == 200
    assert caught.value.model == haiku and caught.value.provider == "anthropic"
    assert breakers.open_for("anthropic", haiku) > 0
    assert breakers.open_for("anthropic", "other-model") == 0


async def test_a_stream_is_retried_until_it_opens_then_never(upstream: Script) -> None:
    events = (b"event: ping\ndata: {}\n\n", b"event: message_stop\ndata: {}\n\n")
    upstream.add(
        MockResponse(529, b""),
        MockResponse(chunks=events),
        MockResponse(chunks=events, cut_after=1),
    )
    client, breakers = wrap(upstream)
    try:
        async with client.stream(
            upstream_request("POST", "/v1/messages", b"{}", model="m")
        ) as stream:
            body = b"".join([c async for c in stream.chunks()])
        received = []
        with pytest.raises(ProviderUnavailableError):
            async with client.stream(
                upstream_request("POST", "/v1/messages", b"{}", model="m")
            ) as stream:
                async for chunk in stream.chunks():
                    received.append(chunk)
    finally:
        await client.aclose()
    assert body == b"".join(events)
    assert received == [events[0]] and upstream.count == 3
    # 2 failures (a 529, a dropped stream) in 3 calls reach the 50 % rate: the circuit opened
    snapshot = breakers.breaker("anthropic/m").snapshot
    assert snapshot.state is CircuitState.OPEN and snapshot.times_opened == 1


@pytest.mark.parametrize(
    ("first", "hint", "calls"),
    [
        (500, "false", 1),  # retryable, but the provider says not to
        (400, "true", 2),  # not retryable, but the provider says to
    ],
)
async def test_the_providers_x_should_retry_is_obeyed(
    upstream: Script, first: int, hint: str, calls: int
) -> None:
    upstream.add(
        MockResponse(first, b"{}", {"x-should-retry": hint}), MockResponse.json({"ok": True})
    )
    client, _ = wrap(upstream)
    try:
        try:
            await client.send(upstream_request("POST", "/x", b"{}"))
        except ProviderError as error:
            assert error.should_retry is (hint == "true")
    finally:
        await client.aclose()
    assert upstream.count == calls
