"""The aiohttp upstream client against the real HTTP fakes: pooled keep-alive, error mapping,
timeouts, streams, a cut connection, and a caller's departure closing the upstream request."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator, Mapping

import orjson
import pytest

from oneflow_ai.errors import (
    ProviderError,
    ProviderRateLimitedError,
    ProviderTimeoutError,
    ProviderUnavailableError,
)
from oneflow_ai.providers.http import AiohttpUpstream
from oneflow_ai.providers.upstream import UpstreamClient, UpstreamRequest
from oneflow_fakes import FakeProviders
from oneflow_fakes.calls import CallRecord
from tests.support.ports import refusing_port

CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}


def _map(status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
    return ProviderRateLimitedError(f"mapped {status}: {body.decode()}", retry_after=1.5)


def _request(model: str | None = "m", *, stream: bool = False) -> UpstreamRequest:
    body = orjson.dumps({**CHAT, "stream": True} if stream else CHAT)
    return UpstreamRequest("POST", "/chat/completions", _map, body=body, model=model)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProviders]:
    with FakeProviders() as running:
        yield running


@pytest.fixture
async def client(fake: FakeProviders) -> AsyncIterator[AiohttpUpstream]:
    fake.reset()
    http = AiohttpUpstream(
        "acme",
        fake.base_urls["openai"],
        headers={"Authorization": "Bearer k", "Content-Type": "application/json"},
        connect_timeout=2,
        read_timeout=0.5,
    )
    yield http
    await http.aclose()


def _content(body: bytes) -> str:
    """The text of an OpenAI event stream's content deltas."""
    text = ""
    for event in body.split(b"\n\n"):
        data = event.removeprefix(b"data: ")
        if data and data != b"[DONE]":
            for choice in orjson.loads(data)["choices"]:
                text += choice["delta"].get("content") or ""
    return text


async def _settled(fake: FakeProviders) -> CallRecord:
    """The fake's only call, once it is no longer running (a bound on the wait, no timing)."""
    deadline = time.monotonic() + 5
    while (call := fake.calls()[0]).outcome == "pending" and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    return call


async def test_send_reuses_one_pooled_connection(
    fake: FakeProviders, client: AiohttpUpstream
) -> None:
    assert isinstance(client, UpstreamClient)
    first = await client.send(_request())
    second = await client.send(_request())
    assert (first.status, second.status) == (200, 200)
    assert orjson.loads(first.body)["object"] == "chat.completion"
    one, two = fake.calls()
    assert one.path == "/openai/v1/chat/completions" and one.body == CHAT
    assert one.raw_headers["Authorization"] == "Bearer k"
    assert one.peer is not None and one.peer == two.peer  # the same keep-alive connection


async def test_error_status_goes_through_the_adapters_mapper(
    fake: FakeProviders, client: AiohttpUpstream
) -> None:
    fake.add_fault(provider="openai", status=429, body={"e": 1})
    with pytest.raises(ProviderRateLimitedError) as caught:
        await client.send(_request(model="gpt-x"))
    assert caught.value.message == 'mapped 429: {"e":1}'
    assert (caught.value.model, caught.value.provider, caught.value.retry_after) == (
        "gpt-x",
        "acme",
        1.5,
    )


async def test_refused_connection_is_unavailable() -> None:
    with refusing_port() as port:
        http = AiohttpUpstream(
            "acme", f"http://127.0.0.1:{port}", headers={}, connect_timeout=2, read_timeout=2
        )
        try:
            with pytest.raises(ProviderUnavailableError) as caught:
                await http.send(_request())
            assert caught.value.retryable and caught.value.provider == "acme"
        finally:
            await http.aclose()


async def test_silence_beyond_the_read_timeout_is_a_timeout(
    fake: FakeProviders, client: AiohttpUpstream
) -> None:
    fake.add_fault(provider="openai", latency_ms=2000)
    with pytest.raises(ProviderTimeoutError) as caught:
        await client.send(_request())
    assert caught.value.kind == "timeout" and caught.value.model == "m"


async def test_stream_yields_chunks_as_they_come(
    fake: FakeProviders, client: AiohttpUpstream
) -> None:
    async with client.stream(_request(stream=True)) as stream:
        assert stream.status == 200
        body = b"".join([chunk async for chunk in stream.chunks()])
    whole = orjson.loads((await client.send(_request())).body)
    assert body.endswith(b"data: [DONE]\n\n")
    assert _content(body) == whole["choices"][0]["message"]["content"]


async def test_stream_error_status_raises_on_entering(
    fake: FakeProviders, client: AiohttpUpstream
) -> None:
    fake.add_fault(provider="openai", status=529, body={"e": "busy"})
    with pytest.raises(ProviderRateLimitedError, match="mapped 529"):
        async with client.stream(_request(stream=True)):
            pytest.fail("entered a failed stream")


async def test_connection_cut_mid_stream_is_unavailable(
    fake: FakeProviders, client: AiohttpUpstream
) -> None:
    fake.add_fault(provider="openai", drop_after_chunks=1)
    received = []
    with pytest.raises(ProviderUnavailableError):
        async with client.stream(_request(stream=True)) as stream:
            async for chunk in stream.chunks():
                received.append(chunk)
    (call,) = fake.calls()
    assert call.outcome == "dropped" and call.chunks_sent == 1
    words = _content(b"".join(received))
    assert words and len(words.split()) == 1  # the one content chunk sent before the cut


async def test_leaving_a_stream_early_closes_the_upstream_connection(
    fake: FakeProviders, client: AiohttpUpstream
) -> None:
    fake.add_fault(provider="openai", chunk_delay_ms=200, reply_words=50)
    async with client.stream(_request(stream=True)) as stream:
        async for _ in stream.chunks():
            break
    assert (await _settled(fake)).outcome == "client_closed"
