"""Usage analytics against a brute-force count of the same records, on both databases."""

from __future__ import annotations

import csv
import io
import math
import random
from bisect import bisect_left
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from oneflow_ai.billing import PricingEngine
from oneflow_ai.billing.analytics import (
    CSV_METRICS,
    UsageQuery,
    UsageReport,
    percentile_from_histogram,
    query_usage,
)
from oneflow_ai.domain.usage import Usage
from oneflow_ai.domain.usage_record import RequestOutcome, RequestRoute, UsageRecord
from oneflow_ai.storage.tables import LATENCY_BUCKETS_MS
from oneflow_ai.storage.usage_store import bucket_hour, insert_usage, rebuild_rollups
from tests.support.ledger import FakeClock, create_projects, make_ledger

START = datetime(2026, 11, 24, tzinfo=UTC)
MODELS = {"gpt-4o": "openai", "claude-3-haiku-20240307": "anthropic", "dall-e-3": "openai"}


def make_records(count: int = 900, seed: int = 7) -> list[UsageRecord]:
    rng = random.Random(seed)
    records = []
    for i in range(count):
        model = rng.choice([*MODELS, None])
        status = rng.choices([200, 200, 200, 402, 429, 502], k=1)[0]
        latency = None if rng.random() < 0.05 else int(rng.lognormvariate(6, 1.2))
        records.append(
            UsageRecord(
                request_id=f"req-{i}",
                occurred_at=START + timedelta(seconds=rng.randrange(3 * 24 * 3600)),
                status=status,
                project_id=rng.choice(["p1", "p2", None]),
                user_id=rng.choice(["u1", "u2", None]),
                key_id=rng.choice(["k1", "k2", "k3"]),
                model=model,
                provider=MODELS.get(model or ""),
                error=None if status == 200 else "provider_error",
                input_tokens=rng.randrange(5000),
                output_tokens=rng.randrange(2000),
                images=rng.randrange(2),
                characters=rng.randrange(100),
                micro_credits=rng.randrange(5_000_000),
                latency_ms=latency,
                ttft_ms=None if latency is None or rng.random() < 0.3 else latency // 3,
                cached_input_tokens=rng.choice([0, rng.randrange(1000)]),
                reasoning_tokens=rng.choice([0, rng.randrange(500)]),
                cache_hit=rng.random() < 0.1,
                route=RequestRoute(model_requested=model, fallbacks=rng.choice([0, 0, 0, 1, 2])),
            )
        )
    return records


@pytest.fixture
async def seeded(engine: AsyncEngine) -> list[UsageRecord]:
    records = make_records()
    for chunk in range(0, len(records), 137):  # several batches: rollups merge across them
        async with engine.begin() as connection:
            await connection.run_sync(insert_usage, records[chunk : chunk + 137])
    return records


ATTR = {"project": "project_id", "user": "user_id", "key": "key_id"}


def expected(records: list[UsageRecord], query: UsageQuery) -> dict[tuple, dict]:
    groups: dict[tuple, dict] = defaultdict(
        lambda: {
            "n": 0,
            "errors": 0,
            "in": 0,
            "out": 0,
            "img": 0,
            "chars": 0,
            "mc": 0,
            "lat": [],
            "ttft": [],
            "cached": 0,
            "reasoning": 0,
            "fallbacks": 0,
            "hits": 0,
        }
    )
    for r in records:
        if not (query.start <= r.occurred_at < query.end):
            continue
        if any(
            value is not None and getattr(r, attr) != value
            for attr, value in (
                ("project_id", query.project_id),
                ("user_id", query.user_id),
                ("key_id", query.key_id),
                ("model", query.model),
                ("provider", query.provider),
            )
        ):
            continue
        key = []
        for dim in query.group_by:
            if dim == "hour":
                key.append(
                    r.occurred_at.replace(minute=0, second=0).isoformat().replace("+00:00", "Z")
                )
            elif dim == "day":
                key.append(r.occurred_at.date().isoformat())
            else:
                key.append(getattr(r, ATTR.get(dim, dim)))
        g = groups[tuple(key)]
        g["n"] += 1
        g["errors"] += r.status >= 400
        g["in"] += r.input_tokens
        g["out"] += r.output_tokens
        g["img"] += r.images
        g["chars"] += r.characters
        g["mc"] += r.micro_credits
        if r.latency_ms is not None:
            g["lat"].append(r.latency_ms)
        if r.ttft_ms is not None:
            g["ttft"].append(r.ttft_ms)
        g["cached"] += r.cached_input_tokens
        g["reasoning"] += r.reasoning_tokens
        g["fallbacks"] += r.route is not None and r.route.fallbacks > 0
        g["hits"] += r.cache_hit
    return dict(groups)


