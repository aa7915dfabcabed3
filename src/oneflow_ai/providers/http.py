"""`AiohttpUpstream`: the `UpstreamClient` the gateway talks to providers with.

One long-lived, pooled `aiohttp.ClientSession` per provider, created at start-up and closed at
shutdown: keep-alive connections are reused across requests, nothing is created per request.
Timeouts are the seed's: `connect` (getting a connection, TCP and TLS included) and `read`
(the longest silence while reading an answer; a stream may run longer as long as bytes keep
coming). On our machines aiohttp's client costs a fraction of httpx's per request (the figures
are in docs/architecture.md, "Dependencies, chosen deliberately"), which is why the hot path
uses it.

With tracing on, `trace_context` (the tracing's injector) writes the current span's W3C
`traceparent` into every request: inside an upstream-attempt span, the provider sees that
attempt as its parent. With tracing off it is None and requests are sent untouched.

It is also the transport of `ResilientHTTPClient` (absolute URLs: an empty base URL), which is
why a request may carry its own read and total timeouts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, MutableMapping
from contextlib import asynccontextmanager

import aiohttp
from yarl import URL

from oneflow_ai.errors import ProviderError, ProviderTimeoutError, ProviderUnavailableError
from oneflow_ai.providers.upstream import (
    UpstreamRequest,
    UpstreamResponse,
    UpstreamStream,
    answer_error,
)

__all__ = ["AiohttpUpstream", "TraceInjector", "transport_error"]

#: How much of an error answer is read: an error page is never worth megabytes.
ERROR_BODY_LIMIT = 64 * 1024

#: Writes the current trace context (`traceparent`, `tracestate`) into outgoing headers.
TraceInjector = Callable[[MutableMapping[str, str]], None]


class AiohttpUpstream:
    """The upstream client of one provider (implements `UpstreamClient`).

    `headers` are sent with every request (credentials, content type), and `query` parameters
    too (an API version); a request's own headers and parameters are added on top. Construct
    it inside a running event loop (the application's lifespan). A `session` given here is
    used as it is (its own headers and timeouts) and not closed.
    """

    __slots__ = (
        "_base",
        "_connect",
        "_inject",
        "_owns_session",
        "_query",
        "_session",
        "_urls",
        "provider",
    )

    def __init__(
        self,
        provider: str,
        base_url: str,
        *,
        headers: Mapping[str, str],
        query: Mapping[str, str] | None = None,
        connect_timeout: float,
        read_timeout: float,
        max_connections: int = 256,
        trace_context: TraceInjector | None = None,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.provider = provider
        self._base = base_url.rstrip("/")
        self._inject = trace_context
        self._query = dict(query) if query else None
        self._connect = connect_timeout
        self._urls: dict[str, URL] = {}
        self._owns_session = session is None
        if session is not None:
            self._session = session
            return
        connector = aiohttp.TCPConnector(
            limit=max_connections, limit_per_host=0, ttl_dns_cache=300, keepalive_timeout=30
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers=dict(headers),
            timeout=aiohttp.ClientTimeout(
                total=None, connect=connect_timeout, sock_read=read_timeout
            ),
            skip_auto_headers=("User-Agent",),
            raise_for_status=False,
            auto_decompress=True,
        )

    def _url(self, path: str) -> URL:
        url = self._urls.get(path)
        if url is None:
            url = URL(self._base + path)
            if len(self._urls) < 1024:  # paths embed model ids and voice ids: bounded
                self._urls[path] = url
        return url

    def _headers(self, request: UpstreamRequest) -> Mapping[str, str] | None:
        inject = self._inject
        if inject is None:
            return request.headers
        headers = dict(request.headers or {})
        inject(headers)
        return headers

    def _params(self, request: UpstreamRequest) -> Mapping[str, str] | None:
        query = self._query
        return {**query, **request.query} if query and request.query else query

    def _timeout(self, request: UpstreamRequest) -> aiohttp.ClientTimeout:
        """The session's timeouts, or the request's own where it sets any."""
        default = self._session.timeout
        if request.read_timeout is None and request.total_timeout is None:
            return default
        return aiohttp.ClientTimeout(
            total=request.total_timeout,
            connect=self._connect,
            sock_read=request.read_timeout or default.sock_read,
        )

    async def _open(self, request: UpstreamRequest) -> aiohttp.ClientResponse:
        try:
            return await self._session.request(
                request.method,
                self._url(request.path),
                data=request.body,
                headers=self._headers(request),
                params=request.query if self._query is None else self._params(request),
                timeout=self._timeout(request),
            )
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise transport_error(exc, self.provider, request.model) from exc

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        response = await self._open(request)
        try:
            status, headers = response.status, response.headers
            if status >= 300:
                body = await _error_body(response)
                raise answer_error(request, self.provider, status, headers, body)
            body = await response.read()
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise transport_error(exc, self.provider, request.model) from exc
        finally:
            response.release()
        return UpstreamResponse(status, headers, body)

    @asynccontextmanager
    async def stream(self, request: UpstreamRequest) -> AsyncIterator[UpstreamStream]:
        response = await self._open(request)
        try:
            if response.status >= 300:
                try:
                    body = await _error_body(response)
                except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                    raise transport_error(exc, self.provider, request.model) from exc
                raise answer_error(request, self.provider, response.status, response.headers, body)
            yield UpstreamStream(
                response.status, response.headers, self._chunk_reader(response, request)
            )
        finally:
            # Fully read: the connection goes back to the pool. Otherwise it is closed, which
            # is what stops the provider's work when our caller went away.
            response.release()

    def _chunk_reader(
        self, response: aiohttp.ClientResponse, request: UpstreamRequest
    ) -> Callable[[], Awaitable[bytes]]:
        content = response.content
        provider = self.provider

        async def read_chunk() -> bytes:
            try:
                return await content.readany()
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                raise transport_error(exc, provider, request.model, mid_stream=True) from exc

        return read_chunk

    async def aclose(self) -> None:
        if self._owns_session:
            await self._session.close()

    def __repr__(self) -> str:
        return f"AiohttpUpstream({self.provider!r}, {self._base!r})"


def transport_error(
    exc: BaseException, provider: str, model: str | None, *, mid_stream: bool = False
) -> ProviderError:
    """The ProviderError for a transport failure (raise it `from exc`: the cause tells a
    connection that was never made from one that broke): a connect or read timeout, or a
    refused or broken connection."""
    where = " while streaming the answer" if mid_stream else ""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return ProviderTimeoutError(
            f"{provider}: no connection in time", provider=provider, model=model
        )
    if isinstance(exc, TimeoutError):  # aiohttp's socket-read and total timeouts
        return ProviderTimeoutError(
            f"{provider} did not answer in time{where}", provider=provider, model=model
        )
    if isinstance(exc, aiohttp.ClientConnectorError):
        reason = exc.os_error.strerror or type(exc.os_error).__name__
        return ProviderUnavailableError(
            f"{provider}: cannot connect ({reason})", provider=provider, model=model
        )
    detail = str(exc) or type(exc).__name__
    return ProviderUnavailableError(
        f"{provider} connection failed{where}: {detail}", provider=provider, model=model
    )


async def _error_body(response: aiohttp.ClientResponse) -> bytes:
    """An error answer's body, up to `ERROR_BODY_LIMIT` bytes."""
    parts: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_any():
        parts.append(chunk)
        size += len(chunk)
        if size >= ERROR_BODY_LIMIT:
            break
    return b"".join(parts)[:ERROR_BODY_LIMIT]
