"""The aiohttp upstream client: pooled keep-alive, error mapping, timeouts, streams, cancel."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator, Mapping

import pytest

from oneflow_ai.errors import (
    ProviderError,
    ProviderRateLimitedError,
    ProviderTimeoutError,
    ProviderUnavailableError,
)
from oneflow_ai.providers.http import AiohttpUpstream
from oneflow_ai.providers.upstream import UpstreamClient, UpstreamRequest
from tests.support.upstream import ScriptedUpstream, scripted_upstream


def _map(status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
    return ProviderRateLimitedError(f"mapped {status}: {body.decode()}", retry_after=1.5)


def _request(path: str = "/x", model: str | None = "m") -> UpstreamRequest:
    return UpstreamRequest("POST", path, _map, body=b'{"q":1}', model=model)


@pytest.fixture
def upstream() -> Iterator[ScriptedUpstream]:
    with scripted_upstream() as server:
        yield server


@pytest.fixture
async def client(upstream: ScriptedUpstream) -> AsyncIterator[AiohttpUpstream]:
    http = AiohttpUpstream(
        "acme",
        upstream.url + "/v1",
        headers={"Authorization": "Bearer k", "Content-Type": "application/json"},
        connect_timeout=2,
        read_timeout=0.5,
    )
    yield http
    await http.aclose()


async def test_send_reuses_one_pooled_connection(
    upstream: ScriptedUpstream, client: AiohttpUpstream
) -> None:
    assert isinstance(client, UpstreamClient)
    upstream.reply({"ok": 1})
    upstream.reply({"ok": 2})
    first = await client.send(_request())
    second = await client.send(_request())
    assert (first.status, first.body, second.body) == (200, b'{"ok":1}', b'{"ok":2}')
    one, two = upstream.requests
    assert one.path == "/v1/x" and one.body == b'{"q":1}'
    assert one.headers["authorization"] == "Bearer k"
    assert one.peer == two.peer  # the same keep-alive connection


async def test_error_status_goes_through_the_adapters_mapper(
    upstream: ScriptedUpstream, client: AiohttpUpstream
) -> None:
    upstream.reply({"e": 1}, status=429)
    with pytest.raises(ProviderRateLimitedError) as caught:
        await client.send(_request(model="gpt-x"))
    assert caught.value.message == 'mapped 429: {"e":1}'
    assert (caught.value.model, caught.value.provider, caught.value.retry_after) == (
        "gpt-x",
        "acme",
        1.5,
    )


async def test_refused_connection_is_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
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
    upstream: ScriptedUpstream, client: AiohttpUpstream
) -> None:
    upstream.reply({"late": True}, delay=2)
    with pytest.raises(ProviderTimeoutError) as caught:
        await client.send(_request())
    assert caught.value.kind == "timeout" and caught.value.model == "m"


async def test_stream_yields_chunks_as_they_come(
    upstream: ScriptedUpstream, client: AiohttpUpstream
) -> None:
    upstream.reply_stream([b"data: 1\n\n", b"data: 2\n\n"], chunk_delay=0.01)
    async with client.stream(_request()) as stream:
        assert stream.status == 200
        body = b"".join([chunk async for chunk in stream.chunks()])
    assert body == b"data: 1\n\ndata: 2\n\n"


async def test_stream_error_status_raises_on_entering(
    upstream: ScriptedUpstream, client: AiohttpUpstream
) -> None:
    upstream.reply({"e": "busy"}, status=529)
    with pytest.raises(ProviderRateLimitedError, match="mapped 529"):
        async with client.stream(_request()):
            pytest.fail("entered a failed stream")


async def test_connection_cut_mid_stream_is_unavailable(
    upstream: ScriptedUpstream, client: AiohttpUpstream
) -> None:
    upstream.reply_stream([b"data: 1\n\n", b"data: 2\n\n"], drop_after=1)
    received = []
    with pytest.raises(ProviderUnavailableError):
        async with client.stream(_request()) as stream:
            async for chunk in stream.chunks():
                received.append(chunk)
    assert received == [b"data: 1\n\n"]


async def test_leaving_a_stream_early_closes_the_upstream_connection(
    upstream: ScriptedUpstream, client: AiohttpUpstream
) -> None:
    upstream.reply_stream([b"data: 1\n\n"] * 3, chunk_delay=0.2, hang=5)
    async with client.stream(_request()) as stream:
        async for _ in stream.chunks():
            break
    recorded = upstream.requests[0]
    assert await asyncio.to_thread(recorded.disconnected.wait, 3)