def bucket_bounds(latency: int) -> tuple[int, int]:
    index = bisect_left(LATENCY_BUCKETS_MS, latency)
    lower = 0 if index == 0 else LATENCY_BUCKETS_MS[index - 1]
    upper = LATENCY_BUCKETS_MS[index] if index < len(LATENCY_BUCKETS_MS) else lower
    return lower, upper


def check(report: UsageReport, records: list[UsageRecord]) -> None:
    want = expected(records, report.query)
    got = {tuple(g.key[d] for d in report.query.group_by): g.totals for g in report.groups}
    assert set(got) == set(want)
    for key, w in want.items():
        t = got[key]
        assert (t.requests, t.errors, t["input_tokens"], t["output_tokens"]) == (
            w["n"],
            w["errors"],
            w["in"],
            w["out"],
        )
        assert (t["images"], t["characters"], t.micro_credits) == (w["img"], w["chars"], w["mc"])
        assert (t["cached_input_tokens"], t["reasoning_tokens"]) == (w["cached"], w["reasoning"])
        assert (t["fallback_requests"], t["cache_hits"]) == (w["fallbacks"], w["hits"])
        if w["lat"]:
            assert t.latency_avg_ms == pytest.approx(sum(w["lat"]) / len(w["lat"]))
            ordered = sorted(w["lat"])
            for q in (0.5, 0.95, 0.99):
                true = ordered[math.ceil(q * len(ordered)) - 1]
                lower, upper = bucket_bounds(true)
                estimate = t.latency_percentile(q)
                assert estimate is not None and lower <= estimate <= upper, (q, true, estimate)
        else:
            assert t.latency_avg_ms is None and t.latency_percentile(0.5) is None
        if w["ttft"]:
            assert t.ttft_avg_ms == pytest.approx(sum(w["ttft"]) / len(w["ttft"]))
    assert report.totals.requests == sum(w["n"] for w in want.values())
    assert report.totals.micro_credits == sum(w["mc"] for w in want.values())


def at(text_: str) -> datetime:
    return datetime.fromisoformat(text_.replace("Z", "+00:00"))


QUERIES = [
    dict(start=at("2026-11-24T00:00:00Z"), end=at("2026-11-27T00:00:00Z"), group_by=("model",)),
    dict(
        start=at("2026-11-24T05:17:33Z"),
        end=at("2026-11-26T13:42:10Z"),
        group_by=("project", "day"),
    ),
    dict(start=at("2026-11-25T10:05:00Z"), end=at("2026-11-25T10:50:00Z"), group_by=("key",)),
    dict(
        start=at("2026-11-25T10:05:00Z"),
        end=at("2026-11-25T11:50:00Z"),
        group_by=("model", "hour"),
    ),
    dict(
        start=at("2026-11-24T00:00:00Z"),
        end=at("2026-11-27T00:00:00Z"),
        project_id="p1",
        user_id="u1",
        group_by=("provider", "hour"),
    ),
    dict(start=at("2026-11-24T12:30:00Z"), end=at("2026-11-26T00:00:00Z"), key_id="k2"),
    dict(
        start=at("2026-11-23T00:00:00Z"),
        end=at("2026-11-28T00:00:00Z"),
        group_by=("user", "key", "model", "provider", "project"),
    ),
    # Only time groups, from a partial hour without records: no empty group for it.
    dict(start=at("2026-11-23T05:17:33Z"), end=at("2026-11-26T13:42:10Z"), group_by=("day",)),
    dict(start=at("2026-11-24T00:00:00Z"), end=at("2026-11-27T00:00:00Z"), model="no-such"),
]


@pytest.mark.parametrize("spec", QUERIES, ids=[str(i) for i in range(len(QUERIES))])
async def test_reports_match_a_brute_force_count(
    engine: AsyncEngine, seeded: list[UsageRecord], spec: dict
) -> None:
    check(await query_usage(engine, UsageQuery(**spec)), seeded)


