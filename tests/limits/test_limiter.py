"""`RateLimiter`: the scopes of a request (caller, project, provider), headers, exemptions."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from oneflow_ai.auth.principal import MASTER, Principal, PrincipalKind, Role
from oneflow_ai.domain.limits import LimitPolicy
from oneflow_ai.errors import RateLimitedError, ServiceUnavailableError
from oneflow_ai.limits import Bucket, BucketResult, RateLimiter, WindowStore, build_rate_limiter
from oneflow_ai.settings import Settings

DEFAULTS = LimitPolicy(requests_per_minute=60, requests_per_hour=1000)


def key(
    key_id: str = "key_a",
    *,
    project: str = "proj_a",
    limits: LimitPolicy | None = None,
    project_limits: LimitPolicy | None = None,
    unlimited: bool = False,
) -> Principal:
    return Principal(
        kind=PrincipalKind.API_KEY,
        project_id=project,
        role=Role.MEMBER,
        key_id=key_id,
        limits=limits,
        project_limits=project_limits,
        unlimited=unlimited,
    )


def limiter(store: WindowStore, prefix: str, **kw: object) -> RateLimiter:
    return RateLimiter(store, defaults=DEFAULTS, key_prefix=prefix, **kw)  # type: ignore[arg-type]


async def admitted(rl: RateLimiter, principal: Principal, n: int, **kw: object) -> int:
    count = 0
    for _ in range(n):
        try:
            await rl.admit(principal, **kw)  # type: ignore[arg-type]
            count += 1
        except RateLimitedError:
            pass
    return count


async def test_seed_defaults_sixty_a_minute(store: WindowStore, redis_prefix: str) -> None:
    rl = limiter(store, redis_prefix)
    first = await rl.admit(key())
    assert first.headers == {
        "X-RateLimit-Limit": "60",
        "X-RateLimit-Remaining": "59",
        "X-RateLimit-Reset": "60",
    }
    assert await admitted(rl, key(), 59) == 59
    with pytest.raises(RateLimitedError) as caught:
        await rl.admit(key())
    error = caught.value
    assert error.status == 429
    assert 0 < (error.retry_after or 0) <= 60
    assert error.headers["X-RateLimit-Limit"] == "60"
    assert error.headers["X-RateLimit-Remaining"] == "0"
    assert 1 <= int(error.headers["Retry-After"]) <= 60
    assert 1 <= int(error.headers["X-RateLimit-Reset"]) <= 61
    # Another key has its own windows.
    await rl.admit(key("key_b"))


async def test_per_key_limits_override_the_defaults(store: WindowStore, redis_prefix: str) -> None:
    rl = limiter(store, redis_prefix)
    tight = key(limits=LimitPolicy(requests_per_minute=3))
    assert await admitted(rl, tight, 10) == 3
    hourly = key("key_h", limits=LimitPolicy(requests_per_hour=2))  # rpm stays the default 60
    decision = await rl.admit(hourly)
    assert decision.limit == 2 and decision.remaining == 1  # the tighter window sets the headers
    assert await admitted(rl, hourly, 5) == 1


async def test_changed_limits_apply_to_the_next_request(
    store: WindowStore, redis_prefix: str
) -> None:
    rl = limiter(store, redis_prefix)
    assert not rl.counts_tokens(key())
    assert await admitted(rl, key(limits=LimitPolicy(requests_per_minute=2)), 3) == 2
    raised = key(limits=LimitPolicy(requests_per_minute=4, tokens_per_minute=100))
    assert rl.counts_tokens(raised)  # the same key, its new limits
    assert await admitted(rl, raised, 3) == 2
    rl.defaults = LimitPolicy(requests_per_minute=1)
    assert await admitted(rl, key("key_new"), 2) == 1
    rl.providers = {"openai": LimitPolicy(tokens_per_minute=10)}
    assert rl.counts_tokens(key("key_other"), provider="openai")
    assert not rl.counts_tokens(key("key_other"), provider="anthropic")


async def test_unlimited_principals_are_exempt(store: WindowStore, redis_prefix: str) -> None:
    rl = limiter(store, redis_prefix)
    assert await admitted(rl, MASTER, 200) == 200
    assert await admitted(rl, key(unlimited=True), 200) == 200
    assert (await rl.admit(MASTER)).headers == {}


async def test_project_limits_span_its_keys(store: WindowStore, redis_prefix: str) -> None:
    rl = limiter(store, redis_prefix)
    shared = LimitPolicy(requests_per_minute=5)
    a = key("key_a", project_limits=shared)
    b = key("key_b", project_limits=shared)
    assert await admitted(rl, a, 3) == 3
    assert await admitted(rl, b, 3) == 2
    assert await admitted(rl, key("key_c", project="proj_other"), 3) == 3


async def test_provider_limits(store: WindowStore, redis_prefix: str) -> None:
    rl = limiter(store, redis_prefix, providers={"openai": LimitPolicy(requests_per_minute=4)})
    assert await admitted(rl, key("k1"), 3, provider="openai") == 3
    assert await admitted(rl, key("k2"), 3, provider="openai") == 1
    assert await admitted(rl, key("k3"), 3, provider="anthropic") == 3
    with pytest.raises(RateLimitedError, match="Provider limit"):
        await rl.admit_provider("openai")
    await rl.admit_provider("anthropic")  # no limit configured


async def test_tokens_per_minute(store: WindowStore, redis_prefix: str) -> None:
    rl = limiter(store, redis_prefix)
    principal = key(limits=LimitPolicy(tokens_per_minute=1000))
    await rl.admit(principal, tokens=600)
    with pytest.raises(RateLimitedError):
        await rl.admit(principal, tokens=500)
    await rl.admit(principal, tokens=300)
    # The answer used more than estimated: the window goes into debt and refuses.
    await rl.record_tokens(principal, tokens=500)
    with pytest.raises(RateLimitedError):
        await rl.admit(principal, tokens=0)


class BrokenStore:
    async def hit(self, buckets: Sequence[Bucket], *, check: bool = True) -> list[BucketResult]:
        raise ConnectionError("redis is down")

    async def close(self) -> None:
        pass


async def test_store_failure_fails_open_or_closed_as_configured() -> None:
    opened = RateLimiter(BrokenStore(), defaults=DEFAULTS, fail_open=True)
    assert (await opened.admit(key())).allowed
    closed = RateLimiter(BrokenStore(), defaults=DEFAULTS, fail_open=False)
    with pytest.raises(ServiceUnavailableError):
        await closed.admit(key())


async def test_named_buckets(store: WindowStore, redis_prefix: str) -> None:
    rl = limiter(store, redis_prefix)
    for _ in range(3):
        await rl.admit_bucket("login:x", per_minute=3)
    with pytest.raises(RateLimitedError, match="Too many attempts"):
        await rl.admit_bucket("login:x", per_minute=3)
    assert (await rl.admit_bucket("login:y", per_minute=0)).allowed  # 0: no limit


def test_settings_build_the_limiter() -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        rate_limit_per_minute=10,
        rate_limit_per_hour=0,
        rate_limit_tokens_per_minute=5000,
        rate_limit_providers={"openai": {"requests_per_minute": 100}},
    )
    rl = build_rate_limiter(settings, None)
    assert rl.defaults == LimitPolicy(requests_per_minute=10, tokens_per_minute=5000)
    assert rl.providers == {"openai": LimitPolicy(requests_per_minute=100)}
