"""When to retry an upstream call, and how long to wait first.

Backoff is exponential with **full jitter** (AWS architecture blog, "Exponential Backoff And
Jitter"): before retry ``n`` (0-based) the client sleeps a uniformly random time in
``[0, min(max_delay, base_delay * 2**n)]``. Full jitter spreads the retries of many clients
evenly over the window, so a provider that comes back is not hit by a synchronized wave.

A provider's own ``Retry-After`` wins over the backoff: ``retry-after-ms`` (milliseconds, what
OpenAI's and Anthropic's APIs send) first, then ``Retry-After`` as delta-seconds (fractions
accepted) or as an HTTP date. A Retry-After longer than ``max_retry_after`` is not waited for:
the call fails at once with ``retry_after`` set, so the fallback executor can move to another
model and the caller learns when to come back.

Retries draw on a :class:`RetryBudget` (a token bucket filled by first attempts), so during an
outage retries add at most ``ratio`` of the request rate (plus a small floor) instead of
multiplying it by ``max_retries + 1``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

# The providers' reading of Retry-After is the one the retries use (one parser for both).
from oneflow_ai.providers.errors import retry_after as parse_retry_after

__all__ = ["RetryBudget", "RetryPolicy", "parse_retry_after"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with full jitter, capped; honours Retry-After up to a limit.

    ``max_retries`` retries follow the first attempt (so at most ``max_retries + 1`` attempts).
    """

    max_retries: int = 2
    base_delay: float = 0.25
    max_delay: float = 8.0
    max_retry_after: float = 20.0

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if self.base_delay < 0 or self.max_delay < 0 or self.max_retry_after < 0:
            raise ValueError("delays must be >= 0")

    def backoff_cap(self, retry: int) -> float:
        """Upper bound of the jittered delay before retry number ``retry`` (0-based)."""
        if retry >= 64:  # 2**64 * base overflows nothing useful; the cap applies long before
            return self.max_delay
        return min(self.max_delay, self.base_delay * (2.0**retry))

    def delay(
        self,
        retry: int,
        retry_after: float | None = None,
        *,
        rng: Callable[[], float] = random.random,
    ) -> float | None:
        """Seconds to wait before retry ``retry`` (0-based), or ``None``: do not retry.

        With ``retry_after`` (the provider's hint, in seconds) the wait is exactly that hint,
        unless it exceeds ``max_retry_after`` (then ``None``). Otherwise it is full jitter:
        ``rng() * backoff_cap(retry)``, where ``rng`` returns a float in ``[0, 1)``.
        """
        if retry >= self.max_retries:
            return None
        if retry_after is not None:
            if retry_after > self.max_retry_after:
                return None
            return max(0.0, retry_after)
        return rng() * self.backoff_cap(retry)


class RetryBudget:
    """A token bucket that bounds retries to a fraction of recent traffic.

    Every first attempt deposits ``ratio`` tokens; every retry withdraws one whole token and is
    refused when less than one is left. A floor of ``min_per_second`` tokens per second keeps a
    trickle of retries possible at low traffic. Tokens never exceed ``capacity``, so a quiet
    hour cannot bank an unbounded burst. Over any period, therefore::

        retries <= initial + ratio * requests + min_per_second * elapsed

    (the bound the property tests check). One budget per provider client, per process: each
    replica bounds its own retries, which bounds the fleet's.
    """

    __slots__ = ("_clock", "_last", "_tokens", "capacity", "min_per_second", "ratio")

    def __init__(
        self,
        *,
        ratio: float = 0.2,
        min_per_second: float = 1.0,
        capacity: float = 20.0,
        initial: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ratio < 0 or min_per_second < 0 or capacity < 1:
            raise ValueError("ratio and min_per_second must be >= 0 and capacity >= 1")
        self.ratio = ratio
        self.min_per_second = min_per_second
        self.capacity = capacity
        self._clock = clock
        self._tokens = capacity if initial is None else min(capacity, max(0.0, initial))
        self._last = clock()

    @property
    def tokens(self) -> float:
        self._refill()
        return self._tokens

    def deposit(self) -> None:
        """A first attempt was made."""
        self._refill()
        self._tokens = min(self.capacity, self._tokens + self.ratio)

    def try_withdraw(self) -> bool:
        """Spend one token for a retry; ``False`` (and nothing spent) when the budget is dry."""
        self._refill()
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    def _refill(self) -> None:
        now = self._clock()
        elapsed = now - self._last
        self._last = now
        if elapsed > 0 and self.min_per_second:
            self._tokens = min(self.capacity, self._tokens + elapsed * self.min_per_second)
