"""Shares: windows far from their limits admitted in the process, exactly, without Redis."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.asyncio import Redis

from oneflow_ai.limits import Bucket, RedisWindowStore
from oneflow_ai.limits.shares import CAP_DIVISOR, MAX_TTL, MIN_SHARE, ShareBook
from oneflow_ai.limits.window import BucketResult
from tests.limits.conftest import count_script_calls
from tests.support.clock import FakeClock

MINUTE = 60_000


# ---- the book alone -----------------------------------------------------------------------


def test_a_share_is_asked_once_a_key_has_a_rate_and_capped() -> None:
    book = ShareBook()
    bucket = Bucket("k", 160, MINUTE, 1)
    assert book.take([bucket], 0.0) is None
    assert book.asks([bucket], 0.0) is None  # one request is no rate yet
    for _ in range(40):
        assert book.take([bucket], 0.1) is None
    assert book.asks([bucket], 0.1) == [160 // CAP_DIVISOR]  # 41 units, capped at 10
    assert book.asks([bucket], 0.1) is None  # one call at a time asks for a key


def test_a_share_admits_each_unit_at_its_own_position_until_it_runs_out() -> None:
    book = ShareBook()
    bucket = Bucket("k", 160, MINUTE, 1)
    for _ in range(3):
        book.take([bucket], 0.0)
    asked = book.asks([bucket], 0.0)
    assert asked == [6]  # twice the last period's use
    asked = [3]
    # Redis admitted the request at use 7 and charged 3 more units for the share.
    book.granted([bucket], asked, [BucketResult(True, 7, 0, 30_000)], [(3, 5, 800)], 0.0)
    used = [book.take([bucket], 0.5) for _ in range(4)]
    assert [r[0].used if r else None for r in used] == [8, 9, 10, None]
    assert used[0] == [BucketResult(True, 8, 0, 29_500)]
    assert book.drain() == []  # spent: nothing to give back


def test_every_window_must_be_covered_and_the_shares_stay_whole_otherwise() -> None:
    book = ShareBook()
    rpm, tpm = Bucket("r", 160, MINUTE, 1), Bucket("t", 1600, MINUTE, 40, False)
    for _ in range(2):
        book.take([rpm, tpm], 0.0)
    asked = book.asks([rpm, tpm], 0.0)
    assert asked == [4, 100]
    results = [BucketResult(True, 2, 0, 1000), BucketResult(True, 80, 0, 1000)]
    book.granted([rpm, tpm], asked, results, [(2, 0, 900), (0, 0, 0)], 0.0)  # no token share
    assert book.take([rpm, tpm], 0.1) is None
    assert book.asks([rpm, tpm], 0.1) == [0, 100]  # capped  # the request share still covers
    assert book.take([rpm], 0.1) == [BucketResult(True, 3, 0, 900)]


def test_a_share_expires_and_its_unused_units_go_back_to_their_slice() -> None:
    book = ShareBook()
    bucket = Bucket("k", 160, MINUTE, 1)
    for _ in range(9):
        book.take([bucket], 0.0)
    asked = book.asks([bucket], 0.0)
    assert asked == [10]  # capped
    book.granted([bucket], asked, [BucketResult(True, 9, 0, 1000)], [(9, 42, 400)], 10.0)
    assert book.soonest() == pytest.approx(10.4)
    assert book.take([bucket], 10.1) is not None
    book.expire(10.39)
    assert not book.pending_returns
    assert book.take([bucket], 10.4) is None  # expired, though not yet given back
    book.expire(10.4)
    assert book.drain() == [(bucket._replace(cost=8), 42)]
    assert book.soonest() is None


def test_top_ups_come_out_of_a_share_that_covers_them() -> None:
    book = ShareBook()
    tokens = Bucket("t", 16_000, MINUTE, 100, False)
    for _ in range(2):
        book.take([tokens], 0.0)
    asked = book.asks([tokens], 0.0)
    assert asked == [400]
    book.granted([tokens], asked, [BucketResult(True, 200, 0, 1000)], [(200, 0, 900)], 0.0)
    assert book.top_up(tokens._replace(cost=150), 0.1)
    assert not book.top_up(tokens._replace(cost=51), 0.1)  # 50 left
    assert not book.top_up(tokens._replace(cost=10), 0.95)  # expired


def test_covered_windows_are_charged_to_their_shares_and_put_back_on_a_refusal() -> None:
    book = ShareBook()
    rpm, rph = Bucket("m", 160, MINUTE, 1), Bucket("h", 1600, 60 * MINUTE, 1)
    for _ in range(2):
        book.take([rpm, rph], 0.0)
    asked = book.asks([rpm], 0.0)
    assert asked == [4]
    book.granted([rpm], asked, [BucketResult(True, 2, 0, 1000)], [(4, 0, 900)], 0.0)
    first, second = book.take_covered([rpm, rph], 0.1), book.take_covered([rpm, rph], 0.1)
    assert first == [BucketResult(True, 3, 0, 900), None]
    assert second[0] is not None and second[0].used == 4
    assert first[0] is not None
    book.give_back(rpm, first[0])  # drawn on since: stays charged
    book.give_back(rpm, second[0])  # the last one taken: put back
    assert [r[0].used if r else None for r in (book.take([rpm], 0.2) for _ in range(3))] == [
        4,
        5,
        6,
    ]
    assert book.take([rpm], 0.2) is None


# ---- against Redis ----------------------------------------------------------------------


async def _used(redis: Redis, key: str) -> int:
    return sum(int(v) for v in (await redis.hgetall(key)).values())


@pytest.mark.redis
async def test_far_from_the_limit_most_checks_take_no_round_trip(
    redis_client: Redis, redis_prefix: str
) -> None:
    store = RedisWindowStore(redis_client)
    rounds = count_script_calls(store)
    bucket = Bucket(f"{redis_prefix}far", 16_000, MINUTE, 1)
    results = [(await store.hit([bucket]))[0] for _ in range(300)]
    assert all(r.allowed for r in results)
    assert [r.used for r in results] == list(range(1, 301))  # each position exactly once
    assert sum(rounds) < 30, rounds
    await store.close()  # gives the unused units back
    assert await _used(redis_client, bucket.key) == 300


@pytest.mark.redis
async def test_near_the_limit_every_check_goes_to_redis(
    redis_client: Redis, redis_prefix: str
) -> None:
    store = RedisWindowStore(redis_client)
    rounds = count_script_calls(store)
    bucket = Bucket(f"{redis_prefix}near", 128, MINUTE, 1)  # shares of 8 up to 64 used
    results = [(await store.hit([bucket]))[0] for _ in range(160)]
    assert [r.used for r in results if r.allowed] == list(range(1, 129))
    assert sum(r.allowed for r in results) == 128
    assert 128 - 64 + 32 <= sum(rounds) < 160  # past half the limit, one call per check
    await store.close()
    assert await _used(redis_client, bucket.key) == 128


@pytest.mark.redis
async def test_a_window_too_small_for_a_share_is_checked_request_by_request(
    redis_client: Redis, redis_prefix: str
) -> None:
    """Under `MIN_SHARE` units of cap, two replicas taking turns each ask Redis every time, so
    every admission reports a count of its own (nothing given back is handed out again)."""
    stores = [RedisWindowStore(redis_client) for _ in range(2)]
    calls = [count_script_calls(store) for store in stores]
    bucket = Bucket(f"{redis_prefix}small", MIN_SHARE * CAP_DIVISOR - 1, MINUTE, 1)
    used = [(await stores[i % 2].hit([bucket]))[0].used for i in range(100)]
    assert used == list(range(1, 101))
    assert sum(sum(c) for c in calls) == 100
    for store in stores:
        await store.close()
    assert await _used(redis_client, bucket.key) == 100


@pytest.mark.redis
async def test_replicas_with_shares_admit_exactly_the_limit(
    redis_client: Redis, redis_prefix: str
) -> None:
    """Two replicas (stores) taking turns, each with its shares: exactly the limit in all."""
    stores = [RedisWindowStore(redis_client) for _ in range(2)]
    bucket = Bucket(f"{redis_prefix}turns", 320, MINUTE, 1)
    admitted = [0, 0]
    for i in range(800):
        admitted[i % 2] += (await stores[i % 2].hit([bucket]))[0].allowed
    assert sum(admitted) == 320
    for store in stores:
        await store.close()
    assert await _used(redis_client, bucket.key) == 320


@pytest.mark.redis
async def test_a_burst_in_flight_spends_the_share_it_brought(
    redis_client: Redis, redis_prefix: str
) -> None:
    """Checks sent together all reach Redis before a share comes back: those refused because
    of it are admitted from it, so nothing is lost."""
    store = RedisWindowStore(redis_client)
    bucket = Bucket(f"{redis_prefix}burst", 128, MINUTE, 1)
    results = await asyncio.gather(*(store.hit([bucket]) for _ in range(300)))
    admitted = [r[0] for r in results if r[0].allowed]
    assert sorted(r.used for r in admitted) == list(range(1, 129))
    await store.close()
    assert await _used(redis_client, bucket.key) == 128


@pytest.mark.redis
async def test_expired_shares_are_given_back(redis_client: Redis, redis_prefix: str) -> None:
    clock = FakeClock()
    store = RedisWindowStore(redis_client, clock=clock.monotonic)
    rounds = count_script_calls(store)
    bucket = Bucket(f"{redis_prefix}back", 16_000, MINUTE, 1)
    for _ in range(5):
        await store.hit([bucket])
    held = await _used(redis_client, bucket.key)
    assert held > 5  # a share is charged in Redis like real use
    clock.advance(MAX_TTL)
    store._expire()
    await store.hit([Bucket(f"{redis_prefix}other", 10, MINUTE, 1)])  # carries the return
    assert await _used(redis_client, bucket.key) == 5
    assert rounds[-1] == 1
    await store.close()


@pytest.mark.redis
async def test_top_ups_come_out_of_the_share(redis_client: Redis, redis_prefix: str) -> None:
    store = RedisWindowStore(redis_client, debt_delay=60)
    rounds = count_script_calls(store)
    tokens = Bucket(f"{redis_prefix}tpm", 160_000, MINUTE, 100, False)
    for _ in range(3):
        await store.hit([tokens])
    calls = sum(rounds)
    held = await _used(redis_client, tokens.key)
    store.charge_later([tokens._replace(cost=50)])
    assert not store._debts  # nothing owed to Redis: the share paid for it
    await store.close()
    assert sum(rounds) == calls + 1  # the unused rest given back
    assert await _used(redis_client, tokens.key) == 350 <= held


def _holding(
    units: int, *, requests: int = 5, ttl_ms: int = 900, sent_at: float = 0.0
) -> tuple[ShareBook, Bucket]:
    """A book with a share of `units` granted after `requests` requests (its positions follow
    theirs), asked as twice their count."""
    book = ShareBook()
    bucket = Bucket("k", 1600, MINUTE, 1)
    for _ in range(requests):
        book.take([bucket], 0.0)
    asked = book.asks([bucket], 0.0)
    assert asked == [2 * requests]
    grant = (units, 7, ttl_ms)
    book.granted([bucket], asked, [BucketResult(True, requests, 0, 30_000)], [grant], sent_at)
    return book, bucket


def test_a_changed_limit_is_checked_in_redis_at_once() -> None:
    book, bucket = _holding(50, requests=50)
    assert book.take([bucket], 0.1) is not None
    lowered = bucket._replace(limit=2)
    assert book.take([lowered], 0.1) is None
    assert not book.top_up(lowered, 0.1)
    assert book.asks([lowered], 0.1) is None  # two units are too few for a share


@pytest.mark.redis
async def test_checks_waiting_for_a_share_being_asked_make_no_call_of_their_own(
    redis_client: Redis, redis_prefix: str
) -> None:
    store = RedisWindowStore(redis_client)
    rounds = count_script_calls(store)
    bucket = Bucket(f"{redis_prefix}herd", 16_000, MINUTE, 1)
    for _ in range(2):
        await store.hit([bucket])
    calls = sum(rounds)
    results = await asyncio.gather(*(store.hit([bucket]) for _ in range(10)))
    assert all(r[0].allowed for r in results)
    assert sorted(r[0].used for r in results) == list(range(3, 13))
    assert sum(rounds) - calls <= 1  # one asks (if the first share ran out); the rest wait
    await store.close()
    assert await _used(redis_client, bucket.key) == 12


@pytest.mark.redis
async def test_a_window_refused_in_redis_gives_the_others_their_units_back(
    redis_client: Redis, redis_prefix: str
) -> None:
    store = RedisWindowStore(redis_client)
    roomy = Bucket(f"{redis_prefix}roomy", 16_000, MINUTE, 1)
    tight = Bucket(f"{redis_prefix}tight", 3, MINUTE, 1)  # too small for shares
    for _ in range(10):  # a share of 14 at the 7th: 8 to 21
        assert all(r.allowed for r in await store.hit([roomy]))
    refused = [await store.hit([roomy, tight]) for _ in range(5)]
    assert [r[1].allowed for r in refused] == [True, True, True, False, False]
    assert [r[0].used for r in refused[:3]] == [11, 12, 13]  # from the share
    await store.close()
    assert await _used(redis_client, roomy.key) == 13  # the refusals cost it nothing
    assert await _used(redis_client, tight.key) == 3


# ---- the next share, asked before the first runs out -------------------------------------


def test_below_its_low_water_mark_a_share_asks_for_the_next_one_spent_after_it() -> None:
    book, bucket = _holding(10)
    for _ in range(5):
        assert book.take([bucket], 0.1) is not None
    assert not book.renewing  # half the share is left
    assert book.take([bucket], 0.1) is not None
    assert book.renewing  # below half: the next one is asked, once
    renewals = book.renewals()
    assert renewals == ([bucket._replace(cost=0)], [22])  # 11 units used in the period
    assert book.asks([bucket], 0.1) is None and not book.renewing  # one call at a time
    # Redis saw 20 used (another replica's too) and charged the next share's 22 units.
    answer = [BucketResult(True, 20, 0, 29_000)]
    book.granted([bucket], renewals[1], answer, [(22, 8, 900)], 0.1)
    used = [book.take([bucket], 0.2) for _ in range(8)]
    assert [r[0].used if r else None for r in used] == [12, 13, 14, 15, 21, 22, 23, 24]
    book.expire(0.0, everything=True)
    assert book.drain() == [(bucket._replace(cost=18), 8)]  # the first was spent


def test_late_in_its_life_a_share_asks_for_the_next_one_and_gives_back_the_rest() -> None:
    book, bucket = _holding(10, ttl_ms=800, sent_at=10.0)
    assert book.take([bucket], 10.3) is not None and not book.renewing
    assert book.take([bucket], 10.4) is not None and book.renewing  # half its life
    renewals = book.renewals()
    assert renewals[1] == [4]  # two units in the last period, with room for the 8 left
    answer = [BucketResult(True, 15, 0, 29_000)]
    book.granted([bucket], renewals[1], answer, [(4, 8, 900)], 10.4)
    book.expire(10.8)  # the first expires: the next one takes over
    assert book.drain() == [(bucket._replace(cost=8), 7)]
    assert [r.used for r in book.take([bucket], 10.9) or []] == [16]
    assert book.soonest() == pytest.approx(11.3)


def test_a_next_share_not_granted_lets_the_checks_ask_again() -> None:
    book, bucket = _holding(2)
    book.take([bucket], 0.1)
    book.take([bucket], 0.1)
    _, sizes = book.renewals()
    book.failed([bucket], sizes)  # no answer
    assert book.take([bucket], 0.1) is None
    assert book.asks([bucket], 0.1) is not None  # the check that goes to Redis asks


@pytest.mark.redis
async def test_under_steady_traffic_no_check_goes_to_redis_after_the_first_share(
    redis_client: Redis, redis_prefix: str
) -> None:
    store = RedisWindowStore(redis_client)
    checks: list[bool] = []  # per script call from a check: whether it asked for shares only
    hit = store._hit

    async def counted(buckets: Any, *, check: bool, **kwargs: Any) -> Any:
        checks.append("asked" in kwargs)
        return await hit(buckets, check=check, **kwargs)

    store._hit = counted  # type: ignore[method-assign]
    bucket = Bucket(f"{redis_prefix}steady", 16_000, MINUTE, 1)
    results = []
    for _ in range(300):
        results += await store.hit([bucket])
        await asyncio.sleep(0.001)  # the event loop turns between requests
    assert [r.used for r in results] == list(range(1, 301))  # each position exactly once
    assert checks[:2] == [False, False]  # the first request, and the one that asks
    assert all(checks[2:]), checks  # then only calls asking for the next shares, off the path
    await store.close()
    assert await _used(redis_client, bucket.key) == 300


@pytest.mark.redis
async def test_a_top_up_that_leaves_a_share_low_asks_for_the_next_one(
    redis_client: Redis, redis_prefix: str
) -> None:
    store = RedisWindowStore(redis_client)
    tokens = Bucket(f"{redis_prefix}tpm-low", 160_000, MINUTE, 100, False)
    for _ in range(3):  # the second brings a share of 400: 100 spent by the third
        await store.hit([tokens])
    assert not store._renewing
    store.charge_later([tokens._replace(cost=250)])
    assert store._renewing  # 50 left: the next share is asked at once
    await asyncio.gather(*store._renewing)
    assert (await store.hit([tokens]))[0].allowed
    await store.close()
    assert await _used(redis_client, tokens.key) == 650
