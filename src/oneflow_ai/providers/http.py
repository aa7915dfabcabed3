"""`AiohttpUpstream`: the `UpstreamClient` the gateway talks to providers with.

One long-lived, pooled `aiohttp.ClientSession` per provider, created at start-up and closed at
shutdown: keep-alive connections are reused across requests, nothing is created per request.
Timeouts are the seed's: `connect` (getting a connection, TCP and TLS included) and `read`
(the longest silence while reading an answer; a stream may run longer as long as bytes keep
coming). On our machines aiohttp's client costs a fraction of httpx's per request (FINDINGS.md),
which is why the hot path uses it.

With tracing on, `trace_context` (the tracing's injector) writes the current span's W3C
`traceparent` into every request: inside an upstream-attempt span, the provider sees that
attempt as its parent. With tracing off it is None and requests are sent untouched.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, MutableMapping
from contextlib import asynccontextmanager

import aiohttp
from yarl import URL

from oneflow_ai.errors import ProviderError, ProviderTimeoutError, ProviderUnavailableError
from oneflow_ai.providers.upstream import UpstreamRequest, UpstreamResponse, UpstreamStream

__all__ = ["AiohttpUpstream", "TraceInjector"]

#: Writes the current trace context (`traceparent`, `tracestate`) into outgoing headers.
TraceInjector = Callable[[MutableMapping[str, str]], None]


class AiohttpUpstream:
    """The upstream client of one provider (implements `UpstreamClient`).

    `headers` are sent with every request (credentials, content type); a request's own headers
    are added on top. Construct it inside a running event loop (the application's lifespan).
    """

    __slots__ = ("_base", "_inject", "_session", "_urls", "provider")

    def __init__(
        self,
        provider: str,
        base_url: str,
        *,
        headers: Mapping[str, str],
        connect_timeout: float,
        read_timeout: float,
        max_connections: int = 256,
        trace_context: TraceInjector | None = None,
    ) -> None:
        self.provider = provider
        self._base = base_url.rstrip("/")
        self._inject = trace_context
        self._urls: dict[str, URL] = {}
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

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        try:
            async with self._session.request(
                request.method,
                self._url(request.path),
                data=request.body,
                headers=self._headers(request),
                params=request.query,
            ) as response:
                body = await response.read()
                status = response.status
                headers = response.headers
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise self._failure(exc, request) from exc
        if status >= 300:
            raise self._mapped(request, status, headers, body)
        return UpstreamResponse(status, headers, body)

    @asynccontextmanager
    async def stream(self, request: UpstreamRequest) -> AsyncIterator[UpstreamStream]:
        try:
            response = await self._session.request(
                request.method,
                self._url(request.path),
                data=request.body,
                headers=self._headers(request),
                params=request.query,
            )
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise self._failure(exc, request) from exc
        try:
            if response.status >= 300:
                try:
                    body = await response.read()
                except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                    raise self._failure(exc, request) from exc
                raise self._mapped(request, response.status, response.headers, body)
            yield _Stream(self, response, request)
        finally:
            # Fully read: the connection goes back to the pool. Otherwise it is closed, which
            # is what stops the provider's work when our caller went away.
            response.release()

    async def aclose(self) -> None:
        await self._session.close()

    def _mapped(
        self, request: UpstreamRequest, status: int, headers: Mapping[str, str], body: bytes
    ) -> ProviderError:
        error = request.map_error(status, headers, body)
        if error.model is None:
            error.model = request.model
        if not error.provider:
            error.provider = self.provider
        return error

    def _failure(self, exc: Exception, request: UpstreamRequest) -> ProviderError:
        """The ProviderError for a transport failure: a timeout, or a refused or broken
        connection."""
        if isinstance(exc, TimeoutError):
            return ProviderTimeoutError(
                f"{self.provider} did not answer in time ({type(exc).__name__})",
                provider=self.provider,
                model=request.model,
            )
        detail = str(exc) or type(exc).__name__
        return ProviderUnavailableError(
            f"{self.provider} connection failed: {detail}",
            provider=self.provider,
            model=request.model,
        )

    def __repr__(self) -> str:
        return f"AiohttpUpstream({self.provider!r}, {self._base!r})"


class _Stream:
    __slots__ = ("_owner", "_request", "_response", "headers", "status")

    def __init__(
        self, owner: AiohttpUpstream, response: aiohttp.ClientResponse, request: UpstreamRequest
    ) -> None:
        self._owner = owner
        self._response = response
        self._request = request
        self.status = response.status
        self.headers: Mapping[str, str] = response.headers

    async def chunks(self) -> AsyncIterator[bytes]:
        content = self._response.content
        while True:
            try:
                chunk = await content.readany()
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                raise self._owner._failure(exc, self._request) from exc
            if not chunk:
                return
            yield chunk