async def test_incremental_rollups_equal_rollups_rebuilt_from_the_records(
    engine: AsyncEngine, seeded: list[UsageRecord]
) -> None:
    async def rollups() -> list[tuple]:
        async with engine.connect() as c:
            rows = []
            for table in ("usage_hourly", "usage_hourly_by_key"):
                result = await c.execute(text(f"SELECT * FROM {table}"))
                rows.append(sorted(tuple(row) for row in result.all()))
            return rows

    incremental = await rollups()
    assert sum(len(r) for r in incremental) > 0
    async with engine.begin() as c:
        await rebuild_rollups(c, bucket_hour(START) - 24, bucket_hour(START) + 24 * 4)
    assert await rollups() == incremental


async def test_csv_has_a_header_and_one_row_per_group(
    engine: AsyncEngine, seeded: list[UsageRecord]
) -> None:
    report = await query_usage(engine, UsageQuery(**QUERIES[1]))  # type: ignore[arg-type]
    rows = list(csv.reader(io.StringIO(report.to_csv())))
    assert rows[0] == ["project", "day", *CSV_METRICS]
    assert len(rows) == 1 + len(report.groups)
    first = report.groups[0]
    assert rows[1][:2] == [first.key["project"] or "", first.key["day"]]
    assert rows[1][2] == str(first.totals.requests)
    assert rows[1][8] == str(first.as_dict()["usd"])
    totals_only = await query_usage(engine, UsageQuery(**QUERIES[5]))  # type: ignore[arg-type]
    assert len(list(csv.reader(io.StringIO(totals_only.to_csv())))) == 2


async def test_what_the_ledger_settles_is_what_analytics_reports(engine: AsyncEngine) -> None:
    pricing = PricingEngine()
    clock = FakeClock(datetime(2026, 11, 26, 9, 30, tzinfo=UTC))
    await create_projects(engine, "p1")
    ledger = make_ledger(engine, clock=clock)
    await ledger.start()
    try:
        charged = 0
        for i in range(12):
            held = await ledger.reserve(
                request_id=f"a{i}",
                project_id="p1",
                max_cost=pricing.max_cost("gpt-4o", 100, 100),
                provider="openai",
                key_id="k1",
            )
            if i % 4 == 3:
                await ledger.release(held, RequestOutcome(status=502, error="provider_error"))
                continue
            settled = await ledger.settle(
                held,
                Usage(input_tokens=100, output_tokens=i),
                outcome=RequestOutcome(latency_ms=50 * i),
            )
            charged += settled.cost.micro_credits
        report = await query_usage(
            engine,
            UsageQuery(
                start=at("2026-11-26T09:00:00Z"),
                end=at("2026-11-26T10:00:00Z"),
                project_id="p1",
                group_by=("model",),
            ),
        )
    finally:
        await ledger.close()
    [group] = report.groups
    assert group.key == {"model": "gpt-4o"}
    assert (group.totals.requests, group.totals.errors) == (12, 3)
    assert group.totals.micro_credits == charged
    assert group.as_dict()["credits"] == f"{charged / 1_000_000:.6f}"


async def test_an_empty_report_renders_zero_money_plainly(engine: AsyncEngine) -> None:
    report = await query_usage(engine, UsageQuery(**QUERIES[-1]))  # type: ignore[arg-type]
    assert report.groups == ()
    totals = report.as_dict()["totals"]
    assert (totals["usd"], totals["credits"], totals["requests"]) == ("0.00000000", "0.000000", 0)


def test_percentiles_interpolate_inside_their_bucket() -> None:
    histogram = [0] * (len(LATENCY_BUCKETS_MS) + 1)
    histogram[6] = 10  # 10 requests in (75, 100] ms
    assert percentile_from_histogram(histogram, 0.5) == pytest.approx(87.5)
    histogram[-1] = 10  # and 10 slower than the last bound
    assert percentile_from_histogram(histogram, 0.99) == LATENCY_BUCKETS_MS[-1]
    assert percentile_from_histogram([0] * len(histogram), 0.5) is None


def test_queries_are_validated() -> None:
    with pytest.raises(ValueError, match="empty"):
        UsageQuery(start=at("2026-11-26T00:00:00Z"), end=at("2026-11-26T00:00:00Z"))
    with pytest.raises(ValueError, match="cannot group by 'color'"):
        UsageQuery(start=START, end=START + timedelta(days=1), group_by=("color",))
    with pytest.raises(ValueError, match="not both"):
        UsageQuery(start=START, end=START + timedelta(days=1), group_by=("hour", "day"))
