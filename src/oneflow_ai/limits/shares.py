"""Shares: a replica's reserved part of a window's room, spent in the process without Redis.

A replica asks, in the script call a check makes anyway, for a *share* of each window it
checks: a few units charged to the window in Redis like real use (so no other replica can hand
them out), then admitted here, one request after another, without a round trip. A request
makes no call when every one of its windows has a live share that covers its cost; otherwise
the windows a share covers are charged to it, and one script call checks and charges the
others, asking for the shares that are missing (given back to their shares if another window
refuses). While a call asks for a key's share, the checks that lack only shares being asked
for wait for its answer instead of each making a call of its own.

- **Asked before it runs out.** The draw that leaves a share below `LOW_WATER_PERCENT` of its
  units, or past that part of its life, asks for the next one off the request path (a call
  charging nothing, which no request waits for unless the share runs out before the answer).
  The next share is kept until the first no longer covers a request (it is then given back)
  and is sized so that the two hold no more than `limit // CAP_DIVISOR` together.
- **Granted only far from the limit.** The script grants a share only while the window's use,
  this request and the share included, stays within `CEILING_PERCENT` of the limit. Above it,
  every replica is back to one exact check per request.
- **Sized from this replica's rate.** A share is `SHARE_PERIODS` times what the key used here
  (admissions and top-ups) in the last `RATE_PERIOD` (asked only once a second request has
  come), capped at `limit // CAP_DIVISOR`: a window under 128 units (`MIN_SHARE` times
  `CAP_DIVISOR`) never gets one, and is checked request by request.
- **Short-lived.** A share is charged to the slice in which it expires and lives at most
  `MAX_TTL` (and never past that slice): every local admission falls in the slice that counts
  it, or in the one before (counted a little longer than its own, never shorter), so the
  sliding-window rule holds exactly as without shares. What is left of a share when it expires
  is given back to that slice (`RedisWindowStore` sends it with the next check, or alone soon
  after).
- **Never wasted here.** A request Redis refuses is admitted from this replica's shares when
  they cover it (checks already in flight when a share is granted may be refused because of
  it: the share is spent on them).
- **Headers.** A share is a run of consecutive units of the window (`used` after the request
  that brought it, plus one for each unit): each admission from it reports its own position,
  so `X-RateLimit-Remaining` is what remained when the share was granted, at most one `MAX_TTL`
  old. Units given back are handed out again, so once a share has given units back a later
  request can report a count an earlier one did: the count is exact only for windows checked
  request by request (those too small for shares, and every window past `CEILING_PERCENT`);
  what is admitted never exceeds the limit either way.

The price is bounded under-admission: a request refused because a window is full could have
fitted in the unused shares other replicas hold at that moment. Those are at most
`limit // CAP_DIVISOR` units per replica and window, only granted while the window was within
`CEILING_PERCENT` of its limit, and they return within `MAX_TTL` (plus `DEBT_DELAY`). A unit
taken from a share for a request another window refused is put back unless the share was drawn
on since; then it stays charged and leaves with its slice (at most the shares outstanding, for
requests refused anyway). A token window driven into debt by another replica's top-ups after
a share was granted still admits from that share (its units were reserved before the debt): at
most the share, for at most `MAX_TTL`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

from oneflow_ai.limits.window import Bucket, BucketResult

__all__ = [
    "CAP_DIVISOR",
    "CEILING_PERCENT",
    "MAX_TTL",
    "MIN_SHARE",
    "RATE_PERIOD",
    "Grant",
    "Return",
    "ShareBook",
]

#: A share is granted only while the window stays within this percentage of its limit.
CEILING_PERCENT = 50
#: A share holds at most this fraction of the limit.
CAP_DIVISOR = 16
#: A window whose cap is fewer units than this gets no share: under 128 units a key is checked
#: request by request (a share would save little there, and its headers stay exactly sequenced).
MIN_SHARE = 8
#: Seconds a share lives at most.
MAX_TTL = 1.0
#: Seconds over which this replica's own use of a window is measured.
RATE_PERIOD = 0.25
#: A share holds this many `RATE_PERIOD`s of that use.
SHARE_PERIODS = 2
#: The next share is asked once a share holds less than this percentage of its units, or has
#: lived this percentage of its life.
LOW_WATER_PERCENT = 50
#: Keys tracked at most; those without a live share are forgotten past it.
_MAX_KEYS = 8192

_new = tuple.__new__  # a BucketResult without a Python-level __new__ per window admitted

#: A grant as the script answers it: units, the slice charged, milliseconds it may live.
Grant = tuple[int, int, int]
#: Unused units to give back: the bucket (its cost the units) and the slice they were charged to.
Return = tuple[Bucket, int]


class _Share:
    __slots__ = ("bucket", "left", "limit", "low", "renew_at", "reset_at", "slot", "until", "used")

    def __init__(
        self,
        bucket: Bucket,
        left: int,
        used: int,
        slot: int,
        sent_at: float,
        ttl_ms: int,
        reset_ms: int,
    ) -> None:
        self.bucket = bucket
        self.limit = bucket.limit
        self.left = left  # units not yet admitted
        self.used = used  # the window's use up to the share's next unit
        self.slot = slot  # the slice it was charged to
        self.until = sent_at + ttl_ms / 1000  # monotonic deadline
        self.reset_at = sent_at + reset_ms / 1000  # when the window's oldest slice leaves
        # the next share is asked once this one is below its low-water mark, or late in its life
        self.low = left * LOW_WATER_PERCENT // 100
        self.renew_at = sent_at + ttl_ms * LOW_WATER_PERCENT / 100_000


class _Key:
    """One window as this replica sees it: its live share (and the next one, asked before the
    first runs out) and its recent demand."""

    __slots__ = (
        "asking",
        "hits",
        "last_hits",
        "last_units",
        "next",
        "period_end",
        "share",
        "units",
    )

    def __init__(self) -> None:
        self.share: _Share | None = None
        self.next: _Share | None = None  # granted while `share` still had room
        self.asking = False  # a call asking for a share is in flight
        self.period_end = 0.0
        self.hits = 0
        self.units = 0
        self.last_hits = 0
        self.last_units = 0

    def roll(self, now: float) -> None:
        """Start a new `RATE_PERIOD` of demand."""
        recent = now < self.period_end + RATE_PERIOD
        self.last_hits = self.hits if recent else 0
        self.last_units = self.units if recent else 0
        self.hits = self.units = 0
        self.period_end = now + RATE_PERIOD

    def size(self, limit: int) -> int:
        """The share this key's recent demand asks for (0: none)."""
        cap = limit // CAP_DIVISOR
        if cap < MIN_SHARE or max(self.hits, self.last_hits) < 2:
            return 0
        return min(cap, max(self.units, self.last_units, 1) * SHARE_PERIODS)


