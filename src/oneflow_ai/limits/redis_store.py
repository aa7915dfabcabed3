"""The shared window store: one Lua script per check, atomic across every replica.

The script reads the clock of the Redis server (`TIME`), so replicas with skewed clocks agree;
it checks every bucket of a request and charges them all, or none, in one round trip. A bucket is
a hash of at most 60 slice counters that expires with its window. (On Redis Cluster, every key
of one call must share a hash slot; OneFlow targets a single primary, with or without replicas.)

Tokens known only after an answer (`charge_later`) take no round trip of their own: they are
summed per bucket in memory and charged, unchecked, by the next check's own script call, ahead
of its buckets (so the check always sees them), or by a call of their own after `debt_delay`
seconds when no check comes. A request then costs one round trip and one script call.

A window far from its limit costs none: the same call asks for a share of the window's room,
which this replica then admits from in memory until it runs out or expires (`limits/shares.py`,
where the rule and its bound are). Top-ups come out of a share too when it covers them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import structlog

from oneflow_ai.limits.shares import CEILING_PERCENT, MAX_TTL, Return, ShareBook
from oneflow_ai.limits.window import SLICES, Bucket, BucketResult

if TYPE_CHECKING:  # redis-py is imported only when REDIS_URL is set
    from redis.asyncio import Redis

__all__ = ["DEBT_DELAY", "RedisWindowStore"]

log = structlog.get_logger("oneflow.limits")

#: ARGV: check ('1' or '0'), slices, how many of the first buckets are debts (charged, unchecked,
#: as they are read: before the others are), the share ceiling (percent of the limit) and a
#: share's longest life (ms), then limit, window, cost and one more value per bucket: for a debt
#: the slice to charge (-1: the current one; a negative cost there gives unused units back, never
#: below zero and only while the slice is in the window), for a checked bucket the share asked.
#: The answer: admitted, then per bucket that is no debt: allowed, used, retry, reset, and the
#: share granted, the slice it was charged to and its life in ms (see `limits/shares.py`).
_SCRIPT = """
local check = ARGV[1] == '1'
local slices = tonumber(ARGV[2])
local owed = tonumber(ARGV[3])
local ceiling = tonumber(ARGV[4])
local longest = tonumber(ARGV[5])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local admitted = true
local staged = {}
for i = 1, #KEYS do
  local base = 5 + (i - 1) * 4
  local limit = tonumber(ARGV[base + 1])
  local window = tonumber(ARGV[base + 2])
  local cost = tonumber(ARGV[base + 3])
  local extra = tonumber(ARGV[base + 4])
  local width = math.floor(window / slices)
  local current = math.floor(now / width)
  local horizon = current - slices
  local raw = redis.call('HGETALL', KEYS[i])
  local live = {}
  local stale = {}
  local used = 0
  for j = 1, #raw, 2 do
    local index = tonumber(raw[j])
    if index <= horizon then
      stale[#stale + 1] = raw[j]
    else
      local count = tonumber(raw[j + 1])
      used = used + count
      live[#live + 1] = {index, count}
    end
  end
  if #stale > 0 then
    redis.call('HDEL', KEYS[i], unpack(stale))
  end
  table.sort(live, function(a, b) return a[1] < b[1] end)
  local allowed = 1
  local retry = 0
  if i <= owed then
    if cost > 0 then
      redis.call('HINCRBY', KEYS[i], string.format('%d', current), cost)
      redis.call('PEXPIRE', KEYS[i], window + width)
    elseif cost < 0 and extra > horizon then
      local field = string.format('%d', extra)
      local have = redis.call('HGET', KEYS[i], field)
      local back = math.min(have and tonumber(have) or 0, -cost)
      if back > 0 then redis.call('HINCRBY', KEYS[i], field, -back) end
    end
  elseif check and used + cost > limit then
    allowed = 0
    admitted = false
    retry = window
    if cost <= limit then
      local need = used + cost - limit
      local freed = 0
      for _, slice in ipairs(live) do
        freed = freed + slice[2]
        if freed >= need then
          retry = math.max(1, (slice[1] + slices) * width - now)
          break
        end
      end
    end
  end
  local oldest = nil
  if #live > 0 then oldest = live[1][1] end
  staged[i] = {window, cost, width, current, used, allowed, retry, oldest, limit, extra}
end
local out = {admitted and 1 or 0}
for i = owed + 1, #KEYS do
  local s = staged[i]
  local used = s[5]
  local oldest = s[8]
  if admitted and s[2] > 0 then
    redis.call('HINCRBY', KEYS[i], string.format('%d', s[4]), s[2])
    redis.call('PEXPIRE', KEYS[i], s[1] + s[3])
    used = used + s[2]
    if oldest == nil then oldest = s[4] end
  end
  local reset = 0
  if oldest ~= nil then reset = math.max(0, (oldest + slices) * s[3] - now) end
  local share, slot, life = 0, 0, 0
  if admitted and check and s[10] > 0 and used + s[10] <= math.floor(s[9] * ceiling / 100) then
    -- charged to the slice it expires in: late in a slice, to the next one
    slot = s[4]
    if ((slot + 1) * s[3] - now) * 2 < math.min(longest, s[3]) then slot = slot + 1 end
    life = math.min(longest, (slot + 1) * s[3] - now)
    share = s[10]
    redis.call('HINCRBY', KEYS[i], string.format('%d', slot), share)
    redis.call('PEXPIRE', KEYS[i], s[1] + 2 * s[3])
  end
  out[#out + 1] = s[6]
  out[#out + 1] = used
  out[#out + 1] = s[7]
  out[#out + 1] = reset
  out[#out + 1] = share
  out[#out + 1] = slot
  out[#out + 1] = life
end
return out
"""


_Call = tuple[list[str], list[int | str]]  # keys, arguments
#: Debts (and units given back) charged ahead of the buckets, each with its slice (-1: the
#: current one); the buckets; whether to check them; the shares asked; the answer.
_Pending = tuple[
    Sequence[Return], Sequence[Bucket], bool, Sequence[int] | None, "asyncio.Future[list[int]]"
]
#: Values the script answers per bucket.
_STRIDE = 7
#: Charges after the fact wait at most this long for a check to travel with.
DEBT_DELAY = 0.02


class RedisWindowStore:
    """Checks issued in the same event-loop turn travel together: one pipelined write and one
    read for the lot (each script still runs atomically on its own, in submission order), so
    under concurrency a check costs far less than a command of its own."""

    def __init__(
        self,
        redis: Redis,
        *,
        max_batch: int = 256,
        debt_delay: float = DEBT_DELAY,
        shares: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # redis-py's errors are imported with the first store, not with this module: a
        # process without REDIS_URL never loads redis-py (~8 MiB of memory).
        from redis.exceptions import NoScriptError, ResponseError

        self._no_script: type[Exception] = NoScriptError
        self._refused: type[Exception] = ResponseError
        self._redis = redis
        self._max_batch = max_batch
        self._debt_delay = debt_delay
        self._sha: str | None = None
        self._pending: list[_Pending] = []
        self._flushing: set[asyncio.Task[None]] = set()
        self._scheduled = False
        self._debts: dict[str, Bucket] = {}
        self._debt_timer: asyncio.TimerHandle | None = None
        self._book = ShareBook(clock) if shares else None
        self._expiry: asyncio.TimerHandle | None = None

    def charge_later(self, buckets: Sequence[Bucket]) -> None:
        """Charge `buckets` unchecked with the next checks (or within `debt_delay`): usage
        known after the fact, which never refuses and needs no answer."""
        debts, book = self._debts, self._book
        now = book.clock() if book is not None else 0.0
        for bucket in buckets:
            if bucket.cost <= 0 or (book is not None and book.top_up(bucket, now)):
                continue
            owed = debts.get(bucket.key)
            debts[bucket.key] = (
                bucket if owed is None else owed._replace(cost=owed.cost + bucket.cost)
            )
        if debts:
            self._owe()

    def _owe(self) -> None:
        """Send what is owed with the next checks, or alone after `debt_delay`."""
        if self._debt_timer is None and not self._scheduled:
            loop = asyncio.get_running_loop()
            self._debt_timer = loop.call_later(self._debt_delay, self._flush_now)

    async def hit(self, buckets: Sequence[Bucket], *, check: bool = True) -> list[BucketResult]:
        if not buckets:
            return []
        book, asked, now = self._book, None, 0.0
        if check and book is not None:
            now = book.clock()
            local = book.take(buckets, now)
            if local is not None:
                return local
            asked = book.asks(buckets, now)
        future = self._submit(buckets, check=check, asked=asked)
        loop = asyncio.get_running_loop()
        if len(self._pending) >= self._max_batch:
            self._flush_now()
        elif not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush_now)
        try:
            values = await future
        except BaseException:
            if asked is not None and book is not None:
                book.failed(buckets, asked)
            raise
        results = [
            BucketResult(
                allowed=bool(values[1 + _STRIDE * i]),
                used=values[2 + _STRIDE * i],
                retry_after_ms=values[3 + _STRIDE * i],
                reset_ms=values[4 + _STRIDE * i],
            )
            for i in range(len(buckets))
        ]
        if asked is not None and book is not None:
            grants = [
                (values[5 + _STRIDE * i], values[6 + _STRIDE * i], values[7 + _STRIDE * i])
                for i in range(len(buckets))
            ]
            book.granted(buckets, asked, results, grants, now)
            self._arm_expiry()
        if check and book is not None and not values[0]:
            # refused: units this replica holds may still cover it
            local = book.take(buckets, book.clock(), demand=False)
            if local is not None:
                return local
        return results

    def _submit(
        self, buckets: Sequence[Bucket], *, check: bool, asked: Sequence[int] | None = None
    ) -> asyncio.Future[list[int]]:
        future: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        self._pending.append(([], buckets, check, asked, future))
        return future

    def _arm_expiry(self) -> None:
        """Wake when the next share expires, to give its unused units back."""
        book = self._book
        if self._expiry is not None or book is None:
            return
        soonest = book.soonest()
        if soonest is not None:
            delay = max(0.0, soonest - book.clock())
            self._expiry = asyncio.get_running_loop().call_later(delay, self._expire)

    def _expire(self) -> None:
        self._expiry = None
        book = self._book
        if book is None:
            return
        book.expire(book.clock())
        if book.pending_returns:
            self._owe()
        self._arm_expiry()

    def _flush_now(self) -> None:
        self._scheduled = False
        if self._debt_timer is not None:
            self._debt_timer.cancel()
            self._debt_timer = None
        debts: list[Return] = [(bucket, -1) for bucket in self._debts.values()]
        self._debts = {}
        if self._book is not None and self._book.pending_returns:
            debts += self._book.drain()
        if debts:
            if self._pending:  # ahead of the first check, in its call: every check sees them
                _, buckets, check, asked, future = self._pending[0]
                self._pending[0] = (debts, buckets, check, asked, future)
                future.add_done_callback(_debt_charged)
            else:
                future = asyncio.get_running_loop().create_future()
                self._pending.append((debts, [], False, None, future))
                future.add_done_callback(_debt_charged)
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        task = asyncio.get_running_loop().create_task(self._run(batch))
        self._flushing.add(task)
        task.add_done_callback(self._flushing.discard)

    async def _run(self, batch: list[_Pending]) -> None:
        try:
            replies = await self._evaluate([_call(*pending[:4]) for pending in batch])
        except Exception as exc:
            for *_, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (*_, future), reply in zip(batch, replies, strict=True):
            if future.done():
                continue
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result([int(v) for v in reply])

    async def _evaluate(self, calls: list[_Call]) -> list[Any]:
        if self._sha is None:
            self._sha = await self._redis.script_load(_SCRIPT)
        replies = await self._pipeline(self._sha, calls)
        if any(isinstance(r, self._no_script) for r in replies):  # the server lost its scripts
            self._sha = await self._redis.script_load(_SCRIPT)
            again = [i for i, r in enumerate(replies) if isinstance(r, self._no_script)]
            retried = await self._pipeline(self._sha, [calls[i] for i in again])
            for index, reply in zip(again, retried, strict=True):
                replies[index] = reply
        return replies

    async def _pipeline(self, sha: str, calls: list[_Call]) -> list[Any]:
        if len(calls) == 1:
            keys, args = calls[0]
            try:
                return [await self._redis.evalsha(sha, len(keys), *keys, *args)]
            except self._refused as exc:
                return [exc]
        pipe = self._redis.pipeline(transaction=False)
        for keys, args in calls:
            pipe.execute_command("EVALSHA", sha, len(keys), *keys, *args)
        return list(await pipe.execute(raise_on_error=False))

    async def close(self) -> None:
        """Charge what is owed and let checks in flight finish; the Redis client belongs to
        the process's services."""
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        if self._book is not None:
            self._book.expire(0.0, everything=True)
        if self._debts or (self._book is not None and self._book.pending_returns):
            self._flush_now()
        if self._flushing:
            await asyncio.gather(*self._flushing, return_exceptions=True)


_LONGEST_MS = int(MAX_TTL * 1000)


def _call(
    debts: Sequence[Return],
    buckets: Sequence[Bucket],
    check: bool,
    asked: Sequence[int] | None = None,
) -> _Call:
    """The script's keys and arguments: ``debts`` charged first (each to its slice), then
    ``buckets`` checked (or charged unchecked), with the shares `asked` for them."""
    args: list[int | str] = [
        "1" if check else "0",
        SLICES,
        len(debts),
        CEILING_PERCENT,
        _LONGEST_MS,
    ]
    keys = [bucket.key for bucket, _ in debts]
    for bucket, slot in debts:  # to a slice of its own: units given back
        args.extend(
            (bucket.limit, bucket.window_ms, -bucket.cost if slot >= 0 else bucket.cost, slot)
        )
    for i, bucket in enumerate(buckets):
        keys.append(bucket.key)
        args.extend((bucket.limit, bucket.window_ms, bucket.cost, asked[i] if asked else 0))
    return keys, args


def _debt_charged(future: asyncio.Future[list[int]]) -> None:
    """Charges after the fact have no caller to tell: a failure is logged (and lost, as the
    limiter's fail-open checks are when Redis is down)."""
    if not future.cancelled() and future.exception() is not None:
        log.warning("rate_limit_debt_lost", error=str(future.exception()))
