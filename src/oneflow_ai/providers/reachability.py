"""Whether the providers declared by configuration can be reached: a warning, never a stop.

A provider of one's own (vLLM, Ollama) may start after the gateway, or be down for a while;
the gateway starts anyway and its calls to that provider fail over like any other failure.
What an operator needs is to see it: `ProviderReachability.check()` opens a TCP connection to
each declared provider's host (no request, no credentials: nothing is billed or logged
upstream) and reports the ones that refuse or do not answer. The readiness probe shows them as
warnings (`/ready`), start-up logs them, and results are kept for `ttl` seconds so a busy
readiness probe does not become a connection storm.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

import structlog

from oneflow_ai.catalog import ProviderEntry

__all__ = ["ProviderReachability", "Reachability"]

log = structlog.get_logger("oneflow.providers")


@dataclass(frozen=True, slots=True)
class Reachability:
    """One provider's last check: `error` is None when its host accepted a connection."""

    provider: str
    address: str  # host:port
    error: str | None

    @property
    def reachable(self) -> bool:
        return self.error is None


def _address(base_url: str) -> tuple[str, int]:
    parts = urlsplit(base_url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.hostname or "", port


class ProviderReachability:
    """TCP checks of the declared providers (module docstring)."""

    def __init__(
        self,
        providers: Iterable[ProviderEntry],
        *,
        timeout: float = 2.0,
        ttl: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._providers = tuple(providers)
        self._timeout = timeout
        self._ttl = ttl
        self._clock = clock
        self._checked_at: float | None = None
        self._results: tuple[Reachability, ...] = ()
        self._lock = asyncio.Lock()

    @property
    def providers(self) -> tuple[str, ...]:
        return tuple(p.name for p in self._providers)

    async def check(self, *, fresh: bool = False) -> tuple[Reachability, ...]:
        """Every declared provider's reachability, checked at most once per `ttl`."""
        async with self._lock:
            now = self._clock()
            stale = self._checked_at is None or now - self._checked_at >= self._ttl
            if fresh or stale:
                self._results = tuple(
                    await asyncio.gather(*(self._one(p) for p in self._providers))
                )
                self._checked_at = self._clock()
            return self._results

    async def warn_unreachable(self) -> None:
        """Check now and log a warning per provider that cannot be reached (start-up)."""
        for result in await self.check(fresh=True):
            if not result.reachable:
                log.warning(
                    "provider_unreachable",
                    provider=result.provider,
                    address=result.address,
                    error=result.error,
                    hint="the gateway serves on; calls to this provider fail until it answers",
                )

    async def _one(self, provider: ProviderEntry) -> Reachability:
        host, port = _address(provider.base_url)
        address = f"{host}:{port}"
        try:
            _reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port), self._timeout
            )
        except TimeoutError:
            return Reachability(provider.name, address, f"no answer within {self._timeout:g} s")
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            return Reachability(provider.name, address, f"cannot connect: {reason}")
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return Reachability(provider.name, address, None)
