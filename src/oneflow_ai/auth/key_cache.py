"""The in-process cache of API keys that keeps the database off the request path.

Entries live `ttl` seconds (a few), so any change reaches every replica within that time even if
no invalidation message arrives; invalidations (`auth/invalidation.py`) make it prompt. Unknown
prefixes are cached too (briefly, in a smaller LRU of their own, so a flood of random keys can
neither evict real keys nor reach the database twice for the same prefix). A `generation`
counter stops a load that raced with an invalidation from storing what it read before it.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from oneflow_ai.auth.principal import Principal

__all__ = ["MISSING", "KeyCache", "KeyRecord"]


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """What authenticating one key needs, with its principal built once."""

    key_id: str
    prefix: str
    secret_hash: str
    expires_at: datetime | None
    revoked_at: datetime | None
    grace_until: datetime | None
    principal: Principal

    def usable_at(self, now: datetime) -> str | None:
        """None when the key may be used at `now`, else the reason it may not."""
        if self.revoked_at is not None and self.revoked_at <= now:
            return "revoked"
        if self.grace_until is not None and self.grace_until <= now:
            return "rotated"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return None


class _Missing:
    __slots__ = ()


MISSING = _Missing()


class KeyCache:
    def __init__(
        self,
        *,
        ttl: float,
        max_size: int,
        negative_ttl: float | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self.negative_ttl = negative_ttl if negative_ttl is not None else min(ttl, 2.0)
        self.max_size = max_size
        self._negative_max = max(16, max_size // 4)
        self._now = monotonic
        self._entries: OrderedDict[str, tuple[float, KeyRecord]] = OrderedDict()
        self._negatives: OrderedDict[str, float] = OrderedDict()
        self.generation = 0

    def __len__(self) -> int:
        return len(self._entries) + len(self._negatives)

    def get(self, prefix: str) -> KeyRecord | _Missing | None:
        """The cached record, None for a cached unknown prefix, MISSING when not cached."""
        now = self._now()
        entry = self._entries.get(prefix)
        if entry is not None:
            if entry[0] > now:
                self._entries.move_to_end(prefix)
                return entry[1]
            del self._entries[prefix]
        expiry = self._negatives.get(prefix)
        if expiry is not None:
            if expiry > now:
                return None
            del self._negatives[prefix]
        return MISSING

    def put(self, prefix: str, record: KeyRecord | None, generation: int) -> None:
        """Store a load that began at `generation`; dropped if an invalidation came since."""
        if generation != self.generation:
            return
        now = self._now()
        if record is None:
            self._negatives[prefix] = now + self.negative_ttl
            self._negatives.move_to_end(prefix)
            while len(self._negatives) > self._negative_max:
                self._negatives.popitem(last=False)
            return
        self._negatives.pop(prefix, None)
        self._entries[prefix] = (now + self.ttl, record)
        self._entries.move_to_end(prefix)
        while len(self._entries) > self.max_size:
            self._entries.popitem(last=False)

    def invalidate(self, prefix: str) -> None:
        self.generation += 1
        self._entries.pop(prefix, None)
        self._negatives.pop(prefix, None)

    def invalidate_project(self, project_id: str) -> None:
        self.generation += 1
        for prefix in [
            p for p, (_, r) in self._entries.items() if r.principal.project_id == project_id
        ]:
            del self._entries[prefix]

    def clear(self) -> None:
        self.generation += 1
        self._entries.clear()
        self._negatives.clear()
