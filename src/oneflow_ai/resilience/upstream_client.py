"""`ResilientUpstream`: breakers, retries and idempotency keys around a provider's upstream
client, by injection.

The provider adapters talk to their provider through a small upstream-client protocol: an
object with ``provider``, ``send(request) -> response``, ``stream(request)`` (an async context
manager of a streamed answer) and ``aclose()``, whose requests carry ``method``, ``headers``
and ``model``, and whose failures are ``ProviderError`` subclasses (transport failures chained
to the aiohttp exception that caused them). ``ResilientUpstream`` implements the same protocol
around such a client, so the registry wraps each provider's client once and no adapter
changes::

    def client_factory(provider: ProviderSettings, headers: Mapping[str, str]):
        return ResilientUpstream(
            default_client(provider, headers), build_caller(settings, provider.name, breakers)
        )

What it adds, per call:

- the circuit breakers of the provider and of the model (the catalog id the fallback executor
  is trying, from :data:`~oneflow_ai.resilience.upstream.current_model`, else the request's
  own ``model``): an open circuit raises ``CircuitOpenError`` without a call;
- an ``Idempotency-Key`` header on every POST that has none (one key per logical call, the same
  on its retries), which makes a retry of a POST safe where the provider honours the key and
  lets the retry rules treat the call as idempotent; ``idempotency_keys=False`` turns this off,
  and then a POST is retried only when the provider certainly did not act on it;
- retries with full-jitter backoff, Retry-After and the retry budget
  (:class:`~oneflow_ai.resilience.caller.ResilientCaller`): ``send`` as a whole, ``stream``
  only until the streamed answer is open (never once its body is being read).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, Generic, Protocol, TypeVar, cast

from oneflow_ai.resilience.caller import IDEMPOTENT_METHODS, ResilientCaller
from oneflow_ai.resilience.upstream import current_model

__all__ = ["ResilientUpstream"]


class UpstreamRequestLike(Protocol):
    """What the wrapper reads of a request (a frozen dataclass in the providers' protocol)."""

    @property
    def method(self) -> str: ...

    @property
    def headers(self) -> Mapping[str, str] | None: ...

    @property
    def model(self) -> str | None: ...


Req = TypeVar("Req", bound=UpstreamRequestLike)
Req_contra = TypeVar("Req_contra", bound=UpstreamRequestLike, contravariant=True)
Resp = TypeVar("Resp")
Resp_co = TypeVar("Resp_co", covariant=True)
Strm = TypeVar("Strm")
Strm_co = TypeVar("Strm_co", covariant=True)


class UpstreamLike(Protocol[Req_contra, Resp_co, Strm_co]):
    """The providers' upstream-client protocol, as far as the wrapper needs it."""

    @property
    def provider(self) -> str: ...

    async def send(self, request: Req_contra) -> Resp_co: ...

    def stream(self, request: Req_contra) -> AbstractAsyncContextManager[Strm_co]: ...

    async def aclose(self) -> None: ...


class ResilientUpstream(Generic[Req, Resp, Strm]):
    """An upstream client with breakers, retries and idempotency keys (module docstring)."""

    def __init__(
        self,
        inner: UpstreamLike[Req, Resp, Strm],
        caller: ResilientCaller,
        *,
        idempotency_keys: bool = True,
        new_key: Callable[[], str] = lambda: uuid.uuid4().hex,
    ) -> None:
        if caller.provider != inner.provider:
            raise ValueError(f"caller for {caller.provider!r}, client for {inner.provider!r}")
        self.provider: str = inner.provider  # a plain attribute, as the protocol declares it
        self.inner = inner
        self.caller = caller
        self._keys = idempotency_keys
        self._new_key = new_key

    async def send(self, request: Req) -> Resp:
        request, idempotent = self._keyed(request)
        return await self.caller.call(
            lambda: self.inner.send(request), model=_model(request), idempotent=idempotent
        )

    def stream(self, request: Req) -> AbstractAsyncContextManager[Strm]:
        request, idempotent = self._keyed(request)
        return self.caller.stream(
            lambda: self.inner.stream(request), model=_model(request), idempotent=idempotent
        )

    async def aclose(self) -> None:
        await self.inner.aclose()

    def _keyed(self, request: Req) -> tuple[Req, bool]:
        if request.method.upper() in IDEMPOTENT_METHODS:
            return request, True
        headers = dict(request.headers or {})
        if any(name.lower() == "idempotency-key" for name in headers):
            return request, True
        if not self._keys:
            return request, False
        headers["Idempotency-Key"] = self._new_key()
        keyed = dataclasses.replace(cast(Any, request), headers=headers)
        return cast(Req, keyed), True

    def __repr__(self) -> str:
        return f"ResilientUpstream({self.inner!r})"


def _model(request: UpstreamRequestLike) -> str | None:
    return current_model.get() or request.model
