"""`ResilientCaller`: circuit breakers, retries and a retry budget around any upstream attempt.

The transport-independent core of :class:`~oneflow_ai.resilience.http.ResilientHTTPClient`
and of :class:`~oneflow_ai.resilience.upstream_client.ResilientUpstream` (the wrapper for the
providers' ``UpstreamClient``). An *attempt* is an async function that either returns the
answer or raises a ``ProviderError``; the caller runs it under the breakers and decides whether
to run it again. A failed attempt is retried only when all of these hold:

- the error is retryable (``ProviderError.retryable``: unavailable/5xx/529, timeout, 429), and
  the upstream did not forbid it (``x-should-retry: false``, which the transport puts on the
  error as ``should_retry``; ``x-should-retry: true`` makes any failure retryable);
- the call is idempotent (the caller says so: a safe method, or an idempotency key is sent),
  **or** the upstream certainly did not act on it: the connection was never made (refused,
  DNS, connect timeout) or the answer was a 429 refusal;
- retries are left and the wait fits: the provider's Retry-After when given (up to
  ``RetryPolicy.max_retry_after``), else full-jitter backoff; within ``total_timeout``;
- the retry budget has a token.

The breakers see every attempt: an open circuit raises ``CircuitOpenError`` at once (also
between retries, so a circuit that opens during a call stops its retries).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import TypeVar

import aiohttp

from oneflow_ai.errors import ProviderError, ProviderRateLimitedError
from oneflow_ai.resilience.breaker_set import CallPermit, CircuitBreakers, outcome_of
from oneflow_ai.resilience.breaker_state import Outcome
from oneflow_ai.resilience.retry import RetryBudget, RetryPolicy

__all__ = ["IDEMPOTENT_METHODS", "ResilientCaller", "RetryEvent", "never_sent", "transport_code"]

T = TypeVar("T")
V = TypeVar("V")

_NOT_SENT_CODES = frozenset({"connect_error", "connect_timeout"})
#: Methods whose repetition is harmless by HTTP's definition; a POST needs an idempotency key.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


@dataclass(frozen=True, slots=True)
class RetryEvent:
    """Reported to ``on_retry`` before each retry (for metrics and logs)."""

    provider: str
    model: str | None
    retry: int  # 1 for the first retry
    delay: float
    error: ProviderError


def transport_code(error: ProviderError) -> str | None:
    """Which transport failure ``error`` was raised from (its aiohttp cause):
    ``connect_timeout``, ``read_timeout``, ``connect_error`` (never connected) or
    ``connection_error`` (broke); None for an HTTP answer."""
    cause = error.__cause__
    if isinstance(cause, aiohttp.ConnectionTimeoutError):
        return "connect_timeout"
    if isinstance(cause, TimeoutError):
        return "read_timeout"
    if isinstance(cause, aiohttp.ClientConnectorError):
        return "connect_error"
    if isinstance(cause, aiohttp.ClientError | OSError):
        return "connection_error"
    return None


def never_sent(error: ProviderError) -> bool:
    """Whether the upstream certainly did not act on the request that failed with ``error``.

    True for a 429 (a refusal) and for a connection that was never established (code
    ``connect_error``/``connect_timeout``, or an aiohttp connector error as the cause).
    """
    if isinstance(error, ProviderRateLimitedError) or error.upstream_status == 429:
        return True
    return (error.code or transport_code(error)) in _NOT_SENT_CODES


class ResilientCaller:
    """Runs attempts for one provider under breakers, retries and a budget (module docstring)."""

    def __init__(
        self,
        provider: str,
        *,
        breakers: CircuitBreakers | None = None,
        policy: RetryPolicy | None = None,
        budget: RetryBudget | None = None,
        total_timeout: float | None = None,
        on_retry: Callable[[RetryEvent], None] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.provider = provider
        self.breakers = breakers if breakers is not None else CircuitBreakers()
        self.policy = policy or RetryPolicy()
        self.budget = budget if budget is not None else RetryBudget()
        self.total_timeout = total_timeout
        self.on_retry = on_retry
        self._sleep = sleep
        self._clock = clock
        self._rng = rng

    def deadline(self) -> float | None:
        """The monotonic time by which a call started now must end (``total_timeout``)."""
        return None if self.total_timeout is None else self._clock() + self.total_timeout

    def remaining(self, deadline: float | None) -> float | None:
        return None if deadline is None else deadline - self._clock()

    async def call(
        self,
        attempt: Callable[[], Awaitable[T]],
        *,
        model: str | None,
        idempotent: bool,
        should_retry: Callable[[ProviderError], bool | None] | None = None,
    ) -> T:
        """Run ``attempt`` until it answers or must not be retried (then its error is raised).

        The upstream's explicit verdict (``x-should-retry``, which the transport puts on the
        error as ``should_retry``) is obeyed; ``should_retry(error)`` may give another one
        (``None`` for none).
        """
        value, permit = await self._until_success(attempt, model, idempotent, should_retry)
        await self.breakers.release(permit, Outcome.SUCCESS)
        return value

    @asynccontextmanager
    async def stream(
        self,
        opener: Callable[[], AbstractAsyncContextManager[T]],
        *,
        model: str | None,
        idempotent: bool,
        failed: Callable[[T], bool] | None = None,
    ) -> AsyncIterator[T]:
        """Enter ``opener()`` with retries (only its entering is retried, never the body).

        The stream's outcome is reported when the block ends: a ``ProviderError`` raised in it
        (a dropped connection, a read timeout) is a failure, ``failed(stream)`` may report one
        the block swallowed, a cancellation is neutral, anything else a success.
        """

        async def enter() -> tuple[AbstractAsyncContextManager[T], T]:
            context = opener()
            return context, await context.__aenter__()

        (context, stream), permit = await self._until_success(enter, model, idempotent, None)
        outcome = Outcome.SUCCESS
        try:
            yield stream
        except ProviderError as error:
            outcome = outcome_of(error)
            if not await context.__aexit__(type(error), error, error.__traceback__):
                raise
        except BaseException as exc:
            outcome = Outcome.NEUTRAL
            if not await context.__aexit__(type(exc), exc, exc.__traceback__):
                raise
        else:
            await context.__aexit__(None, None, None)
        finally:
            if outcome is Outcome.SUCCESS and failed is not None and failed(stream):
                outcome = Outcome.FAILURE
            await self.breakers.release(permit, outcome)

    async def _until_success(
        self,
        attempt: Callable[[], Awaitable[V]],
        model: str | None,
        idempotent: bool,
        should_retry: Callable[[ProviderError], bool | None] | None,
    ) -> tuple[V, CallPermit]:
        """Run ``attempt`` under the breakers, retrying by the rules, until it succeeds: its
        value and the permit it holds (the caller reports the outcome). The last error is
        raised when it must not be retried."""
        self.budget.deposit()
        deadline = self.deadline()
        retry = 0
        while True:
            permit = await self.breakers.acquire(self.provider, model)
            try:
                value = await attempt()
            except ProviderError as error:
                await self.breakers.release(permit, outcome_of(error))
                verdict = error.should_retry if should_retry is None else should_retry(error)
                if not await self._pause(error, retry, model, idempotent, deadline, verdict):
                    raise
                retry += 1
                continue
            except BaseException:
                await self.breakers.release(permit, Outcome.NEUTRAL)
                raise
            return value, permit

    async def _pause(
        self,
        error: ProviderError,
        retry: int,
        model: str | None,
        idempotent: bool,
        deadline: float | None,
        verdict: bool | None,
    ) -> bool:
        """Whether to retry after ``error``; when so, wait the delay first."""
        if verdict is False or not (error.retryable or verdict):
            return False
        if not idempotent and not never_sent(error):
            return False
        delay = self.policy.delay(retry, error.retry_after, rng=self._rng)
        if delay is None:
            return False
        remaining = self.remaining(deadline)
        if remaining is not None and delay >= remaining:
            return False
        if not self.budget.try_withdraw():
            return False
        if self.on_retry is not None:
            self.on_retry(RetryEvent(self.provider, model, retry + 1, delay, error))
        if delay > 0:
            await self._sleep(delay)
        return True
