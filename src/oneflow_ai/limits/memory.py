"""The in-process window store: the embedded default (one process, no Redis).

Counting runs without an `await`, so one event loop admits atomically. Several worker processes
without Redis would each count alone: configure `REDIS_URL` for more than one.

Each bucket keeps its slice counters with their running total and its oldest slice, so a check
reads two integers; the counters are summed again only when a slice has left the window.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from oneflow_ai.limits.window import SLICES, Bucket, BucketResult, reset_ms, retry_ms

__all__ = ["MemoryWindowStore"]

_SWEEP_EVERY = 10_000


class _Window:
    """One bucket's slices (slice index -> count), their total and the oldest index."""

    __slots__ = ("oldest", "slices", "used", "width")

    def __init__(self, width: int) -> None:
        self.width = width  # of a slice, in milliseconds
        self.slices: dict[int, int] = {}
        self.used = 0
        self.oldest: int | None = None

    def forget(self, current: int) -> None:
        """Drop the slices that have left the window ending with slice `current`."""
        slices, horizon = self.slices, current - SLICES
        for index in [i for i in slices if i <= horizon]:
            del slices[index]
        self.used = sum(slices.values())
        self.oldest = min(slices) if slices else None

    def charge(self, current: int, cost: int) -> None:
        self.slices[current] = self.slices.get(current, 0) + cost
        self.used += cost
        if self.oldest is None or current < self.oldest:
            self.oldest = current


class MemoryWindowStore:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._windows: dict[str, _Window] = {}
        self._hits = 0

    async def hit(self, buckets: Sequence[Bucket], *, check: bool = True) -> list[BucketResult]:
        return self.hit_now(buckets, check=check)

    def charge_later(self, buckets: Sequence[Bucket]) -> None:
        """Charged at once: in the process it costs nothing to wait for."""
        now_ms = int(self._clock() * 1000)
        for bucket in buckets:
            if bucket.cost > 0:
                window, current = self._window(bucket, now_ms)
                window.charge(current, bucket.cost)
        self._counted(now_ms)

    def hit_now(self, buckets: Sequence[Bucket], *, check: bool = True) -> list[BucketResult]:
        now_ms = int(self._clock() * 1000)
        staged: list[tuple[_Window, int]] = []
        admitted = True
        for bucket in buckets:
            window, current = self._window(bucket, now_ms)
            staged.append((window, current))
            if check and window.used + bucket.cost > bucket.limit:
                admitted = False
        results: list[BucketResult] = []
        for bucket, (window, current) in zip(buckets, staged, strict=True):
            allowed = admitted or window.used + bucket.cost <= bucket.limit
            retry = 0
            if admitted and bucket.cost > 0:
                window.charge(current, bucket.cost)
            elif not allowed:
                retry = retry_ms(
                    sorted(window.slices.items()),
                    window.used + bucket.cost - bucket.limit,
                    bucket.cost,
                    bucket.limit,
                    window.width,
                    now_ms,
                )
            reset = reset_ms(window.oldest, window.width, now_ms)
            results.append(BucketResult(allowed, window.used, retry, reset))
        self._counted(now_ms)
        return results

    def _window(self, bucket: Bucket, now_ms: int) -> tuple[_Window, int]:
        """The bucket's window as of `now_ms` (a new, empty one the first time), and the
        index of the slice `now_ms` falls in."""
        window = self._windows.get(bucket.key)
        if window is None:
            window = self._windows[bucket.key] = _Window(bucket.window_ms // SLICES)
            return window, now_ms // window.width
        current = now_ms // window.width
        if window.oldest is not None and window.oldest <= current - SLICES:
            window.forget(current)
        return window, current

    def _counted(self, now_ms: int) -> None:
        self._hits += 1
        if self._hits % _SWEEP_EVERY == 0:
            self._sweep(now_ms)

    def _sweep(self, now_ms: int) -> None:
        """Forget buckets whose every slice has left the window."""
        for key in list(self._windows):
            window = self._windows[key]
            window.forget(now_ms // window.width)
            if window.oldest is None:
                del self._windows[key]

    def __len__(self) -> int:
        return len(self._windows)

    async def close(self) -> None:
        self._windows.clear()
