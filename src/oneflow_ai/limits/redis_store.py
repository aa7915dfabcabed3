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
where the rule and its bound are); a share running low asks for the next one in a call of its
own, off the request path. Top-ups come out of a share too when it covers them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import structlog

from oneflow_ai.limits.redis_script import SCRIPT, STRIDE, Call, call
from oneflow_ai.limits.shares import Return, ShareBook
from oneflow_ai.limits.window import Bucket, BucketResult

if TYPE_CHECKING:  # redis-py is imported only when REDIS_URL is set
    from redis.asyncio import Redis

__all__ = ["DEBT_DELAY", "RedisWindowStore"]

log = structlog.get_logger("oneflow.limits")


#: Debts (and units given back) charged ahead of the buckets, each with its slice (-1: the
#: current one); the buckets; whether to check them; the shares asked; the answer.
_Pending = tuple[
    Sequence[Return], Sequence[Bucket], bool, Sequence[int] | None, "asyncio.Future[list[int]]"
]
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
        #: Per key, the call in flight asking for its share: done once the share is kept.
        self._coming: dict[str, asyncio.Future[None]] = {}
        self._renewing: set[asyncio.Task[None]] = set()  # calls asking for the next shares

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
        if book is not None and book.renewing:  # a top-up left a share running low
            self._renew()

    def _owe(self) -> None:
        """Send what is owed with the next checks, or alone after `debt_delay`."""
        if self._debt_timer is None and not self._scheduled:
            loop = asyncio.get_running_loop()
            self._debt_timer = loop.call_later(self._debt_delay, self._flush_now)

    async def hit(self, buckets: Sequence[Bucket], *, check: bool = True) -> list[BucketResult]:
        if not buckets:
            return []
        book = self._book
        if not check or book is None:
            return await self._hit(buckets, check=check)
        now = book.clock()
        local = book.take(buckets, now)
        if book.renewing:
            self._renew()
        if local is not None:
            return local
        if await self._granting(buckets, now):  # another check is bringing the shares
            local = book.take(buckets, book.clock(), demand=False)
            if local is not None:
                return local
        # The windows a share covers are charged to it; Redis checks the others.
        covered = book.take_covered(buckets, book.clock())
        rest = [bucket for bucket, result in zip(buckets, covered, strict=True) if result is None]
        checked = iter(await self._hit(rest, check=True) if rest else ())
        results = [result or next(checked) for result in covered]
        if all(result.allowed for result in results):
            return results
        for bucket, result in zip(buckets, covered, strict=True):
            if result is not None:
                book.give_back(bucket, result)
        # refused: units this replica holds may still cover it
        return book.take(buckets, book.clock(), demand=False) or results

    def _renew(self) -> None:
        """Ask for the shares running low in a call of their own, which no request waits for
        (unless a share runs out before it is answered)."""
        assert self._book is not None
        buckets, asked = self._book.renewals()
        granting = self._grants_coming(buckets, asked)  # checks lacking them wait for it
        task = asyncio.get_running_loop().create_task(self._ask(buckets, asked, granting))
        self._renewing.add(task)
        task.add_done_callback(self._renewing.discard)

    async def _ask(
        self, buckets: Sequence[Bucket], asked: Sequence[int], granting: asyncio.Future[None]
    ) -> None:
        try:
            await self._hit(buckets, check=True, asked=asked, granting=granting)
        except Exception as exc:  # the shares are asked again with the next checks
            log.warning("rate_limit_share_not_renewed", error=str(exc))
        finally:
            if not granting.done():  # cancelled before it was sent
                assert self._book is not None
                self._book.failed(buckets, asked)
                self._granted(buckets, asked, granting)

    async def _hit(
        self,
        buckets: Sequence[Bucket],
        *,
        check: bool,
        asked: Sequence[int] | None = None,
        granting: asyncio.Future[None] | None = None,
    ) -> list[BucketResult]:
        """One script call for `buckets` (asking for their shares when checked, or the
        shares `asked`)."""
        book, now = self._book, 0.0
        if check and book is not None:
            now = book.clock()
            if asked is None:
                asked = book.asks(buckets, now)
        future = self._submit(buckets, check=check, asked=asked)
        loop = asyncio.get_running_loop()
        if len(self._pending) >= self._max_batch:
            self._flush_now()
        elif not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush_now)
        if granting is None and asked is not None:
            granting = self._grants_coming(buckets, asked)
        try:
            values = await future
        except BaseException:
            if asked is not None and book is not None:
                book.failed(buckets, asked)
            if granting is not None and asked is not None:
                self._granted(buckets, asked, granting)
            raise
        results = [
            BucketResult(
                allowed=bool(values[1 + STRIDE * i]),
                used=values[2 + STRIDE * i],
                retry_after_ms=values[3 + STRIDE * i],
                reset_ms=values[4 + STRIDE * i],
            )
            for i in range(len(buckets))
        ]
        if asked is not None and book is not None:
            grants = [
                (values[5 + STRIDE * i], values[6 + STRIDE * i], values[7 + STRIDE * i])
                for i in range(len(buckets))
            ]
            book.granted(buckets, asked, results, grants, now)
            self._arm_expiry()
        if granting is not None and asked is not None:
            self._granted(buckets, asked, granting)
        return results

    def _submit(
        self, buckets: Sequence[Bucket], *, check: bool, asked: Sequence[int] | None = None
    ) -> asyncio.Future[list[int]]:
        future: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        self._pending.append(([], buckets, check, asked, future))
        return future

    async def _granting(self, buckets: Sequence[Bucket], now: float) -> bool:
        """Wait for the call in flight that asks for the shares this request lacks, when one
        does (a share ran out under concurrent requests: one asks, the others wait for it
        rather than each making a script call of its own); whether one did."""
        coming = self._coming
        if not coming or self._book is None:
            return False
        calls = set()
        for key in self._book.uncovered(buckets, now):
            call = coming.get(key)
            if call is None:
                return False
            calls.add(call)
        for call in calls:
            await asyncio.shield(call)
        return True

    def _grants_coming(
        self, buckets: Sequence[Bucket], asked: Sequence[int]
    ) -> asyncio.Future[None]:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        for bucket, size in zip(buckets, asked, strict=True):
            if size > 0:
                self._coming[bucket.key] = done
        return done

    def _granted(
        self, buckets: Sequence[Bucket], asked: Sequence[int], done: asyncio.Future[None]
    ) -> None:
        for bucket, size in zip(buckets, asked, strict=True):
            if size > 0 and self._coming.get(bucket.key) is done:
                del self._coming[bucket.key]
        done.set_result(None)

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
            replies = await self._evaluate([call(*pending[:4]) for pending in batch])
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

    async def _evaluate(self, calls: list[Call]) -> list[Any]:
        if self._sha is None:
            self._sha = await self._redis.script_load(SCRIPT)
        replies = await self._pipeline(self._sha, calls)
        if any(isinstance(r, self._no_script) for r in replies):  # the server lost its scripts
            self._sha = await self._redis.script_load(SCRIPT)
            again = [i for i, r in enumerate(replies) if isinstance(r, self._no_script)]
            retried = await self._pipeline(self._sha, [calls[i] for i in again])
            for index, reply in zip(again, retried, strict=True):
                replies[index] = reply
        return replies

    async def _pipeline(self, sha: str, calls: list[Call]) -> list[Any]:
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
        if self._renewing:
            await asyncio.gather(*self._renewing, return_exceptions=True)
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        if self._book is not None:
            self._book.expire(0.0, everything=True)
        if self._debts or (self._book is not None and self._book.pending_returns):
            self._flush_now()
        if self._flushing:
            await asyncio.gather(*self._flushing, return_exceptions=True)


def _debt_charged(future: asyncio.Future[list[int]]) -> None:
    """Charges after the fact have no caller to tell: a failure is logged (and lost, as the
    limiter's fail-open checks are when Redis is down)."""
    if not future.cancelled() and future.exception() is not None:
        log.warning("rate_limit_debt_lost", error=str(future.exception()))