class ShareBook:
    """The shares one store holds, and the demand that sizes the next ones."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._keys: dict[str, _Key] = {}
        self._live: dict[str, _Key] = {}  # the keys holding a share
        self._returns: list[Return] = []
        self._renewals: dict[str, tuple[Bucket, int]] = {}  # shares to ask off the request path

    def take(
        self, buckets: Sequence[Bucket], now: float, *, demand: bool = True
    ) -> list[BucketResult] | None:
        """Admit from the shares when every bucket's live share covers its cost (counting
        the `demand` either way); None when the request must go to Redis."""
        keys = self._keys
        held: list[_Share] = []
        for i, bucket in enumerate(buckets):
            key = keys.get(bucket.key) or self._new_key(bucket.key)
            if demand:
                if now >= key.period_end:
                    key.roll(now)
                key.hits += 1
                key.units += bucket.cost
            share = key.share
            if (
                share is None
                or share.until <= now
                or share.left < bucket.cost
                or share.limit != bucket.limit
            ):
                share = self._promote(bucket, key, now)
                if share is None:
                    if demand:
                        self._count(buckets[i + 1 :], now)
                    return None
            held.append(share)
        results: list[BucketResult] = []
        for share, bucket in zip(held, buckets, strict=True):  # _draw, inlined: the hot path
            cost = bucket.cost
            share.left -= cost
            share.used += cost
            if share.left < share.low or now >= share.renew_at:
                self._renew(share, keys[bucket.key], bucket)
            results.append(
                _new(
                    BucketResult, (True, share.used, 0, max(0, int((share.reset_at - now) * 1000)))
                )
            )
        return results

    def _count(self, buckets: Sequence[Bucket], now: float) -> None:
        """Count the demand of `buckets` (a request going to Redis)."""
        for bucket in buckets:
            key = self._keys.get(bucket.key) or self._new_key(bucket.key)
            if now >= key.period_end:
                key.roll(now)
            key.hits += 1
            key.units += bucket.cost

    def take_covered(self, buckets: Sequence[Bucket], now: float) -> list[BucketResult | None]:
        """Charge each bucket its live share covers to that share (None for the others, which
        go to Redis): a replica spends its shares before it asks Redis for the rest."""
        results: list[BucketResult | None] = []
        for bucket in buckets:
            key = self._keys.get(bucket.key)
            share = self._covering(key, bucket, now)
            results.append(
                None if share is None or key is None else self._draw(share, key, bucket, now)
            )
        return results

    def give_back(self, bucket: Bucket, result: BucketResult) -> None:
        """Undo `take_covered` for a request refused by another window, when nothing was
        taken from that share since (else the unit stays charged, lapsing with its slice)."""
        key = self._keys.get(bucket.key)
        share = key.share if key is not None else None
        if share is not None and share.used == result.used:
            share.used -= bucket.cost
            share.left += bucket.cost

    def uncovered(self, buckets: Sequence[Bucket], now: float) -> list[str]:
        """The keys of the buckets no live share covers."""
        keys = self._keys
        return [
            bucket.key
            for bucket in buckets
            if self._covering(keys.get(bucket.key), bucket, now) is None
        ]

    def asks(self, buckets: Sequence[Bucket], now: float) -> list[int] | None:
        """The share to ask for each bucket in a call to Redis (None: none at all)."""
        wanted: list[int] | None = None
        keys = self._keys
        for i, bucket in enumerate(buckets):
            key = keys.get(bucket.key)
            if key is None or key.asking:
                continue
            if self._covering(key, bucket, now) is not None:
                continue  # another bucket sent the request to Redis
            size = key.size(bucket.limit)
            if size <= 0:
                continue
            if wanted is None:
                wanted = [0] * len(buckets)
            wanted[i] = size
            key.asking = True
        return wanted

    def renewals(self) -> tuple[list[Bucket], list[int]]:
        """The next shares to ask for, off the request path, of the keys whose share fell
        below its low-water mark: each bucket costs nothing (Redis checks and grants only)."""
        renewals, self._renewals = list(self._renewals.values()), {}
        return [bucket for bucket, _ in renewals], [size for _, size in renewals]

    @property
    def renewing(self) -> bool:
        return bool(self._renewals)

    def granted(
        self,
        buckets: Sequence[Bucket],
        asked: Sequence[int],
        results: Sequence[BucketResult],
        grants: Sequence[Grant],
        sent_at: float,
    ) -> None:
        """Keep what the script granted (`sent_at`: when the call left, before the server
        read its clock, so a share expires here no later than in Redis's time); a share
        granted while the key's share still has room is spent after it."""
        keys = self._keys
        for bucket, size, result, (units, slot, ttl_ms) in zip(
            buckets, asked, results, grants, strict=True
        ):
            if size <= 0:
                continue
            key = keys.get(bucket.key)
            if key is None:  # forgotten meanwhile: give it back
                if units > 0:
                    self._returns.append((bucket._replace(cost=units), slot))
                continue
            key.asking = False
            if units <= 0:
                continue
            share = _Share(bucket, units, result.used, slot, sent_at, ttl_ms, result.reset_ms)
            current = key.share
            if current is not None and current.left > 0 and current.until > sent_at:
                self._lapse_next(key)
                key.next = share
            else:
                self._lapse(bucket.key, key)
                key.share = share
            self._live[bucket.key] = key

    def failed(self, buckets: Sequence[Bucket], asked: Sequence[int]) -> None:
        """A call that asked for shares got no answer: let the next one ask again."""
        for bucket, size in zip(buckets, asked, strict=True):
            key = self._keys.get(bucket.key)
            if size > 0 and key is not None:
                key.asking = False

    def top_up(self, bucket: Bucket, now: float) -> bool:
        """Charge usage known after the fact to the bucket's live share, if it covers it."""
        key = self._keys.get(bucket.key)
        if key is None:
            return False
        key.units += bucket.cost  # the use that sizes the next share
        share = _current(key, bucket, now) or self._promote(bucket, key, now)
        if share is None:
            return False
        self._draw(share, key, bucket, now)
        return True

    def soonest(self) -> float | None:
        """When the next share expires (None when none is held)."""
        soonest: float | None = None
        for key in self._live.values():
            for share in (key.share, key.next):
                if share is not None and (soonest is None or share.until < soonest):
                    soonest = share.until
        return soonest

    def expire(self, now: float, *, everything: bool = False) -> None:
        """Drop the shares expired by `now` (every share, with `everything`), keeping their
        unused units to give back."""
        for name, key in list(self._live.items()):
            if key.next is not None and (everything or key.next.until <= now):
                self._lapse_next(key)
            share = key.share
            if share is not None and (everything or share.until <= now):
                key.share, key.next = key.next, None
                self._give_back(share)
            if key.share is None:
                self._live.pop(name, None)

    @property
    def pending_returns(self) -> bool:
        return bool(self._returns)

    def drain(self) -> list[Return]:
        """The unused units to give back to Redis now."""
        returns, self._returns = self._returns, []
        return returns

    def _new_key(self, name: str) -> _Key:
        if len(self._keys) >= _MAX_KEYS:
            self._forget()
        key = self._keys[name] = _Key()
        return key

    def _draw(self, share: _Share, key: _Key, bucket: Bucket, now: float) -> BucketResult:
        """Admit `bucket` from `share` (which covers it): its next units, at their position;
        below the low-water mark, the next share is asked for."""
        share.left -= bucket.cost
        share.used += bucket.cost
        if share.left < share.low or now >= share.renew_at:
            self._renew(share, key, bucket)
        return _new(BucketResult, (True, share.used, 0, max(0, int((share.reset_at - now) * 1000))))

    def _renew(self, share: _Share, key: _Key, bucket: Bucket) -> None:
        """Ask for the next share off the request path, once per share (while no other call
        asks for one): the two together hold no more than one share may."""
        share.low, share.renew_at = -1, math.inf
        if key.next is not None or key.asking or key.share is not share:
            return
        size = min(key.size(bucket.limit), bucket.limit // CAP_DIVISOR - share.left)
        if size > 0:
            key.asking = True
            self._renewals[bucket.key] = (bucket._replace(cost=0), size)

    def _covering(self, key: _Key | None, bucket: Bucket, now: float) -> _Share | None:
        """The key's live share that covers `bucket`, if any."""
        if key is None:
            return None
        return _current(key, bucket, now) or self._promote(bucket, key, now)

    def _promote(self, bucket: Bucket, key: _Key, now: float) -> _Share | None:
        """When the key's share no longer covers `bucket` and the next one does, the next one
        takes over (what is left of the first goes back)."""
        share = key.next
        if share is None or not _covers(share, bucket, now):
            return None
        self._give_back(key.share)
        key.share, key.next = share, None
        return share

    def _lapse(self, name: str, key: _Key) -> None:
        self._lapse_next(key)
        share, key.share = key.share, None
        self._live.pop(name, None)
        self._give_back(share)

    def _lapse_next(self, key: _Key) -> None:
        share, key.next = key.next, None
        self._give_back(share)

    def _give_back(self, share: _Share | None) -> None:
        if share is not None and share.left > 0:
            self._returns.append((share.bucket._replace(cost=share.left), share.slot))

    def _forget(self) -> None:
        self._keys = {
            name: key for name, key in self._keys.items() if key.share is not None or key.asking
        }
        self._renewals = {n: r for n, r in self._renewals.items() if n in self._keys}

    def __len__(self) -> int:
        return len(self._keys)


def _current(key: _Key, bucket: Bucket, now: float) -> _Share | None:
    share = key.share
    return share if share is not None and _covers(share, bucket, now) else None


def _covers(share: _Share, bucket: Bucket, now: float) -> bool:
    """Whether `share` is live and holds `bucket`'s cost, under the same limit (a limit
    changed since the grant is checked in Redis at once)."""
    return share.until > now and share.left >= bucket.cost and share.limit == bucket.limit
