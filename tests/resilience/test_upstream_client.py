"""ResilientUpstream around a plain upstream client of the providers' protocol shape."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp
import pytest

from oneflow_ai.errors import ProviderError, ProviderUnavailableError
from oneflow_ai.resilience import (
    BreakerConfig,
    CircuitBreakers,
    CircuitOpenError,
    CircuitState,
    ResilientCaller,
    ResilientUpstream,
    RetryPolicy,
    UpstreamResponse,
    current_model,
    map_status_error,
)
from oneflow_ai.resilience.upstream import map_transport_error
from tests.support.scripted import Reply, ScriptedUpstream, scripted_upstream


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    body: bytes | None = None
    headers: Mapping[str, str] | None = None
    model: str | None = None


class Stream:
    def __init__(self, response: aiohttp.ClientResponse, owner: PlainUpstream) -> None:
        self.status = response.status
        self.headers = response.headers
        self._response = response
        self._owner = owner

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise map_transport_error(exc, self._owner.provider, None) from exc


class PlainUpstream:
    """No retries, no breaker: one request, one answer, errors as ProviderError."""

    def __init__(self, provider: str, base_url: str) -> None:
        self.provider = provider
        self.base_url = base_url
        self.session = aiohttp.ClientSession()

    def _error(self, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
        return map_status_error(self.provider, None, UpstreamResponse(status, headers, body))

    async def send(self, request: Request) -> UpstreamResponse:
        try:
            async with self.session.request(
                request.method,
                self.base_url + request.path,
                data=request.body,
                headers=request.headers,
            ) as response:
                body = await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise map_transport_error(exc, self.provider, request.model) from exc
        if response.status >= 300:
            raise self._error(response.status, response.headers, body)
        return UpstreamResponse(response.status, response.headers, body)

    @asynccontextmanager
    async def stream(self, request: Request) -> AsyncIterator[Stream]:
        try:
            response = await self.session.request(
                request.method,
                self.base_url + request.path,
                data=request.body,
                headers=request.headers,
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise map_transport_error(exc, self.provider, request.model) from exc
        try:
            if response.status >= 300:
                raise self._error(response.status, response.headers, await response.read())
            yield Stream(response, self)
        finally:
            response.release()

    async def aclose(self) -> None:
        await self.session.close()


@pytest.fixture
async def upstream() -> AsyncIterator[ScriptedUpstream]:
    async with scripted_upstream() as server:
        yield server


async def no_sleep(_seconds: float) -> None:
    return None


def wrap(
    base_url: str, **options: object
) -> tuple[ResilientUpstream[Request, UpstreamResponse, Stream], CircuitBreakers]:
    breakers = CircuitBreakers(model_config=BreakerConfig(min_calls=3, cooldown_seconds=60))
    caller = ResilientCaller(
        "anthropic", breakers=breakers, policy=RetryPolicy(max_retries=3), sleep=no_sleep
    )
    return ResilientUpstream(PlainUpstream("anthropic", base_url), caller, **options), breakers  # type: ignore[arg-type]


async def test_a_post_gets_one_idempotency_key_kept_across_its_retries(
    upstream: ScriptedUpstream,
) -> None:
    upstream.add(Reply(529, b""), Reply(500, b""), Reply.json({"id": "msg_1"}))
    client, _ = wrap(upstream.url)
    try:
        answer = await client.send(Request("POST", "/v1/messages", b"{}", model="m"))
        other = await client.send(Request("POST", "/v1/messages", b"{}", model="m"))
    finally:
        await client.aclose()
    assert answer.status == 200 and other.status == 200
    keys = [r.headers["Idempotency-Key"] for r in upstream.requests]
    assert len(keys) == 4 and len(set(keys[:3])) == 1 and keys[3] != keys[0]


async def test_a_callers_own_key_is_kept(upstream: ScriptedUpstream) -> None:
    upstream.add(Reply(503, b""), Reply.json({}))
    client, _ = wrap(upstream.url)
    try:
        await client.send(Request("POST", "/x", b"{}", headers={"idempotency-key": "mine"}))
    finally:
        await client.aclose()
    assert [r.headers["Idempotency-Key"] for r in upstream.requests] == ["mine", "mine"]


async def test_without_keys_a_failed_post_is_not_repeated(upstream: ScriptedUpstream) -> None:
    upstream.default = Reply(500, b"")
    client, _ = wrap(upstream.url, idempotency_keys=False)
    try:
        with pytest.raises(ProviderUnavailableError):
            await client.send(Request("POST", "/x", b"{}"))
    finally:
        await client.aclose()
    assert upstream.count == 1 and "Idempotency-Key" not in upstream.requests[0].headers


async def test_without_keys_a_refused_connection_is_still_retried() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    attempts: list[int] = []
    client, _ = wrap(f"http://127.0.0.1:{port}", idempotency_keys=False)
    client.caller.on_retry = lambda event: attempts.append(event.retry)
    try:
        with pytest.raises(ProviderUnavailableError):
            await client.send(Request("POST", "/x", b"{}"))
    finally:
        await client.aclose()
    assert attempts == [1, 2, 3]


async def test_breakers_are_keyed_by_the_model_being_tried(upstream: ScriptedUpstream) -> None:
    upstream.default = Reply(500, b"")
    client, breakers = wrap(upstream.url)
    client.caller.policy = RetryPolicy(max_retries=0)
    token = current_model.set("claude-3-haiku-20240307")
    try:
        for _ in range(3):
            with pytest.raises(ProviderUnavailableError):
                await client.send(Request("POST", "/x", b"{}", model="provider-own-id"))
        with pytest.raises(CircuitOpenError):
            await client.send(Request("POST", "/x", b"{}", model="provider-own-id"))
    finally:
        current_model.reset(token)
        await client.aclose()
    assert upstream.count == 3
    assert breakers.open_for("anthropic", "claude-3-haiku-20240307") > 0


async def test_a_stream_is_retried_until_it_opens_then_never(upstream: ScriptedUpstream) -> None:
    events = (b"event: ping\ndata: {}\n\n", b"event: message_stop\ndata: {}\n\n")
    upstream.add(Reply(529, b""), Reply(chunks=events), Reply(chunks=events, drop_after_chunks=1))
    client, breakers = wrap(upstream.url)
    try:
        async with client.stream(Request("POST", "/v1/messages", b"{}", model="m")) as stream:
            body = b"".join([c async for c in stream.chunks()])
        received = []
        with pytest.raises(ProviderUnavailableError):
            async with client.stream(Request("POST", "/v1/messages", b"{}", model="m")) as stream:
                async for chunk in stream.chunks():
                    received.append(chunk)
    finally:
        await client.aclose()
    assert body == b"".join(events)
    assert received == [events[0]] and upstream.count == 3
    # 2 failures (a 529, a dropped stream) in 3 calls reach the 50 % rate: the circuit opened
    snapshot = breakers.breaker("anthropic/m").snapshot
    assert snapshot.state is CircuitState.OPEN and snapshot.times_opened == 1
