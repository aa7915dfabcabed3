"""`ResilientHTTPClient`: one pooled aiohttp session per provider, with circuit breakers,
retries (exponential backoff, full jitter, Retry-After, a retry budget) and timeouts.

>>> client = ResilientHTTPClient(provider_name="openai", timeout=30.0, max_retries=3)
>>> response = await client.post(url=..., json={...}, headers={...}, idempotency_key="req-1")
>>> response.status, response.json()

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
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp
import orjson

from oneflow_ai.errors import ProviderError
from oneflow_ai.resilience.caller import ResilientCaller, RetryEvent
from oneflow_ai.resilience.circuits import CircuitBreakers
from oneflow_ai.resilience.retry import RetryBudget, RetryPolicy
from oneflow_ai.resilience.upstream import (
    ErrorMapper,
    UpstreamResponse,
    UpstreamStream,
    current_model,
    map_status_error,
    map_transport_error,
)

__all__ = ["ResilientHTTPClient", "RetryEvent"]

_IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
_ERROR_BODY_LIMIT = 64 * 1024

Body = bytes | str | aiohttp.FormData | None
_Payload = bytes | str | aiohttp.payload.Payload | None


@dataclass(slots=True)
class _Call:
    method: str
    url: str
    payload: _Payload
    headers: dict[str, str]
    model: str | None
    idempotent: bool
    read_timeout: float
    deadline: float | None
    attempts: int = 0
    error_response: UpstreamResponse | None = None  # the last attempt's error answer


class ResilientHTTPClient:
    """An upstream HTTP client for one provider (see the module docstring).

    ``breakers`` defaults to a private in-process set; the gateway passes its shared
    :class:`CircuitBreakers` so that every client, the router and the admin API see the same
    circuits. ``sleep``, ``clock`` and ``rng`` are injectable so tests never wait for real
    backoff.
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
        self._timeout = self._timeouts(timeout, None)  # the usual case, built once
        self._session = session
        self._owns_session = session is None
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
        call = self._call(method, url, json, data, headers, idempotency_key, model, read_timeout)

        async def attempt() -> UpstreamResponse:
            call.attempts += 1
            call.error_response = None
            started = self._clock()
            try:
                raw = await self._open(call, streaming=False)
                try:
                    body = await (raw.read() if raw.status < 400 else _read_error_body(raw))
                finally:
                    raw.release()
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise map_transport_error(exc, self.provider, call.model) from exc
            response = UpstreamResponse(
                raw.status, raw.headers, body, call.attempts, self._clock() - started
            )
            if response.ok:
                return response
            call.error_response = response
            raise self._map_error(self.provider, call.model, response)

        try:
            return await self.caller.call(
                attempt,
                model=call.model,
                idempotent=call.idempotent,
                should_retry=lambda _error: _should_retry(call.error_response),
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
        call = self._call(method, url, json, data, headers, idempotency_key, model, read_timeout)
        async with self.caller.stream(
            lambda: self._open_stream(call),
            model=call.model,
            idempotent=call.idempotent,
            failed=lambda upstream: upstream.error is not None,
        ) as upstream:
            yield upstream

    async def aclose(self) -> None:
        """Close the pooled connections (once, at shutdown)."""
        if self._session is not None and self._owns_session:
            await self._session.close()
        self._session = None

    async def __aenter__(self) -> ResilientHTTPClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # ---- internals -------------------------------------------------------------------------

    def _call(
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
        payload: _Payload
        if json is not None:
            payload = orjson.dumps(json)
            if not any(k.lower() == "content-type" for k in send_headers):
                send_headers["Content-Type"] = "application/json"
        elif isinstance(data, aiohttp.FormData):
            payload = data()  # a multipart payload that can be sent again on a retry
        else:
            payload = data
        if idempotency_key is not None:
            send_headers["Idempotency-Key"] = idempotency_key
        return _Call(
            method=method,
            url=url,
            payload=payload,
            headers=send_headers,
            model=model if model is not None else current_model.get(),
            idempotent=method in _IDEMPOTENT_METHODS or idempotency_key is not None,
            read_timeout=read_timeout or self.read_timeout,
            deadline=self.caller.deadline(),
        )

    def _session_for_use(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._pool_size, ttl_dns_cache=300, enable_cleanup_closed=True
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=True,
                raise_for_status=False,
                trust_env=False,
            )
            self._owns_session = True
        return self._session

    def _timeouts(self, read_timeout: float, total: float | None) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(
            total=total,
            connect=self.connect_timeout,
            sock_connect=self.connect_timeout,
            sock_read=read_timeout,
        )

    async def _open(self, call: _Call, *, streaming: bool) -> aiohttp.ClientResponse:
        # A stream's body may legitimately last long: only silences (sock_read) end it.
        remaining = None if streaming else self.caller.remaining(call.deadline)
        if remaining is None and call.read_timeout == self.read_timeout:
            timeout = self._timeout
        else:
            total = None if remaining is None else max(0.001, remaining)
            timeout = self._timeouts(call.read_timeout, total)
        return await self._session_for_use().request(
            call.method,
            call.url,
            data=call.payload,
            headers=call.headers,
            timeout=timeout,
            allow_redirects=False,
        )

    @asynccontextmanager
    async def _open_stream(self, call: _Call) -> AsyncIterator[UpstreamStream]:
        call.attempts += 1
        try:
            raw = await self._open(call, streaming=True)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise map_transport_error(exc, self.provider, call.model) from exc
        try:
            if raw.status >= 400:
                try:
                    body = await _read_error_body(raw)
                except (aiohttp.ClientError, TimeoutError):
                    body = b""
                response = UpstreamResponse(raw.status, raw.headers, body, call.attempts)
                raise self._map_error(self.provider, call.model, response)
            yield UpstreamStream(raw, self.provider, call.model)
        finally:
            if raw.content.at_eof():
                raw.release()
            else:
                raw.close()  # the caller stopped early: do not leave the upstream running


def _should_retry(response: UpstreamResponse | None) -> bool | None:
    """The upstream's ``x-should-retry`` verdict on its error answer, if it gave one."""
    if response is None:
        return None
    hint = response.headers.get("x-should-retry")
    return None if hint is None else hint.strip().lower() == "true"


async def _read_error_body(raw: aiohttp.ClientResponse) -> bytes:
    """An error answer's body, up to a bound (an error page is never worth megabytes)."""
    parts: list[bytes] = []
    size = 0
    async for chunk in raw.content.iter_any():
        parts.append(chunk)
        size += len(chunk)
        if size >= _ERROR_BODY_LIMIT:
            break
    return b"".join(parts)[:_ERROR_BODY_LIMIT]
