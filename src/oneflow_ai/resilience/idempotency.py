"""The idempotency store: who runs a keyed request, and the answer it produced.

A record per (caller scope, Idempotency-Key) is either *running* (claimed by one request, with a
lease the runner renews while it works) or *done* (the stored answer, kept for ``ttl``
seconds). :meth:`IdempotencyStore.begin` claims a free key or reports what is there;
:meth:`IdempotencyStore.wait` waits for a running one to finish; the runner ends with
:meth:`IdempotencyStore.complete` (store the answer) or :meth:`IdempotencyStore.release` (forget
the key, so that a retry runs again; used for answers that must not be replayed, such as 5xx).

Every record carries the request's fingerprint (method, path, query, body, caller): a key seen
again with another fingerprint is a :class:`Mismatch`.

Two backends: :class:`MemoryIdempotencyStore` (one process) and :class:`RedisIdempotencyStore`
(``SET NX PX`` to claim, compare-and-set Lua to finish, so replicas share keys). With Redis,
waiters in the runner's own process are woken at once; waiters on other replicas poll with
backoff (10 ms doubling to 200 ms). If a runner dies, its lease expires (``lock_seconds``) and
a waiter claims the key and runs the request.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import orjson

if TYPE_CHECKING:  # redis-py is imported only when REDIS_URL is set
    from redis.asyncio import Redis

__all__ = [
    "Claimed",
    "Done",
    "IdempotencyStore",
    "InFlight",
    "MemoryIdempotencyStore",
    "Mismatch",
    "RedisIdempotencyStore",
    "StoredResponse",
]


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """An answer as it left the application: status, raw header pairs, body bytes.

    ``replayable`` is false when the body was larger than the store keeps; the key then stays
    taken (so the request is not run twice) but duplicates get a 409 instead of a replay.
    """

    status: int
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes
    replayable: bool = True

    def encode(self, fingerprint: str) -> bytes:
        head = {
            "state": "done",
            "fp": fingerprint,
            "status": self.status,
            "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in self.headers],
            "replayable": self.replayable,
        }
        return orjson.dumps(head) + b"\n" + self.body


@dataclass(frozen=True, slots=True)
class Claimed:
    """This request runs; finish with ``complete`` or ``release`` passing this claim."""

    token: str
    fingerprint: str


@dataclass(frozen=True, slots=True)
class Done:
    response: StoredResponse


@dataclass(frozen=True, slots=True)
class InFlight:
    """Another request with this key and body is running."""


@dataclass(frozen=True, slots=True)
class Mismatch:
    """The key was used with a different request (method, path, body or caller)."""


Begin = Claimed | Done | InFlight | Mismatch


class IdempotencyStore(Protocol):
    ttl: float
    lock_seconds: float

    async def begin(self, key: str, fingerprint: str) -> Begin: ...

    async def wait(self, key: str, fingerprint: str, max_wait: float) -> Begin:
        """Wait (up to ``max_wait`` s) while the key is running; then as ``begin`` (so the
        waiter may claim the key if its runner released it or vanished)."""
        ...

    async def complete(self, key: str, claim: Claimed, response: StoredResponse) -> None: ...

    async def release(self, key: str, claim: Claimed) -> None: ...

    async def renew(self, key: str, claim: Claimed) -> None:
        """Extend a running record's lease (called by the runner every ``lock_seconds / 3``)."""
        ...


# ---- in process -------------------------------------------------------------------------------


@dataclass(slots=True)
class _Entry:
    fingerprint: str
    token: str | None  # None once done
    expires_at: float
    response: StoredResponse | None = None
    finished: asyncio.Event = field(default_factory=asyncio.Event)


class MemoryIdempotencyStore:
    """Keys in this process (the embedded default). Expired records are dropped lazily."""

    def __init__(
        self,
        *,
        ttl: float = 24 * 3600.0,
        lock_seconds: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self.lock_seconds = lock_seconds
        self._clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def __len__(self) -> int:
        self._purge(self._clock())
        return len(self._entries)

    async def begin(self, key: str, fingerprint: str) -> Begin:
        now = self._clock()
        self._purge(now)
        entry = self._entries.get(key)
        if entry is not None and entry.expires_at <= now:
            self._drop(key, entry)
            entry = None
        if entry is None:
            token = secrets.token_hex(8)
            self._entries[key] = _Entry(fingerprint, token, now + self.lock_seconds)
            return Claimed(token, fingerprint)
        if entry.fingerprint != fingerprint:
            return Mismatch()
        if entry.response is not None:
            return Done(entry.response)
        return InFlight()

    async def wait(self, key: str, fingerprint: str, max_wait: float) -> Begin:
        deadline = self._clock() + max_wait
        while True:
            result = await self.begin(key, fingerprint)
            now = self._clock()
            entry = self._entries.get(key)
            if not isinstance(result, InFlight) or now >= deadline or entry is None:
                return result
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    entry.finished.wait(), max(0.0, min(deadline, entry.expires_at) - now)
                )

    async def complete(self, key: str, claim: Claimed, response: StoredResponse) -> None:
        entry = self._entries.get(key)
        if entry is None or entry.token != claim.token:
            return  # the lease was lost; whoever holds the key now decides
        entry.token = None
        entry.response = response
        entry.expires_at = self._clock() + self.ttl
        self._entries.move_to_end(key)
        entry.finished.set()

    async def release(self, key: str, claim: Claimed) -> None:
        entry = self._entries.get(key)
        if entry is not None and entry.token == claim.token:
            self._drop(key, entry)

    async def renew(self, key: str, claim: Claimed) -> None:
        entry = self._entries.get(key)
        if entry is not None and entry.token == claim.token:
            entry.expires_at = self._clock() + self.lock_seconds

    def _drop(self, key: str, entry: _Entry) -> None:
        del self._entries[key]
        entry.finished.set()

    def _purge(self, now: float) -> None:
        # Records are (nearly) in expiry order: done records move to the end when stored.
        while self._entries:
            key, entry = next(iter(self._entries.items()))
            if entry.expires_at > now:
                return
            self._drop(key, entry)


