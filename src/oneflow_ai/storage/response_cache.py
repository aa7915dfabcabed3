"""Where the response cache keeps its entries: Redis (shared by replicas) or this process.

An entry is opaque bytes under a key, kept for a number of seconds. Both stores refuse
entries over their size bound. Redis evicts by its own `maxmemory-policy` (every entry has a
TTL, so `volatile-lru` or `allkeys-lru` both apply); the in-process store drops the least
recently used entries once its byte budget is spent. A Redis failure is raised to the caller
(the cache hook turns it into a bypass).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # redis-py is imported only when REDIS_URL is set
    from redis.asyncio import Redis


__all__ = ["MemoryResponseCache", "RedisResponseCache", "ResponseCacheStore"]


class ResponseCacheStore(Protocol):
    """A bounded key-value store with expiry."""

    #: "redis" or "memory" (for logs).
    kind: str

    async def get(self, key: str) -> bytes | None: ...

    async def put(self, key: str, value: bytes, ttl_seconds: int) -> None: ...


class RedisResponseCache:
    kind = "redis"

    def __init__(self, redis: Redis, *, prefix: str = "oneflow:cache:", max_entry_bytes: int):
        self._redis = redis
        self._prefix = prefix
        self._max_entry_bytes = max_entry_bytes

    async def get(self, key: str) -> bytes | None:
        value = await self._redis.get(self._prefix + key)
        return value if isinstance(value, bytes) else None

    async def put(self, key: str, value: bytes, ttl_seconds: int) -> None:
        if len(value) > self._max_entry_bytes:
            return
        await self._redis.set(self._prefix + key, value, ex=ttl_seconds)


class MemoryResponseCache:
    """An LRU bounded by the bytes of its entries (keys and values)."""

    kind = "memory"

    def __init__(
        self,
        *,
        max_bytes: int,
        max_entry_bytes: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._max_bytes = max_bytes
        self._max_entry_bytes = max_entry_bytes
        self._clock = clock
        self.size = 0  # bytes held

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, key: str) -> bytes | None:
        found = self._entries.get(key)
        if found is None:
            return None
        expires_at, value = found
        if expires_at <= self._clock():
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return value

    async def put(self, key: str, value: bytes, ttl_seconds: int) -> None:
        cost = len(key) + len(value)
        if len(value) > self._max_entry_bytes or cost > self._max_bytes:
            return
        if key in self._entries:
            self._drop(key)
        self._entries[key] = (self._clock() + ttl_seconds, value)
        self.size += cost
        while self.size > self._max_bytes:
            oldest = next(iter(self._entries))
            self._drop(oldest)

    def _drop(self, key: str) -> None:
        _, value = self._entries.pop(key)
        self.size -= len(key) + len(value)
