"""`ResilientUpstream`: breakers, retries and idempotency keys around a provider's upstream
client, by injection.

The provider adapters talk to their provider through an
:class:`~oneflow_ai.providers.upstream.UpstreamClient`; ``ResilientUpstream`` implements the
same protocol around one, so the registry wraps each provider's client once and no adapter
changes::

    def client_factory(provider: ProviderSettings, headers: Mapping[str, str]):
        return ResilientUpstream(
            default_client(provider, headers), build_caller(settings, provider.name, breakers)
        )

What it adds, per call:

- the circuit breakers of the provider and of the request's ``model`` (the model the fallback
  executor is trying, which the adapter passes on explicitly): an open circuit raises
  ``CircuitOpenError`` without a call;
- an ``Idempotency-Key`` header on every POST that has none (one key per logical call, the same
  on its retries), which makes a retry of a POST safe where the provider honours the key and
  lets the retry rules treat the call as idempotent; ``idempotency_keys=False`` turns this off,
  and then a POST is retried only when the provider certainly did not act on it;
- retries with full-jitter backoff, Retry-After and the retry budget
  (:class:`~oneflow_ai.resilience.caller.ResilientCaller`): ``send`` as a whole, ``stream``
  only until the streamed answer is open (never once its body is being read).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from oneflow_ai.domain.ids import uuid4_hex
from oneflow_ai.providers.upstream import (
    UpstreamClient,
    UpstreamRequest,
    UpstreamResponse,
    UpstreamStream,
)
from oneflow_ai.resilience.caller import IDEMPOTENT_METHODS, ResilientCaller

__all__ = ["ResilientUpstream"]


class ResilientUpstream:
    """An upstream client with breakers, retries and idempotency keys (module docstring)."""

    def __init__(
        self,
        inner: UpstreamClient,
        caller: ResilientCaller,
        *,
        idempotency_keys: bool = True,
        new_key: Callable[[], str] = uuid4_hex,
    ) -> None:
        if caller.provider != inner.provider:
            raise ValueError(f"caller for {caller.provider!r}, client for {inner.provider!r}")
        self.provider: str = inner.provider  # a plain attribute, as the protocol declares it
        self.inner = inner
        self.caller = caller
        self._keys = idempotency_keys
        self._new_key = new_key

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        request, idempotent = self._keyed(request)
        return await self.caller.call(
            lambda: self.inner.send(request), model=request.model, idempotent=idempotent
        )

    def stream(self, request: UpstreamRequest) -> AbstractAsyncContextManager[UpstreamStream]:
        request, idempotent = self._keyed(request)
        return self.caller.stream(
            lambda: self.inner.stream(request), model=request.model, idempotent=idempotent
        )

    async def aclose(self) -> None:
        await self.inner.aclose()

    def _keyed(self, request: UpstreamRequest) -> tuple[UpstreamRequest, bool]:
        if request.method.upper() in IDEMPOTENT_METHODS:
            return request, True
        given = request.headers
        if given and any(name.lower() == "idempotency-key" for name in given):
            return request, True
        if not self._keys:
            return request, False
        key = self._new_key()
        headers = {**given, "Idempotency-Key": key} if given else {"Idempotency-Key": key}
        return request.with_headers(headers), True

    def __repr__(self) -> str:
        return f"ResilientUpstream({self.inner!r})"
