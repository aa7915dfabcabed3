"""Properties of the backoff, Retry-After parsing and the retry budget."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oneflow_ai.resilience import RetryBudget, RetryPolicy, parse_retry_after
from tests.support.clock import ManualClock

pytestmark = pytest.mark.property

policies = st.builds(
    RetryPolicy,
    max_retries=st.integers(0, 12),
    base_delay=st.floats(0, 5, allow_nan=False),
    max_delay=st.floats(0, 60, allow_nan=False),
    max_retry_after=st.floats(0, 120, allow_nan=False),
)
unit = st.floats(0, 1, exclude_max=True, allow_nan=False)


@given(policies, st.integers(0, 200), unit)
def test_backoff_is_within_zero_and_the_capped_exponential(
    policy: RetryPolicy, retry: int, r: float
) -> None:
    delay = policy.delay(retry, rng=lambda: r)
    if retry >= policy.max_retries:
        assert delay is None
        return
    assert delay is not None
    cap = min(policy.max_delay, policy.base_delay * 2.0**retry) if retry < 64 else policy.max_delay
    assert 0 <= delay <= policy.max_delay
    assert delay <= cap
    assert delay == pytest.approx(r * cap)


@given(policies, st.integers(0, 11))
def test_full_jitter_spans_the_whole_window(policy: RetryPolicy, retry: int) -> None:
    """The extremes of the random source reach both ends of [0, cap): full, not partial, jitter."""
    if retry >= policy.max_retries:
        return
    cap = policy.backoff_cap(retry)
    assert policy.delay(retry, rng=lambda: 0.0) == 0.0
    high = policy.delay(retry, rng=lambda: 1.0 - 2**-53)
    assert high is not None and cap - high <= cap * 1e-15 + 1e-300


def test_full_jitter_is_uniform_over_the_window() -> None:
    policy = RetryPolicy(max_retries=5, base_delay=1.0, max_delay=100.0)
    rng = random.Random(7)
    delays = [policy.delay(3, rng=rng.random) for _ in range(20_000)]
    assert all(d is not None and 0 <= d < 8.0 for d in delays)
    values = [d for d in delays if d is not None]
    mean = sum(values) / len(values)
    assert 3.9 < mean < 4.1  # uniform on [0, 8): mean 4
    quarters = [sum(1 for d in values if q * 2 <= d < (q + 1) * 2) for q in range(4)]
    assert all(4_700 < n < 5_300 for n in quarters)


@given(policies, st.integers(0, 11), st.floats(0, 500, allow_nan=False), unit)
def test_retry_after_is_honoured_exactly_up_to_the_limit(
    policy: RetryPolicy, retry: int, hint: float, r: float
) -> None:
    delay = policy.delay(retry, hint, rng=lambda: r)
    if retry >= policy.max_retries or hint > policy.max_retry_after:
        assert delay is None
    else:
        assert delay == hint


@given(st.floats(0, 10**6, allow_nan=False, allow_infinity=False))
def test_retry_after_seconds_and_milliseconds(seconds: float) -> None:
    assert parse_retry_after({"retry-after": repr(seconds)}) == pytest.approx(seconds)
    millis = seconds * 1000
    parsed = parse_retry_after({"retry-after-ms": repr(millis), "retry-after": "999"})
    assert parsed == pytest.approx(seconds)


@given(st.integers(0, 10**6))
def test_retry_after_as_an_http_date(ahead: int) -> None:
    now = 1_800_000_000.0
    when = datetime.fromtimestamp(now + ahead, tz=UTC)
    assert parse_retry_after({"retry-after": format_datetime(when, usegmt=True)}, now=now) == ahead


def test_retry_after_edge_cases() -> None:
    assert parse_retry_after({}) is None
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({"retry-after": "-5"}) == 0.0
    assert parse_retry_after({"retry-after": "nan"}) is None
    assert parse_retry_after({"retry-after-ms": "x", "retry-after": "2"}) == 2.0
    past = "Wed, 21 Oct 2015 07:28:00 GMT"
    assert parse_retry_after({"retry-after": past}, now=1_800_000_000.0) == 0.0


operations = st.lists(
    st.one_of(
        st.tuples(st.just("request"), st.just(0.0)),
        st.tuples(st.just("retry"), st.just(0.0)),
        st.tuples(st.just("wait"), st.floats(0, 5, allow_nan=False)),
    ),
    max_size=300,
)


@given(
    ratio=st.floats(0, 1, allow_nan=False),
    min_per_second=st.floats(0, 5, allow_nan=False),
    capacity=st.floats(1, 50, allow_nan=False),
    initial=st.floats(0, 50, allow_nan=False),
    ops=operations,
)
def test_the_budget_is_never_exceeded(
    ratio: float,
    min_per_second: float,
    capacity: float,
    initial: float,
    ops: list[tuple[str, float]],
) -> None:
    clock = ManualClock()
    budget = RetryBudget(
        ratio=ratio,
        min_per_second=min_per_second,
        capacity=capacity,
        initial=initial,
        clock=clock,
    )
    requests = granted = 0
    elapsed = 0.0
    for op, value in ops:
        if op == "request":
            budget.deposit()
            requests += 1
        elif op == "retry":
            granted += budget.try_withdraw()
        else:
            clock.advance(value)
            elapsed += value
        bound = min(initial, capacity) + ratio * requests + min_per_second * elapsed
        assert granted <= bound + 1e-9
        assert 0 <= budget.tokens <= capacity


def test_the_budget_holds_retries_to_a_fraction_of_traffic() -> None:
    clock = ManualClock()
    budget = RetryBudget(ratio=0.2, min_per_second=0.0, capacity=10, initial=0, clock=clock)
    granted = 0
    for _ in range(1000):  # an outage: every request fails and asks for 3 retries
        budget.deposit()
        granted += sum(budget.try_withdraw() for _ in range(3))
    assert granted == 200
