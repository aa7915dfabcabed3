"""Usage analytics at 1M rows: a 30-day group-by-model report on PostgreSQL.

    python bench/usage_query_bench.py [--rows 1000000] [--runs 20] [--keep]

Needs ``BENCH_DATABASE_URL`` or ``TEST_DATABASE_URL`` naming a PostgreSQL server; creates a
database of its own (dropped afterwards unless ``--keep``), migrates it, seeds ``--rows`` usage
records over 30 days with COPY (3 projects, 30 keys, 8 models on 4 providers), builds the
hourly rollups from them, then times :func:`oneflow_ai.billing.analytics.query_usage` (what
``GET /api/v1/usage`` runs) for several reports. As the baseline in the same run it times
the same 30-day group-by-model aggregate straight over the records, without rollups.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

from oneflow_ai.billing.analytics import UsageQuery, query_usage
from oneflow_ai.storage import migrate
from oneflow_ai.storage.database import create_engine
from oneflow_ai.storage.usage_store import (
    UsageFilter,
    aggregate_records,
    bucket_hour,
    rebuild_rollups,
)

MODELS = [
    ("gpt-4o", "openai"),
    ("gpt-4-turbo", "openai"),
    ("gpt-3.5-turbo", "openai"),
    ("claude-3-opus-20240229", "anthropic"),
    ("claude-3-sonnet-20240229", "anthropic"),
    ("claude-3-haiku-20240307", "anthropic"),
    ("stable-diffusion-xl-1024-v1-0", "stability"),
    ("eleven_multilingual_v2", "elevenlabs"),
]
COLUMNS = [
    "request_id", "occurred_at", "project_id", "user_id", "key_id", "model", "provider",
    "status", "error", "stream", "input_tokens", "output_tokens", "images", "characters",
    "micro_credits", "price_table_version", "estimated", "latency_ms", "ttft_ms",
]  # fmt: skip


def server_url() -> str:
    url = os.environ.get("BENCH_DATABASE_URL") or os.environ.get("TEST_DATABASE_URL")
    if not url or not url.startswith("postgresql"):
        sys.exit("set BENCH_DATABASE_URL (or TEST_DATABASE_URL) to a PostgreSQL server")
    return url


def dsn(url: str, database: str | None = None) -> str:
    parsed = make_url(url).set(drivername="postgresql")
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


def rows(count: int, end: datetime, seed: int = 1) -> list[tuple[object, ...]]:
    rng = random.Random(seed)
    span = 30 * 24 * 3600
    keys = [(f"proj_{k % 3}", f"user_{k % 10}", f"key_{k}") for k in range(30)]
    out = []
    for i in range(count):
        project, user, key = keys[rng.randrange(30)]
        model, provider = MODELS[min(int(rng.expovariate(0.6)), 7)]
        status = 200 if rng.random() < 0.97 else rng.choice([429, 502, 504])
        latency = int(rng.lognormvariate(6.3, 0.8))
        out.append(
            (
                f"req_{i}",
                end - timedelta(seconds=rng.random() * span),
                project,
                user,
                key,
                model,
                provider,
                status,
                None if status == 200 else "provider_error",
                rng.random() < 0.5,
                rng.randrange(20, 4000),
                rng.randrange(1, 1500),
                0,
                0,
                rng.randrange(0, 300_000),
                "2026-11-26.1",
                False,
                latency,
                latency // 4,
            )
        )
    return out


async def timed(runs: int, work: Callable[[], Awaitable[object]]) -> dict[str, float]:
    await work()  # warm: plans cached, pages in memory
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        await work()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return {
        "min_ms": round(samples[0], 1),
        "p50_ms": round(statistics.median(samples), 1),
        "p95_ms": round(samples[min(len(samples) - 1, int(0.95 * len(samples)))], 1),
        "max_ms": round(samples[-1], 1),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args()

    server = server_url()
    name = f"oneflow_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(dsn(server))
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    url = make_url(server).set(drivername="postgresql+asyncpg", database=name)
    engine = create_engine(url.render_as_string(hide_password=False), pool_size=2)
    end = datetime.now(UTC)
    try:
        await migrate.upgrade(engine)
        started = time.perf_counter()
        data = rows(args.rows, end)
        generated = time.perf_counter() - started
        connection = await asyncpg.connect(dsn(server, name))
        try:
            started = time.perf_counter()
            await connection.copy_records_to_table("usage_records", records=data, columns=COLUMNS)
            copied = time.perf_counter() - started
        finally:
            await connection.close()
        del data
        started = time.perf_counter()
        async with engine.begin() as c:
            first = bucket_hour(end - timedelta(days=30))
            await rebuild_rollups(c, first, bucket_hour(end) + 1)
        rolled = time.perf_counter() - started
        connection = await asyncpg.connect(dsn(server, name))
        try:
            await connection.execute("ANALYZE")
            counts = {
                table: await connection.fetchval(f"SELECT COUNT(*) FROM {table}")
                for table in ("usage_records", "usage_hourly", "usage_hourly_by_key")
            }
        finally:
            await connection.close()

        start = end - timedelta(days=30)
        reports = {
            "30d by model": UsageQuery(start=start, end=end, group_by=("model",)),
            "30d by model, one project": UsageQuery(
                start=start, end=end, project_id="proj_1", group_by=("model",)
            ),
            "30d by key and day": UsageQuery(start=start, end=end, group_by=("key", "day")),
            "30d by provider and hour": UsageQuery(
                start=start, end=end, group_by=("provider", "hour")
            ),
        }
        results: dict[str, dict[str, float]] = {}
        for label, query in reports.items():
            results[label] = await timed(args.runs, lambda q=query: query_usage(engine, q))

        async def raw() -> object:
            async with engine.connect() as c:
                return await aggregate_records(
                    c, filters=UsageFilter(), dimensions=["model"], start=start, end=end
                )

        results["baseline: 30d by model over the records"] = await timed(
            max(3, args.runs // 4), raw
        )
        check = await query_usage(engine, reports["30d by model"])
        assert check.totals.requests == args.rows, check.totals.requests
    finally:
        await engine.dispose()
        if not args.keep:
            admin = await asyncpg.connect(dsn(server))
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()

    print(f"rows: {counts}")
    print(
        f"seeding: generate {generated:.1f} s, COPY {copied:.1f} s, rollups rebuilt {rolled:.1f} s"
    )
    width = max(len(label) for label in results)
    print(f"{'query':<{width}}  {'min':>8}  {'p50':>8}  {'p95':>8}  {'max':>8}")
    for label, figures in results.items():
        print(
            f"{label:<{width}}  "
            + "  ".join(f"{figures[k]:>6.1f}ms" for k in ("min_ms", "p50_ms", "p95_ms", "max_ms"))
        )
    baseline = results["baseline: 30d by model over the records"]["p50_ms"]
    headline = results["30d by model"]["p50_ms"]
    print(
        f"30d by model: {headline:.1f} ms (p50), {baseline / headline:.0f}x faster than the records"
    )
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "usage_query_bench.json").write_text(
        json.dumps({"rows": counts, "results": results}, indent=2), encoding="utf-8"
    )


if __name__ == "__main__":
    asyncio.run(main())
