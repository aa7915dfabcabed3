"""`ResilientHTTPClient`: one pooled aiohttp session per provider, with circuit breakers,
retries (exponential backoff, full jitter, Retry-After, a retry budget) and timeouts.

A thin facade: requests go through the gateway's own upstream client
(:class:`~oneflow_ai.providers.http.AiohttpUpstream`, with absolute URLs) and attempts run under
the same :class:`~oneflow_ai.resilience.caller.ResilientCaller` as the gateway's provider
calls; what is its own is the call shape (a URL, JSON or form data, an idempotency key), the
error mapper, and ``raise_for_status=False``.

    async with ResilientHTTPClient(provider_name="openai", timeout=30.0, max_retries=3) as client:
        response = await client.post(url, json={...}, headers={...}, idempotency_key="req-1")
        response.status, response.json()

The client keeps a pooled aiohttp session: use it with ``async with`` (or ``await
client.aclose()`` once done), or aiohttp warns of an unclosed client session at exit.
`docs/library.md` has the whole example, runnable, and how to install the package elsewhere.

Each attempt runs under the provider's (and the model's) circuit breaker, and failed attempts
are retried by the rules of :class:`~oneflow_ai.resilience.caller.ResilientCaller`: only
retryable failures (connection errors, timeouts, 408, 409, 429, 5xx, 529), never against
``x-should-retry: false``, never a non-idempotent call that the upstream may have acted on
(a call is idempotent when its method is safe or an ``idempotency_key`` is given, which is sent
upstream as ``Idempotency-Key``), with Retry-After honoured, full-jitter backoff otherwise, and
a retry budget.

Otherwise the last error is raised (``ProviderError`` taxonomy, ``retry_after`` set when the
provider gave one), or, with ``raise_for_status=False``, the last HTTP answer is returned.
Timeouts: ``connect_timeout`` covers getting a connection (pool wait and TCP/TLS connect),
``timeout`` is the read timeout (the longest silence between bytes of the answer, which for a
stream is the gap between chunks).
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp
import orjson

from oneflow_ai.errors import ProviderError
from oneflow_ai.providers.http import AiohttpUpstream
from oneflow_ai.providers.upstream import UpstreamClient, UpstreamRequest
from oneflow_ai.resilience.caller import (
    IDEMPOTENT_METHODS,
    ResilientCaller,
    RetryEvent,
    transport_code,
)
from oneflow_ai.resilience.circuits import CircuitBreakers
from oneflow_ai.resilience.retry import RetryBudget, RetryPolicy
from oneflow_ai.resilience.upstream import (
    ErrorMapper,
    UpstreamResponse,
    UpstreamStream,
    current_model,
    map_status_error,
)

__all__ = ["ResilientHTTPClient", "RetryEvent"]


Body = bytes | str | aiohttp.FormData | None


@dataclass(slots=True)
class _Call:
    """One logical call: its request, and what its attempts leave behind."""

    provider: str
    mapper: ErrorMapper
    idempotent: bool
    request: UpstreamRequest = dataclasses.field(init=False)
    attempts: int = 0
    error_response: UpstreamResponse | None = None  # the last attempt's error answer

    def map_error(self, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
        response = UpstreamResponse(status, headers, body, self.attempts)
        self.error_response = response
        return self.mapper(self.provider, self.request.model, response)


class ResilientHTTPClient:
    """An upstream HTTP client for one provider (see the module docstring).

    ``breakers`` defaults to a private in-process set; the gateway passes its shared
    :class:`CircuitBreakers` so that every client, the router and the admin API see the same
    circuits. ``sleep``, ``clock`` and ``rng`` are injectable so tests never wait for real
    backoff. A ``session`` given here is used (and not closed); otherwise one is made on first
    use. A ``transport`` (any ``UpstreamClient`` taking absolute URLs as paths, such as an
    in-process one in tests) replaces the pooled aiohttp client altogether, and is not closed.
    """

    def __init__(
        self,
        provider_name: str,
        *,
        timeout: float = 30.0,
        connect_timeout: float = 10.0,
        max_retries: int = 2,
        retry_policy: RetryPolicy | None = None,
        total_timeout: float | None = None,
        breakers: CircuitBreakers | None = None,
        budget: RetryBudget | None = None,
        error_mapper: ErrorMapper | None = None,
        pool_size: int = 100,
        session: aiohttp.ClientSession | None = None,
        transport: UpstreamClient | None = None,
        on_retry: Callable[[RetryEvent], None] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
    ) -> None:
        if timeout <= 0 or connect_timeout <= 0:
            raise ValueError("timeouts must be > 0")
        self.provider = provider_name
        self.caller = ResilientCaller(
            provider_name,
            breakers=breakers,
            policy=retry_policy or RetryPolicy(max_retries=max_retries),
            budget=budget,
            total_timeout=total_timeout,
            on_retry=on_retry,
            sleep=sleep,
            clock=clock,
            rng=rng,
        )
        self.read_timeout = timeout
        self.connect_timeout = connect_timeout
        self._map_error = error_mapper or map_status_error
        self._pool_size = pool_size
        self._session = session
        self._given = transport
        self._transport: AiohttpUpstream | None = None
        self._clock = clock

    @property
    def breakers(self) -> CircuitBreakers:
        return self.caller.breakers

    @property
    def policy(self) -> RetryPolicy:
        return self.caller.policy

    @property
    def budget(self) -> RetryBudget:
        return self.caller.budget

    # ---- public API ------------------------------------------------------------------------

    async def post(
        self,
        url: str,
        *,
        json: object = None,
        data: Body = None,
        headers: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
        model: str | None = None,
        read_timeout: float | None = None,
        raise_for_status: bool = True,
    ) -> UpstreamResponse:
        return await self.request(
            "POST",
            url,
            json=json,
            data=data,
            headers=headers,
            idempotency_key=idempotency_key,
            model=model,
            read_timeout=read_timeout,
            raise_for_status=raise_for_status,
        )

    async def get(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        model: str | None = None,
        read_timeout: float | None = None,
        raise_for_status: bool = True,
    ) -> UpstreamResponse:
        return await self.request(
            "GET",
            url,
            headers=headers,
            model=model,
            read_timeout=read_timeout,
            raise_for_status=raise_for_status,
        )

    async def request(
        self,
        method: str,
        url: str,
        *,
        json: object = None,
        data: Body = None,
        headers: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
        model: str | None = None,
        read_timeout: float | None = None,
        raise_for_status: bool = True,
    ) -> UpstreamResponse:
        """Send a request with breakers, retries and timeouts; the complete answer.

        An error answer raises its ``ProviderError`` once retries are over, or is returned
        as it is with ``raise_for_status=False`` (for adapters that read error bodies).
        """
        call = await self._call(
            method, url, json, data, headers, idempotency_key, model, read_timeout
        )
        transport = self._transport_for_use()
        deadline = self.caller.deadline()

        async def attempt() -> UpstreamResponse:
            call.attempts += 1
            call.error_response = None
            remaining = self.caller.remaining(deadline)
            request = call.request
            if remaining is not None:
                request = dataclasses.replace(request, total_timeout=max(0.001, remaining))
            started = self._clock()
            try:
                answer = await transport.send(request)
            except ProviderError as error:
                _name_transport_failure(error)
                raise
            elapsed = self._clock() - started
            return UpstreamResponse(
                answer.status, answer.headers, answer.body, call.attempts, elapsed
            )

        try:
            return await self.caller.call(
                attempt,
                model=call.request.model,
                idempotent=call.idempotent,
            )
        except ProviderError:
            if not raise_for_status and call.error_response is not None:
                return call.error_response
            raise

    @asynccontextmanager
    async def stream(
        self,
        method: str,
        url: str,
        *,
        json: object = None,
        data: Body = None,
        headers: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
        model: str | None = None,
        read_timeout: float | None = None,
    ) -> AsyncIterator[UpstreamStream]:
        """Open a streamed answer: retried like :meth:`request` until a 2xx status arrives,
        never after (the body is the caller's). An error status raises before the block; a
        connection that drops or stalls mid-body raises from ``iter_chunks()`` and counts
        against the circuit. Leaving the block early closes the upstream connection."""
        # A stream's body may legitimately last long: only silences (the read timeout) end it.
        call = await self._call(
            method, url, json, data, headers, idempotency_key, model, read_timeout
        )
        request = call.request
        transport = self._transport_for_use()

        @asynccontextmanager
        async def open_stream() -> AsyncIterator[UpstreamStream]:
            call.attempts += 1
            try:
                async with transport.stream(request) as inner:
                    yield UpstreamStream(inner)
            except ProviderError as error:
                _name_transport_failure(error)
                raise

        async with self.caller.stream(
            open_stream,
            model=request.model,
            idempotent=call.idempotent,
            failed=lambda upstream: upstream.error is not None,
        ) as upstream:
            yield upstream

    async def aclose(self) -> None:
        """Close the pooled connections (once, at shutdown)."""
        transport, self._transport = self._transport, None
        if transport is not None:
            await transport.aclose()

    async def __aenter__(self) -> ResilientHTTPClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # ---- internals -------------------------------------------------------------------------

    async def _call(
        self,
        method: str,
        url: str,
        json: object,
        data: Body,
        headers: Mapping[str, str] | None,
        idempotency_key: str | None,
        model: str | None,
        read_timeout: float | None,
    ) -> _Call:
        method = method.upper()
        send_headers = dict(headers or {})
        has_type = any(k.lower() == "content-type" for k in send_headers)
        body: bytes | None
        if json is not None:
            body = orjson.dumps(json)
            content_type: str | None = "application/json"
        elif isinstance(data, aiohttp.FormData):
            payload = data()  # encoded once: a retry sends the same bytes, boundary included
            body, content_type = await payload.as_bytes(), payload.content_type
        else:
            body = data.encode() if isinstance(data, str) else data
            content_type = None
        if content_type is not None and not has_type:
            send_headers["Content-Type"] = content_type
        if idempotency_key is not None:
            send_headers["Idempotency-Key"] = idempotency_key
        call = _Call(
            self.provider,
            self._map_error,
            idempotent=method in IDEMPOTENT_METHODS or idempotency_key is not None,
        )
        call.request = UpstreamRequest(
            method,
            url,
            call.map_error,
            body=body,
            headers=send_headers,
            model=model if model is not None else current_model.get(),
            read_timeout=read_timeout,
        )
        return call

    def _transport_for_use(self) -> UpstreamClient:
        if self._given is not None:
            return self._given
        transport = self._transport
        if transport is None:
            transport = self._transport = AiohttpUpstream(
                self.provider,
                "",  # requests name absolute URLs
                headers={},
                connect_timeout=self.connect_timeout,
                read_timeout=self.read_timeout,
                max_connections=self._pool_size,
                session=self._session,
            )
        return transport


def _name_transport_failure(error: ProviderError) -> None:
    """Give a transport failure its code (``read_timeout``, ``connect_error``, ...)."""
    if error.code is None:
        error.code = transport_code(error)
