"""How busy each deployment is: calls in flight, and the rate-limit headroom its provider reports.

A deployment is one provider serving one model (`provider/model`, the key of its circuit
breaker). `LoadTrackingUpstream` wraps a provider's upstream client and tells `DeploymentLoad`

- when a call starts and ends (a stream ends when its body is closed), so balancing by least
  in-flight calls sees what this process has outstanding;
- what the provider said about its rate limits in each answer: OpenAI's (and most compatible
  APIs') `x-ratelimit-remaining-requests` / `-tokens` with `x-ratelimit-reset-requests` /
  `-tokens` (`1s`, `6m0s`, `20ms`), Anthropic's `anthropic-ratelimit-requests-remaining` /
  `-tokens-remaining` with their RFC 3339 resets; and a 429, which leaves no headroom until its
  `Retry-After`.

`DeploymentLoad.short(key, tokens)` says whether a deployment is about to refuse: fewer
requests left than this process has in flight to it, or fewer tokens left than the call needs,
before the window resets. The gateway then tries its other deployments first (it never refuses
on this alone: the provider has the last word). What a provider reported is trusted until its
reset time, or for `default_window` seconds when it gave none. The counts are this process's
own: replicas each read the same headers from their own answers. Only the deployments given as
`tracked` are followed (those of models with more than one: nothing is chosen among the
others), so every other call passes through at no cost.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from oneflow_ai.errors import ProviderRateLimitedError
from oneflow_ai.providers.upstream import (
    UpstreamClient,
    UpstreamRequest,
    UpstreamResponse,
    UpstreamStream,
)

__all__ = ["DeploymentLoad", "Headroom", "LoadTrackingUpstream", "deployment_key", "parse_reset"]

#: After a 429 without Retry-After, how long a deployment counts as having no headroom.
_RATE_LIMITED_SECONDS = 5.0


def deployment_key(provider: str, model: str | None) -> str:
    """`provider/model` (the provider alone for a call that names no model)."""
    return provider if model is None else f"{provider}/{model}"


@dataclass(frozen=True, slots=True)
class Headroom:
    """What a provider last said: requests and tokens left (None: not said) until `until`
    (this process's monotonic clock)."""

    requests: int | None
    tokens: int | None
    until: float


def parse_reset(value: str, now_wall: float) -> float | None:
    """Seconds until a rate-limit window resets: OpenAI's durations (`1s`, `6m0s`, `1h2m3.5s`,
    `20ms`) or an RFC 3339 instant (Anthropic's); None if unreadable."""
    text = value.strip()
    if not text:
        return None
    if text[0].isdigit() and ("T" in text or text.count("-") >= 2):
        try:
            instant = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
        if instant.tzinfo is None:
            instant = instant.replace(tzinfo=UTC)
        return max(instant.timestamp() - now_wall, 0.0)
    total = 0.0
    number = ""
    index = 0
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    while index < len(text):
        char = text[index]
        if char.isdigit() or char == ".":
            number += char
            index += 1
            continue
        unit = "ms" if text.startswith("ms", index) else char
        if unit not in units or not number:
            return None
        try:
            total += float(number) * units[unit]
        except ValueError:
            return None
        number = ""
        index += len(unit)
    if number:  # a bare number: seconds
        try:
            total += float(number)
        except ValueError:
            return None
    return total


def _int(headers: Mapping[str, str], *names: str) -> int | None:
    for name in names:
        value = headers.get(name)
        if value is not None:
            try:
                return int(float(value))
            except ValueError:
                continue
    return None


class DeploymentLoad:
    """Calls in flight and rate-limit headroom, by deployment key (module docstring)."""

    def __init__(
        self,
        *,
        tracked: frozenset[str] | None = None,
        default_window: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        #: The deployment keys followed (None: every one).
        self.tracked = tracked
        self._in_flight: dict[str, int] = {}
        self._headroom: dict[str, Headroom] = {}
        self._default_window = default_window
        self._clock = clock
        self._wall = wall_clock

    def in_flight(self, key: str) -> int:
        return self._in_flight.get(key, 0)

    def started(self, key: str) -> None:
        self._in_flight[key] = self._in_flight.get(key, 0) + 1

    def ended(self, key: str) -> None:
        left = self._in_flight.get(key, 0) - 1
        if left > 0:
            self._in_flight[key] = left
        else:
            self._in_flight.pop(key, None)

    def headroom(self, key: str) -> Headroom | None:
        """What the provider last reported for `key`, while it holds."""
        known = self._headroom.get(key)
        if known is None or self._clock() >= known.until:
            return None
        return known

    def observe(self, key: str, headers: Mapping[str, str]) -> None:
        """Read an answer's rate-limit headers (case-insensitive mapping)."""
        requests = _int(
            headers, "x-ratelimit-remaining-requests", "anthropic-ratelimit-requests-remaining"
        )
        tokens = _int(
            headers, "x-ratelimit-remaining-tokens", "anthropic-ratelimit-tokens-remaining"
        )
        if requests is None and tokens is None:
            return
        resets = [
            parse_reset(value, self._wall())
            for name in (
                "x-ratelimit-reset-requests",
                "x-ratelimit-reset-tokens",
                "anthropic-ratelimit-requests-reset",
                "anthropic-ratelimit-tokens-reset",
            )
            if (value := headers.get(name)) is not None
        ]
        known = [r for r in resets if r is not None]
        # The later reset: until then, what is left can only shrink.
        window = max(known) if known else self._default_window
        self._headroom[key] = Headroom(requests, tokens, self._clock() + window)

    def rate_limited(self, key: str, retry_after: float | None) -> None:
        """A 429: no headroom until `retry_after` (or a short while)."""
        wait = retry_after if retry_after is not None and retry_after > 0 else None
        until = self._clock() + (wait if wait is not None else _RATE_LIMITED_SECONDS)
        self._headroom[key] = Headroom(0, None, until)

    def short(self, key: str, tokens: int = 0) -> bool:
        """Whether `key` is about to refuse a call needing `tokens` (module docstring)."""
        known = self.headroom(key)
        if known is None:
            return False
        if known.requests is not None and known.requests <= self.in_flight(key):
            return True
        return known.tokens is not None and tokens > 0 and known.tokens < tokens


class LoadTrackingUpstream:
    """An upstream client that reports its calls to a `DeploymentLoad` (module docstring).

    It wraps the resilient client, so a call in flight spans its retries, and the headers read
    are those of the answer that came back."""

    def __init__(self, inner: UpstreamClient, load: DeploymentLoad) -> None:
        self.provider: str = inner.provider
        self.inner = inner
        self.load = load

    def _key(self, request: UpstreamRequest) -> str | None:
        key = deployment_key(self.provider, request.model)
        tracked = self.load.tracked
        return key if tracked is None or key in tracked else None

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        key = self._key(request)
        if key is None:
            return await self.inner.send(request)
        load = self.load
        load.started(key)
        try:
            response = await self.inner.send(request)
        except ProviderRateLimitedError as exc:
            load.rate_limited(key, exc.retry_after)
            raise
        finally:
            load.ended(key)
        load.observe(key, response.headers)
        return response

    def stream(self, request: UpstreamRequest) -> AbstractAsyncContextManager[UpstreamStream]:
        key = self._key(request)
        if key is None:
            return self.inner.stream(request)
        return self._stream(request, key)

    @asynccontextmanager
    async def _stream(self, request: UpstreamRequest, key: str) -> AsyncIterator[UpstreamStream]:
        load = self.load
        load.started(key)
        try:
            async with self.inner.stream(request) as response:
                load.observe(key, response.headers)
                yield response
        except ProviderRateLimitedError as exc:  # only ever when opening: a refusal
            load.rate_limited(key, exc.retry_after)
            raise
        finally:
            load.ended(key)

    async def aclose(self) -> None:
        await self.inner.aclose()

    def __repr__(self) -> str:
        return f"LoadTrackingUpstream({self.inner!r})"
