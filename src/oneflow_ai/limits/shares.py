"""Shares: a replica's reserved part of a window's room, spent in the process without Redis.

A replica asks, in the script call a check makes anyway, for a *share* of each window it
checks: a few units charged to the window in Redis like real use (so no other replica can hand
them out), then admitted here, one request after another, without a round trip. A request
makes no call when every one of its windows has a live share that covers its cost; otherwise
the windows a share covers are charged to it, and one script call checks and charges the
others, asking for the shares that are missing (given back to their shares if another window
refuses). While a call asks for a key's share, the checks that lack only shares being asked
for wait for its answer instead of each making a call of its own.

- **Granted only far from the limit.** The script grants a share only while the window's use,
  this request and the share included, stays within `CEILING_PERCENT` of the limit. Above it,
  every replica is back to one exact check per request.
- **Sized from this replica's rate.** A share is `SHARE_PERIODS` times what the key used here
  (admissions and top-ups) in the last `RATE_PERIOD` (asked only once a second request has
  come), capped at `limit // CAP_DIVISOR`: a window under 16 units never gets one.
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
  old, and no position is handed out twice.

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

import time
from collections.abc import Callable, Sequence

from oneflow_ai.limits.window import Bucket, BucketResult

__all__ = [
    "CAP_DIVISOR",
    "CEILING_PERCENT",
    "MAX_TTL",
    "RATE_PERIOD",
    "Grant",
    "Return",
    "ShareBook",
]

#: A share is granted only while the window stays within this percentage of its limit.
CEILING_PERCENT = 50
#: A share holds at most this fraction of the limit.
CAP_DIVISOR = 16
#: Seconds a share lives at most.
MAX_TTL = 1.0
#: Seconds over which this replica's own use of a window is measured.
RATE_PERIOD = 0.25
#: A share holds this many `RATE_PERIOD`s of that use.
SHARE_PERIODS = 2
#: Keys tracked at most; those without a live share are forgotten past it.
_MAX_KEYS = 8192

#: A grant as the script answers it: units, the slice charged, milliseconds it may live.
Grant = tuple[int, int, int]
#: Unused units to give back: the bucket (its cost the units) and the slice they were charged to.
Return = tuple[Bucket, int]


class _Share:
    __slots__ = ("bucket", "left", "reset_at", "slot", "until", "used")

    def __init__(
        self, bucket: Bucket, left: int, used: int, slot: int, until: float, reset_at: float
    ) -> None:
        self.bucket = bucket
        self.left = left  # units not yet admitted
        self.used = used  # the window's use up to the share's next unit
        self.slot = slot  # the slice it was charged to
        self.until = until  # monotonic deadline
        self.reset_at = reset_at  # monotonic time the window's oldest slice leaves


class _Key:
    """One window as this replica sees it: its live share and its recent demand."""

    __slots__ = ("asking", "hits", "last_hits", "last_units", "period_end", "share", "units")

    def __init__(self) -> None:
        self.share: _Share | None = None
        self.asking = False  # a call asking for a share is in flight
        self.period_end = 0.0
        self.hits = 0
        self.units = 0
        self.last_hits = 0
        self.last_units = 0

    def demand(self, now: float, cost: int) -> None:
        if now >= self.period_end:
            recent = now < self.period_end + RATE_PERIOD
            self.last_hits = self.hits if recent else 0
            self.last_units = self.units if recent else 0
            self.hits = self.units = 0
            self.period_end = now + RATE_PERIOD
        self.hits += 1
        self.units += cost


class ShareBook:
    """The shares one store holds, and the demand that sizes the next ones."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._keys: dict[str, _Key] = {}
        self._live: dict[str, _Share] = {}  # the keys holding a share
        self._returns: list[Return] = []

    def take(
        self, buckets: Sequence[Bucket], now: float, *, demand: bool = True
    ) -> list[BucketResult] | None:
        """Admit from the shares when every bucket's live share covers its cost (counting
        the `demand` either way); None when the request must go to Redis."""
        keys = self._keys
        covered = True
        for bucket in buckets:
            key = keys.get(bucket.key)
            if key is None:
                if len(keys) >= _MAX_KEYS:
                    self._forget()
                key = keys[bucket.key] = _Key()
            if demand:
                key.demand(now, bucket.cost)
            share = key.share
            if covered and not _covers(share, bucket, now):
                covered = False
        if not covered:
            return None
        return [_draw(keys[bucket.key].share, bucket, now) for bucket in buckets]

    def take_covered(self, buckets: Sequence[Bucket], now: float) -> list[BucketResult | None]:
        """Charge each bucket its live share covers to that share (None for the others, which
        go to Redis): a replica spends its shares before it asks Redis for the rest."""
        keys = self._keys
        return [
            _draw(key.share, bucket, now)
            if (key := keys.get(bucket.key)) is not None and _covers(key.share, bucket, now)
            else None
            for bucket in buckets
        ]

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
            if (key := keys.get(bucket.key)) is None or not _covers(key.share, bucket, now)
        ]

    def asks(self, buckets: Sequence[Bucket], now: float) -> list[int] | None:
        """The share to ask for each bucket in a call to Redis (None: none at all)."""
        wanted: list[int] | None = None
        keys = self._keys
        for i, bucket in enumerate(buckets):
            key = keys.get(bucket.key)
            if key is None or key.asking:
                continue
            if _covers(key.share, bucket, now):
                continue  # another bucket sent the request to Redis
            if max(key.hits, key.last_hits) < 2:
                continue
            recent = max(key.units, key.last_units, 1)
            size = min(bucket.limit // CAP_DIVISOR, recent * SHARE_PERIODS)
            if size <= 0:
                continue
            if wanted is None:
                wanted = [0] * len(buckets)
            wanted[i] = size
            key.asking = True
        return wanted

    def granted(
        self,
        buckets: Sequence[Bucket],
        asked: Sequence[int],
        results: Sequence[BucketResult],
        grants: Sequence[Grant],
        sent_at: float,
    ) -> None:
        """Keep what the script granted (`sent_at`: when the call left, before the server
        read its clock, so a share expires here no later than in Redis's time)."""
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
            self._lapse(bucket.key, key)
            key.share = self._live[bucket.key] = _Share(
                bucket,
                units,
                result.used,
                slot,
                sent_at + ttl_ms / 1000,
                sent_at + result.reset_ms / 1000,
            )

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
        if not _covers(key.share, bucket, now):
            return False
        _draw(key.share, bucket, now)
        return True

    def soonest(self) -> float | None:
        """When the next share expires (None when none is held)."""
        return min((share.until for share in self._live.values()), default=None)

    def expire(self, now: float, *, everything: bool = False) -> None:
        """Drop the shares expired by `now` (every share, with `everything`), keeping their
        unused units to give back."""
        for name, share in list(self._live.items()):
            if everything or share.until <= now:
                self._lapse(name, self._keys[name])

    @property
    def pending_returns(self) -> bool:
        return bool(self._returns)

    def drain(self) -> list[Return]:
        """The unused units to give back to Redis now."""
        returns, self._returns = self._returns, []
        return returns

    def _lapse(self, name: str, key: _Key) -> None:
        share, key.share = key.share, None
        self._live.pop(name, None)
        if share is not None and share.left > 0:
            self._returns.append((share.bucket._replace(cost=share.left), share.slot))

    def _forget(self) -> None:
        self._keys = {
            name: key for name, key in self._keys.items() if key.share is not None or key.asking
        }

    def __len__(self) -> int:
        return len(self._keys)


def _covers(share: _Share | None, bucket: Bucket, now: float) -> bool:
    """Whether `share` is live and holds `bucket`'s cost, under the same limit (a limit
    changed since the grant is checked in Redis at once)."""
    return (
        share is not None
        and share.until > now
        and share.left >= bucket.cost
        and share.bucket.limit == bucket.limit
    )


def _draw(share: _Share | None, bucket: Bucket, now: float) -> BucketResult:
    """Admit `bucket` from `share` (which covers it): its next units, at their position."""
    assert share is not None
    share.left -= bucket.cost
    share.used += bucket.cost
    return BucketResult(True, share.used, 0, max(0, int((share.reset_at - now) * 1000)))
