"""The ledger as a component, on SQLite and PostgreSQL: reserve, settle, release, budgets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from oneflow_ai.billing import PricingEngine, UnpricedModelError
from oneflow_ai.billing.budgets import BudgetAlert, BudgetMode, BudgetSpec, Metric, Period
from oneflow_ai.billing.ledger import Ledger
from oneflow_ai.catalog import load_catalog
from oneflow_ai.domain.usage import Usage
from oneflow_ai.domain.usage_record import RequestOutcome
from oneflow_ai.errors import (
    InsufficientCreditsError,
    NotFoundError,
    RateLimitedError,
    ServiceUnavailableError,
)
from oneflow_ai.storage.database import create_engine
from tests.support.ledger import (
    FakeClock,
    assert_consistent,
    create_projects,
    make_ledger,
    snapshot,
)

PRICING = PricingEngine()
CREDIT = 1_000_000  # micro-credits


@pytest.fixture
async def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def ledger(engine: AsyncEngine, clock: FakeClock) -> AsyncIterator[Ledger]:
    await create_projects(engine, "p1", "p2")
    running = make_ledger(engine, clock=clock)
    await running.start()
    await running.wait_ready()
    try:
        yield running
    finally:
        await running.close()


def budget(
    metric: Metric, period: Period, limit: int, mode: str = "hard", **scope: str
) -> BudgetSpec:
    return BudgetSpec(
        id="",
        project_id="p1",
        metric=metric,
        period=period,
        limit=limit,
        mode=BudgetMode(mode),
        **scope,  # type: ignore[arg-type]
    )


async def reserve(ledger: Ledger, request_id: str, model: str = "gpt-4o", **options: object):
    max_output = options.pop("max_output", 1000)
    cost = PRICING.max_cost(model, 1000, max_output)  # type: ignore[arg-type]
    provider = PRICING.catalog.get(model).provider
    return await ledger.reserve(
        request_id=request_id,
        project_id=options.pop("project_id", "p1"),  # type: ignore[arg-type]
        max_cost=cost,
        provider=provider,
        **options,  # type: ignore[arg-type]
    )


async def test_postpaid_costs_no_io_before_the_call_and_is_charged_exactly(
    engine: AsyncEngine, ledger: Ledger
) -> None:
    reservation = await ledger.reserve(
        request_id="req-1",
        project_id="p1",
        max_cost=PRICING.max_cost("gpt-4", 1500, 2000),
        provider="openai",
        user_id="u1",
        key_id="k1",
    )
    assert not reservation.limited
    assert (await snapshot(engine, "p1")).reservations == 0  # nothing was written

    settlement = await ledger.settle(
        reservation,
        Usage(input_tokens=1500, output_tokens=500),
        outcome=RequestOutcome(status=200, latency_ms=420, ttft_ms=90, stream=True),
    )
    assert settlement.charged
    assert settlement.cost.micro_credits == 7_500_000  # the seed's example: 7.5 credits

    snap = await assert_consistent(engine, ["p1"])
    assert snap["p1"].mode == "postpaid"
    assert snap["p1"].balance == -7_500_000
    assert snap["p1"].charges == {"req-1": 7_500_000}
    async with engine.connect() as c:
        entry = (
            await c.execute(
                text(
                    "SELECT model, provider, input_tokens, output_tokens, price_table_version, "
                    "estimated, user_id, key_id FROM ledger_entries WHERE request_id = 'req-1'"
                )
            )
        ).one()
        record = (
            await c.execute(
                text(
                    "SELECT status, micro_credits, latency_ms, ttft_ms, stream, model "
                    "FROM usage_records WHERE request_id = 'req-1'"
                )
            )
        ).one()
    assert tuple(entry) == (
        "gpt-4",
        "openai",
        1500,
        500,
        PRICING.price_table_version,
        False,
        "u1",
        "k1",
    )
    assert tuple(record) == (200, 7_500_000, 420, 90, True, "gpt-4")


async def test_prepaid_balance_refuses_what_it_cannot_cover(
    engine: AsyncEngine, ledger: Ledger
) -> None:
    worst = PRICING.max_cost("gpt-4o", 1000, 1000).micro_credits
    assert worst == 1_250_000
    await ledger.top_up("p1", 1 * CREDIT, note="first payment")
    with pytest.raises(InsufficientCreditsError) as refused:
        await reserve(ledger, "r1")
    assert refused.value.status == 402 and refused.value.code == "insufficient_credits"
    assert (await snapshot(engine, "p1")).reservations == 0

    await ledger.top_up("p1", 250_000)  # exactly the worst case now
    held = await reserve(ledger, "r1")
    assert held.limited and held.account_hold == worst
    with pytest.raises(InsufficientCreditsError):
        await reserve(ledger, "r2")
    snap = await assert_consistent(engine, ["p1"])
    assert (snap["p1"].balance, snap["p1"].reserved, snap["p1"].reservations) == (worst, worst, 1)

    settled = await ledger.settle(held, Usage(input_tokens=1000, output_tokens=100))
    assert settled.cost.micro_credits == 250_000 + 100_000
    snap = await assert_consistent(engine, ["p1"])
    assert (snap["p1"].balance, snap["p1"].reserved) == (worst - 350_000, 0)
    assert snap["p1"].reservations == 0


async def test_release_gives_everything_back_and_records_the_failure(
    engine: AsyncEngine, ledger: Ledger
) -> None:
    await ledger.top_up("p1", 5 * CREDIT)
    held = await reserve(ledger, "r-fail")
    await ledger.release(held, RequestOutcome(status=502, error="provider_error", latency_ms=30))
    await ledger.release(held, RequestOutcome(status=502))  # no-op the second time
    snap = await assert_consistent(engine, ["p1"])
    assert (snap["p1"].balance, snap["p1"].reserved, snap["p1"].charges) == (5 * CREDIT, 0, {})
    async with engine.connect() as c:
        rows = (
            await c.execute(
                text("SELECT status, error, micro_credits FROM usage_records WHERE project_id='p1'")
            )
        ).all()
    assert [tuple(r) for r in rows] == [(502, "provider_error", 0)]


async def test_settling_twice_never_charges_twice(
    engine: AsyncEngine, ledger: Ledger, clock: FakeClock
) -> None:
    await ledger.top_up("p1", 10 * CREDIT)
    held = await reserve(ledger, "r-dup")
    usage = Usage(input_tokens=1000, output_tokens=200)
    first, second, third = await asyncio.gather(
        ledger.settle(held, usage), ledger.settle(held, usage), ledger.settle(held, usage)
    )
    assert first is second is third
    assert await ledger.settle(held, usage) is first

    # Another process (a replica, or this one after a restart) settles the same request id.
    other = make_ledger(engine, clock=clock, owner="replica-2")
    await other.start()
    await other.wait_ready()
    try:
        again = await reserve(other, "r-dup")
        repeated = await other.settle(again, usage)
    finally:
        await other.close()
    assert first.charged and not repeated.charged
    snap = await assert_consistent(engine, ["p1"])
    assert snap["p1"].charges == {"r-dup": first.cost.micro_credits}
    assert snap["p1"].balance == 10 * CREDIT - first.cost.micro_credits
    assert snap["p1"].reserved == 0


async def test_a_settle_whose_caller_is_cancelled_still_charges(
    engine: AsyncEngine, ledger: Ledger
) -> None:
    await ledger.top_up("p1", 10 * CREDIT)
    held = await reserve(ledger, "r-cancel")
    task = asyncio.ensure_future(ledger.settle(held, Usage(input_tokens=10, output_tokens=10)))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await ledger.writer.flush()
    await ledger.release(held, RequestOutcome(status=499))  # the pipeline's cleanup: no-op
    snap = await assert_consistent(engine, ["p1"])
    assert list(snap["p1"].charges) == ["r-cancel"]
    assert snap["p1"].reserved == 0 and snap["p1"].usage_records == 1


async def test_a_reserve_whose_caller_is_cancelled_leaves_no_hold(
    engine: AsyncEngine, ledger: Ledger
) -> None:
    await ledger.top_up("p1", 10 * CREDIT)
    written = ledger.writer.commands
    task = asyncio.ensure_future(reserve(ledger, "r-gone"))
    await asyncio.sleep(0)
    await asyncio.sleep(0)  # its write is queued now
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await ledger.writer.flush()  # the hold commits, and its release is queued behind it
    await ledger.writer.flush()
    assert ledger.writer.commands - written == 2  # the hold, then its release
    snap = await assert_consistent(engine, ["p1"])
    assert (snap["p1"].reserved, snap["p1"].reservations) == (0, 0)
    assert snap["p1"].balance == 10 * CREDIT


async def test_unpriced_models_are_refused_and_free_ones_recorded_at_zero(
    engine: AsyncEngine, clock: FakeClock, tmp_path: Path
) -> None:
    override = tmp_path / "catalog.yaml"
    override.write_text(
        """
