"""Sliding windows in slices: the counting rule both stores implement.

A window of W milliseconds is cut into 60 slices of W/60. A bucket keeps one count per slice;
a request is admitted when the counts of the last 60 slices plus its cost stay within the limit.
A slice leaves the window whole, at the end of the slice 60 slices after it, so the rule never
admits more than the limit in any true sliding window of length W (it may hold a unit up to one
slice longer: 1 s for per-minute limits, 1 min for per-hour ones). Memory is at most 60 counters
per bucket, whatever the limit, which makes it fit token limits as well as request limits.

`MemoryWindowStore` runs the rule in the process; `RedisWindowStore` runs the same rule as one
Lua script, atomically, for every replica at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Protocol

__all__ = ["SLICES", "Bucket", "BucketResult", "WindowStore", "reset_ms", "retry_ms"]

SLICES = 60


class Bucket(NamedTuple):  # tuples: a few are made per request
    key: str
    limit: int
    window_ms: int
    cost: int
    counts_requests: bool = True  # False for token buckets (they do not set the headers)


class BucketResult(NamedTuple):
    allowed: bool
    used: int  # after this hit when it was admitted, else before it
    retry_after_ms: int  # when refused: until enough of the window has passed
    reset_ms: int  # until the oldest counted slice leaves the window


class WindowStore(Protocol):
    async def hit(self, buckets: Sequence[Bucket], *, check: bool = True) -> list[BucketResult]:
        """Atomically: when `check`, admit only if every bucket has room, then charge all of
        them; without `check`, charge unconditionally (usage known after the fact)."""
        ...

    def charge_later(self, buckets: Sequence[Bucket]) -> None:
        """Charge unconditionally, without waiting (usage known after the fact): at the latest
        before the next `hit` of this store is decided, and soon without one."""
        ...

    async def close(self) -> None: ...


def retry_ms(
    live: Sequence[tuple[int, int]], need: int, cost: int, limit: int, width: int, now_ms: int
) -> int:
    """Milliseconds until `need` units have left the window (`live`: (slice, count) ascending)."""
    window = width * SLICES
    if cost > limit:
        return window  # never fits; say when the window has turned over
    freed = 0
    for index, count in live:
        freed += count
        if freed >= need:
            return max(1, (index + SLICES) * width - now_ms)
    return window


def reset_ms(oldest: int | None, width: int, now_ms: int) -> int:
    return 0 if oldest is None else max(0, (oldest + SLICES) * width - now_ms)