# ---- Redis -----------------------------------------------------------------------------------

# KEYS: record. ARGV: token, new value, ttl_ms. Replace a running record we own.
_COMPLETE = """
local current = redis.call('GET', KEYS[1])
if not current then return 0 end
local head = string.sub(current, 1, (string.find(current, '\\n', 1, true) or 0) - 1)
local ok, record = pcall(cjson.decode, head)
if not ok or record['state'] ~= 'running' or record['token'] ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"""

# KEYS: record. ARGV: token, lease_ms (empty: delete). Renew or delete a running record we own.
_OWNED = """
local current = redis.call('GET', KEYS[1])
if not current then return 0 end
local head = string.sub(current, 1, (string.find(current, '\\n', 1, true) or 0) - 1)
local ok, record = pcall(cjson.decode, head)
if not ok or record['state'] ~= 'running' or record['token'] ~= ARGV[1] then return 0 end
if ARGV[2] == '' then
  redis.call('DEL', KEYS[1])
else
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 1
"""

_POLL_FIRST = 0.01
_POLL_MAX = 0.2


class RedisIdempotencyStore:
    """Keys shared by every replica through Redis (see the module docstring)."""

    def __init__(
        self,
        redis: Redis,
        *,
        prefix: str = "oneflow:",
        ttl: float = 24 * 3600.0,
        lock_seconds: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._redis = redis
        self._prefix = f"{prefix}idem:"
        self.ttl = ttl
        self.lock_seconds = lock_seconds
        self._clock = clock
        self._complete = redis.register_script(_COMPLETE)
        self._owned = redis.register_script(_OWNED)
        self._local: dict[str, asyncio.Event] = {}  # keys this process is running

    def _key(self, key: str) -> str:
        return self._prefix + key

    async def begin(self, key: str, fingerprint: str) -> Begin:
        name = self._key(key)
        for _ in range(3):  # a record may expire between SET NX and GET
            token = secrets.token_hex(8)
            running = orjson.dumps({"state": "running", "fp": fingerprint, "token": token})
            claimed = await self._redis.set(
                name, running + b"\n", nx=True, px=int(self.lock_seconds * 1000)
            )
            if claimed:
                self._local[key] = asyncio.Event()
                return Claimed(token, fingerprint)
            raw = await self._redis.get(name)
            if raw is None:
                continue
            return _parse(raw if isinstance(raw, bytes) else raw.encode(), fingerprint)
        return InFlight()

    async def wait(self, key: str, fingerprint: str, max_wait: float) -> Begin:
        deadline = self._clock() + max_wait
        delay = _POLL_FIRST
        while True:
            result = await self.begin(key, fingerprint)
            remaining = deadline - self._clock()
            if not isinstance(result, InFlight) or remaining <= 0:
                return result
            local = self._local.get(key)
            if local is not None:  # the runner is in this process: it wakes us
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(local.wait(), remaining)
            else:
                await asyncio.sleep(min(remaining, delay))
                delay = min(_POLL_MAX, delay * 2)

    async def complete(self, key: str, claim: Claimed, response: StoredResponse) -> None:
        try:
            await self._complete(
                keys=[self._key(key)],
                args=[claim.token, response.encode(claim.fingerprint), int(self.ttl * 1000)],
            )
        finally:
            self._wake(key)

    async def release(self, key: str, claim: Claimed) -> None:
        try:
            await self._owned(keys=[self._key(key)], args=[claim.token, ""])
        finally:
            self._wake(key)

    async def renew(self, key: str, claim: Claimed) -> None:
        await self._owned(keys=[self._key(key)], args=[claim.token, int(self.lock_seconds * 1000)])

    def _wake(self, key: str) -> None:
        event = self._local.pop(key, None)
        if event is not None:
            event.set()


def _parse(raw: bytes, fingerprint: str) -> Begin:
    head, _, body = raw.partition(b"\n")
    record = orjson.loads(head)
    if record.get("fp") != fingerprint:
        return Mismatch()
    if record.get("state") != "done":
        return InFlight()
    return Done(
        StoredResponse(
            status=int(record["status"]),
            headers=tuple((k.encode("latin-1"), v.encode("latin-1")) for k, v in record["headers"]),
            body=body,
            replayable=bool(record.get("replayable", True)),
        )
    )