models:
  house-model:
    provider: openai
    modality: text
    context_window: 8000
    max_output_tokens: 1000
    tokenizer: cl100k_base
    quality: 0.4
    latency: {ttft_ms: 100}
    free: true
  unpriced-model:
    provider: anthropic
    modality: text
    context_window: 8000
    max_output_tokens: 1000
    tokenizer: claude_approx
    quality: 0.4
    latency: {ttft_ms: 100}
""",
        encoding="utf-8",
    )
    pricing = PricingEngine(load_catalog(override))
    await create_projects(engine, "p1")
    ledger = make_ledger(engine, pricing=pricing, clock=clock)
    await ledger.start()
    try:
        with pytest.raises(UnpricedModelError):
            pricing.max_cost("unpriced-model", 10, 10)
        held = await ledger.reserve(
            request_id="r-unpriced",
            project_id="p1",
            max_cost=pricing.max_cost("gpt-4o", 10, 10),
            provider="openai",
        )
        with pytest.raises(UnpricedModelError):  # never billed at zero
            await ledger.settle(held, Usage(input_tokens=10), model="unpriced-model")
        assert held.active
        await ledger.release(held, RequestOutcome(status=400, error="invalid_request"))

        free = await ledger.reserve(
            request_id="r-free",
            project_id="p1",
            max_cost=pricing.max_cost("house-model", 10, 10),
            provider="openai",
        )
        settled = await ledger.settle(free, Usage(input_tokens=10, output_tokens=10))
    finally:
        await ledger.close()
    assert settled.charged and settled.cost.micro_credits == 0
    snap = await assert_consistent(engine, ["p1"])
    assert snap["p1"].charges == {"r-free": 0}
    async with engine.connect() as c:
        version = (
            await c.execute(
                text("SELECT price_table_version FROM ledger_entries WHERE request_id = 'r-free'")
            )
        ).scalar_one()
    assert version == pricing.price_table_version and "+override." in version


async def test_a_hard_credits_budget_refuses_with_402(engine: AsyncEngine, ledger: Ledger) -> None:
    [status] = await ledger.set_budgets("p1", [budget(Metric.CREDITS, Period.MONTH, 2 * CREDIT)])
    first = await reserve(ledger, "b1")  # 1.25 credits held of 2
    assert first.limited and first.account_hold == 0  # postpaid: the budget holds, not a balance
    with pytest.raises(InsufficientCreditsError) as refused:
        await reserve(ledger, "b2")
    assert refused.value.code == "budget_exceeded"
    assert "monthly credits budget of project 'p1' (2 credits)" in refused.value.message
    await ledger.settle(first, Usage(input_tokens=1000, output_tokens=10))  # 0.26 credits
    second = await reserve(ledger, "b2")  # 0.26 used + 1.25 held <= 2
    await ledger.release(second, RequestOutcome(status=500))
    snap = await assert_consistent(engine, ["p1"], hard_limits={status.spec.id: 2 * CREDIT})
    assert snap["p1"].counters[status.spec.id] == (260_000, 0)
    assert snap["p1"].balance == -260_000  # postpaid: charged in full


async def test_a_hard_budget_set_while_a_request_is_under_way_counts_what_it_admits(
    engine: AsyncEngine, ledger: Ledger
) -> None:
    """A request admitted before the budget existed is charged in full but not counted toward
    it: the budget's usage plus holds never pass its limit, and it still refuses what would."""
    under_way = await reserve(ledger, "before")  # postpaid, no budget: holds nothing
    statuses = await ledger.set_budgets(
        "p1",
        [
            budget(Metric.CREDITS, Period.DAY, CREDIT // 10, "soft"),
            budget(Metric.CREDITS, Period.MONTH, 2 * CREDIT),
        ],
    )
    soft, hard = sorted(statuses, key=lambda status: status.spec.hard)
    await ledger.settle(under_way, Usage(input_tokens=1000, output_tokens=10))  # 0.26 credits
    admitted = await reserve(ledger, "after")
    await ledger.settle(admitted, Usage(input_tokens=1000, output_tokens=10))
    snap = await assert_consistent(engine, ["p1"], hard_limits={hard.spec.id: 2 * CREDIT})
    assert snap["p1"].balance == -520_000  # both charged in full
    assert snap["p1"].counters[hard.spec.id] == (260_000, 0)  # only what it admitted
    assert snap["p1"].counters[soft.spec.id] == (520_000, 0)  # a soft budget counts all spend


async def test_token_and_request_quotas_refuse_with_429_until_the_period_resets(
    engine: AsyncEngine, ledger: Ledger, clock: FakeClock
) -> None:
    statuses = await ledger.set_budgets(
        "p1",
        [
            budget(Metric.TOKENS, Period.DAY, 3000),
            budget(Metric.REQUESTS, Period.MONTH, 3),
        ],
    )
    first = await reserve(ledger, "t1")  # holds 2000 of 3000 tokens
    with pytest.raises(RateLimitedError) as refused:
        await reserve(ledger, "t2")
    assert refused.value.status == 429 and refused.value.code == "quota_exceeded"
    assert refused.value.retry_after == 12 * 3600  # the clock says 12:00 UTC
    assert "daily tokens budget" in refused.value.message
    await ledger.settle(first, Usage(input_tokens=1000, output_tokens=1000))

    clock.advance(days=1)  # a new day: the token quota starts again, the monthly one does not
    await ledger.settle(await reserve(ledger, "t2"), Usage(input_tokens=5, output_tokens=5))
    await ledger.settle(await reserve(ledger, "t3"), Usage(input_tokens=5, output_tokens=5))
    with pytest.raises(RateLimitedError) as monthly:
        await reserve(ledger, "t4")  # the 4th request this month
    assert "monthly requests budget" in monthly.value.message
    limits = {s.spec.id: s.spec.limit for s in statuses}
    await assert_consistent(engine, ["p1"], hard_limits=limits)
    current = {s.spec.metric: s for s in await ledger.admin.budgets("p1")}
    assert (current[Metric.TOKENS].used, current[Metric.REQUESTS].used) == (20, 3)


async def test_budgets_apply_to_their_user_key_or_provider_only(
    engine: AsyncEngine, ledger: Ledger
) -> None:
    await ledger.set_budgets(
        "p1",
        [
            budget(Metric.REQUESTS, Period.DAY, 0, user_id="u1"),
            budget(Metric.REQUESTS, Period.DAY, 0, key_id="k9"),
            budget(Metric.REQUESTS, Period.DAY, 0, provider="anthropic"),
        ],
    )
    with pytest.raises(RateLimitedError):
        await reserve(ledger, "s1", user_id="u1")
    with pytest.raises(RateLimitedError):
        await reserve(ledger, "s2", user_id="u2", key_id="k9")
    with pytest.raises(RateLimitedError):
        await reserve(ledger, "s3", model="claude-3-haiku", user_id="u2")
    allowed = [
        await reserve(ledger, "s4", user_id="u2", key_id="k1"),
        await reserve(ledger, "s5", project_id="p2", user_id="u1", key_id="k9"),
    ]
    assert [r.limited for r in allowed] == [False, False]


async def test_a_soft_budget_alerts_once_and_never_refuses(
    engine: AsyncEngine, clock: FakeClock
) -> None:
    await create_projects(engine, "p1")
    alerts: list[BudgetAlert] = []
    ledger = Ledger(
        engine,
        PRICING,
        make_ledger(engine).config,
        clock=clock,
        on_budget_alert=alerts.append,
    )
    await ledger.start()
    try:
        await ledger.set_budgets("p1", [budget(Metric.CREDITS, Period.MONTH, CREDIT, "soft")])
        for i in range(4):  # 0.35 credits each: crosses 1 credit on the 3rd
            held = await reserve(ledger, f"soft-{i}")
            assert not held.limited  # soft budgets never hold anything
            await ledger.settle(held, Usage(input_tokens=1000, output_tokens=100))
    finally:
        await ledger.close()
    assert [(a.used, a.budget.mode) for a in alerts] == [(1_050_000, BudgetMode.SOFT)]


async def test_would_exceed_counts_output_tokens_against_the_reservation(
    ledger: Ledger,
) -> None:
    postpaid = await reserve(ledger, "w0", max_output=100)
    assert postpaid.output_token_limit == 100 and not postpaid.would_exceed(10_000)
    await ledger.top_up("p1", 10 * CREDIT)
    held = await reserve(ledger, "w1", max_output=100)
    assert not held.would_exceed(100)
    assert held.would_exceed(101)


async def test_ledger_entries_are_append_only(engine: AsyncEngine, ledger: Ledger) -> None:
    await ledger.top_up("p1", CREDIT)
    for statement in ("UPDATE ledger_entries SET amount = 1", "DELETE FROM ledger_entries"):
        with pytest.raises(Exception, match="append-only"):
            async with engine.begin() as c:
                await c.execute(text(statement))
    assert (await snapshot(engine, "p1")).entries_sum == CREDIT


async def test_changing_a_limit_keeps_the_period_usage(engine: AsyncEngine, ledger: Ledger) -> None:
    [first] = await ledger.set_budgets("p1", [budget(Metric.REQUESTS, Period.DAY, 5)])
    await ledger.settle(await reserve(ledger, "c1"), Usage(input_tokens=1))
    [changed] = await ledger.set_budgets("p1", [budget(Metric.REQUESTS, Period.DAY, 1)])
    assert changed.spec.id == first.spec.id and changed.used == 1 and changed.remaining == 0
    with pytest.raises(RateLimitedError):
        await reserve(ledger, "c2")
    assert await ledger.set_budgets("p1", []) == []
    assert not (await reserve(ledger, "c3")).limited


async def test_adjustments_and_modes(engine: AsyncEngine, ledger: Ledger) -> None:
    await ledger.top_up("p1", 2 * CREDIT, prepaid=False)
    assert not (await reserve(ledger, "m1")).limited  # a top-up may leave a project postpaid
    await ledger.set_mode("p1", "prepaid")
    assert (await reserve(ledger, "m2")).limited
    account = await ledger.adjust("p1", -500_000, note="refund of a failed batch")
    assert (account.balance, account.reserved, account.mode) == (1_500_000, 1_250_000, "prepaid")
    with pytest.raises(NotFoundError):
        await ledger.top_up("no-such-project", CREDIT)
    await assert_consistent(engine, ["p1"])
    kinds = [e.kind for e in await ledger.admin.entries("p1")]
    assert kinds == ["adjustment", "topup"]


async def test_without_its_database_a_limited_reservation_is_503(clock: FakeClock) -> None:
    engine = create_engine("postgresql+asyncpg://nobody@127.0.0.1:1/none", pool_size=1)
    ledger = make_ledger(engine, clock=clock, ready_timeout=0.3, shutdown_timeout=0.5)
    await ledger.start()
    try:
        with pytest.raises(ServiceUnavailableError):
            await reserve(ledger, "x")
    finally:
        await ledger.close()
        await engine.dispose()


async def test_a_free_worst_case_holds_nothing_unless_a_quota_counts_it(
    engine: AsyncEngine, ledger: Ledger
) -> None:
    from decimal import Decimal

    from oneflow_ai.billing.cost import fraction_of

    free = fraction_of(PRICING.max_cost("gpt-4o", 1000, 1000), Decimal(0))  # a cache hit's
    await ledger.set_mode("p1", "prepaid")  # no balance at all
    await ledger.set_budgets("p1", [budget(Metric.CREDITS, Period.DAY, 1)])
    held = await ledger.reserve(request_id="f1", project_id="p1", max_cost=free, provider="openai")
    assert not held.limited and held.account_hold == 0
    assert (await snapshot(engine, "p1")).reservations == 0  # no round trip to the database
    settled = await ledger.settle(held, Usage(input_tokens=1000, output_tokens=10), cost=free)
    assert settled.cost.micro_credits == 0
    await ledger.set_budgets("p1", [budget(Metric.REQUESTS, Period.MONTH, 1)])
    counted = await ledger.reserve(
        request_id="f2", project_id="p1", max_cost=free, provider="openai"
    )
    assert counted.limited  # a requests quota counts a free request too
    await ledger.settle(counted, Usage(input_tokens=1000, output_tokens=10), cost=free)
    with pytest.raises(RateLimitedError):
        await ledger.reserve(request_id="f3", project_id="p1", max_cost=free, provider="openai")
    await assert_consistent(engine, ["p1"])
