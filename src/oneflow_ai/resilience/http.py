"""`ResilientHTTPClient`: one pooled aiohttp session per provider, with circuit breakers,
retries (exponential backoff, full jitter, Retry-After, a retry budget) and timeouts.

A thin facade over the provider engine's pieces: requests go through the gateway's own
upstream client (:class:`~oneflow_ai.providers.http.AiohttpUpstream`, with absolute URLs), errors
are mapped by :func:`~oneflow_ai.providers.errors.map_status_error` (or the ``error_mapper``
given), answers are the engine's :class:`~oneflow_ai.providers.upstream.UpstreamResponse` and
:class:`~oneflow_ai.providers.upstream.UpstreamStream`, and attempts run under the same
:class:`~oneflow_ai.resilience.caller.ResilientCaller` as the gateway's provider calls. What is
its own is the call shape (a URL, JSON or form data, an idempotency key) and
``raise_for_status=False``.

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
from typing import TypedDict, Unpack

import aiohttp
import orjson

from oneflow_ai.errors import ProviderError
from oneflow_ai.providers.errors import map_status_error
from oneflow_ai.providers.http import AiohttpUpstream
from oneflow_ai.providers.upstream import (
    ErrorMapper,
    UpstreamClient,
    UpstreamRequest,
    UpstreamResponse,
    UpstreamStream,
)
from oneflow_ai.resilience.breaker_set import CircuitBreakers
from oneflow_ai.resilience.caller import (
    IDEMPOTENT_METHODS,
    ResilientCaller,
    RetryEvent,
    transport_code,
)
from oneflow_ai.resilience.retry import RetryBudget, RetryPolicy

__all__ = ["CallOptions", "ReadOptions", "ResilientHTTPClient", "RetryEvent"]


Body = bytes | str | aiohttp.FormData | None


class ReadOptions(TypedDict, total=False):
    """What every call may say: extra ``headers``, the ``model`` the call is for (its circuit
    breaker; errors name it), and a ``read_timeout`` instead of the client's."""

    headers: Mapping[str, str] | None
    model: str | None
    read_timeout: float | None


class CallOptions(ReadOptions, total=False):
    """A call with a body: ``json`` (sent as JSON) or ``data`` (bytes, text or a form), and an
    ``idempotency_key`` (sent as ``Idempotency-Key``; it makes retrying a POST safe)."""

    json: object
    data: Body
    idempotency_key: str | None


@dataclass(slots=True)
class _Call:
    """One logical call: its request, and what its attempts leave behind."""

    mapper: ErrorMapper
    idempotent: bool
    request: UpstreamRequest = dataclasses.field(init=False)
    attempts: int = 0
    error_response: UpstreamResponse | None = None  # the last attempt's error answer

    def map_error(self, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
        self.error_response = UpstreamResponse(status, headers, body, self.attempts)
        return self.mapper(status, headers, body)


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
        self, url: str, *, raise_for_status: bool = True, **options: Unpack[CallOptions]
    ) -> UpstreamResponse:
        return await self.request("POST", url, raise_for_status=raise_for_status, **options)

    async def get(
        self, url: str, *, raise_for_status: bool = True, **options: Unpack[ReadOptions]
    ) -> UpstreamResponse:
        return await self.request("GET", url, raise_for_status=raise_for_status, **options)

    async def request(
        self,
        method: str,
        url: str,
        *,
        raise_for_status: bool = True,
        **options: Unpack[CallOptions],
    ) -> UpstreamResponse:
        """Send a request with breakers, retries and timeouts; the complete answer.

        An error answer raises its ``ProviderError`` once retries are over, or is returned
        as it is with ``raise_for_status=False`` (for adapters that read error bodies).
        """
        call = await self._call(method, url, options)
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
            return dataclasses.replace(answer, attempts=call.attempts, elapsed=elapsed)

        try:
            return await self.caller.call(
                attempt, model=call.request.model, idempotent=call.idempotent
            )
        except ProviderError:
            if not raise_for_status and call.error_response is not None:
                return call.error_response
            raise

    @asynccontextmanager
    async def stream(
        self, method: str, url: str, **options: Unpack[CallOptions]
    ) -> AsyncIterator[UpstreamStream]:
        """Open a streamed answer: retried like :meth:`request` until a 2xx status arrives,
        never after (the body is the caller's). An error status raises before the block; a
        connection that drops or stalls mid-body raises from ``chunks()`` and counts
        against the circuit. Leaving the block early closes the upstream connection."""
        # A stream's body may legitimately last long: only silences (the read timeout) end it.
        call = await self._call(method, url, options)
        request = call.request
        transport = self._transport_for_use()

        @asynccontextmanager
        async def open_stream() -> AsyncIterator[UpstreamStream]:
            call.attempts += 1
            try:
                async with transport.stream(request) as stream:
                    yield stream
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

    async def _call(self, method: str, url: str, options: CallOptions) -> _Call:
        method = method.upper()
        headers = dict(options.get("headers") or {})
        body, content_type = await _encode(options.get("json"), options.get("data"))
        if content_type is not None and not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = content_type
        key = options.get("idempotency_key")
        if key is not None:
            headers["Idempotency-Key"] = key
        call = _Call(self._map_error, idempotent=method in IDEMPOTENT_METHODS or key is not None)
        call.request = UpstreamRequest(
            method,
            url,
            call.map_error,
            body=body,
            headers=headers,
            model=options.get("model"),
            read_timeout=options.get("read_timeout"),
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


async def _encode(json: object, data: Body) -> tuple[bytes | None, str | None]:
    """The body's bytes and content type (None: the caller's headers say it)."""
    if json is not None:
        return orjson.dumps(json), "application/json"
    if isinstance(data, aiohttp.FormData):
        payload = data()  # encoded once: a retry sends the same bytes, boundary included
        return await payload.as_bytes(), payload.content_type
    return (data.encode() if isinstance(data, str) else data), None


def _name_transport_failure(error: ProviderError) -> None:
    """Give a transport failure its code (``read_timeout``, ``connect_error``, ...)."""
    if error.code is None:
        error.code = transport_code(error)
