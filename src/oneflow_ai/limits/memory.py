"""The in-process window store: the embedded default (one process, no Redis).

Counting runs without an `await`, so one event loop admits atomically. Several worker processes
without Redis would each count alone: configure `REDIS_URL` for more than one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from oneflow_ai.limits.window import SLICES, Bucket, BucketResult, reset_ms, retry_ms

__all__ = ["MemoryWindowStore"]

_SWEEP_EVERY = 10_000


class MemoryWindowStore:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._windows: dict[str, tuple[int, dict[int, int]]] = {}  # key -> (window_ms, slices)
        self._hits = 0

    async def hit(self, buckets: Sequence[Bucket], *, check: bool = True) -> list[BucketResult]:
        return self.hit_now(buckets, check=check)

    def charge_later(self, buckets: Sequence[Bucket]) -> None:
        """Charged at once: in the process it costs nothing to wait for."""
        self.hit_now(buckets, check=False)

    def hit_now(self, buckets: Sequence[Bucket], *, check: bool = True) -> list[BucketResult]:
        now_ms = int(self._clock() * 1000)
        staged: list[tuple[Bucket, dict[int, int], int, int, int, bool, int]] = []
        admitted = True
        for bucket in buckets:
            width = bucket.window_ms // SLICES
            current = now_ms // width
            slices = self._live_slices(bucket.key, current)
            used = sum(slices.values())
            allowed = not check or used + bucket.cost <= bucket.limit
            retry = 0
            if not allowed:
                admitted = False
                retry = retry_ms(
                    sorted(slices.items()),
                    used + bucket.cost - bucket.limit,
                    bucket.cost,
                    bucket.limit,
                    width,
                    now_ms,
                )
            staged.append((bucket, slices, used, width, current, allowed, retry))

        results: list[BucketResult] = []
        for bucket, slices, used, width, current, allowed, retry in staged:
            if admitted and bucket.cost > 0:
                slices[current] = slices.get(current, 0) + bucket.cost
                self._windows[bucket.key] = (bucket.window_ms, slices)
                used += bucket.cost
            oldest = min(slices) if slices else None
            results.append(BucketResult(allowed, used, retry, reset_ms(oldest, width, now_ms)))

        self._hits += 1
        if self._hits % _SWEEP_EVERY == 0:
            self._sweep(now_ms)
        return results

    def _live_slices(self, key: str, current: int) -> dict[int, int]:
        stored = self._windows.get(key)
        if stored is None:
            return {}
        slices = stored[1]
        horizon = current - SLICES
        for index in [i for i in slices if i <= horizon]:
            del slices[index]
        return slices

    def _sweep(self, now_ms: int) -> None:
        """Forget buckets whose every slice has left the window."""
        for key in list(self._windows):
            window_ms, slices = self._windows[key]
            width = window_ms // SLICES
            if not slices or max(slices) <= now_ms // width - SLICES:
                del self._windows[key]

    def __len__(self) -> int:
        return len(self._windows)

    async def close(self) -> None:
        self._windows.clear()
