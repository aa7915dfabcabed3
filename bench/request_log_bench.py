"""The request log at 1M rows: `GET /api/v1/requests` pages on SQLite and on PostgreSQL.

    python -m bench.request_log_bench [--rows 1000000] [--runs 20] [--backend sqlite|postgresql]

For each database (PostgreSQL needs ``BENCH_DATABASE_URL`` or ``TEST_DATABASE_URL``; a database
of its own is created and dropped), migrates a fresh schema, seeds ``--rows`` usage records over
30 days (20 projects of 100 keys each, 8 models with a skewed mix, 2 % errors, a fifth routed
by strategy, 1 % by 50 signed-in users), starts a real gateway process on it (uvicorn, the app
as `oneflow serve` runs it), and times whole HTTP answers of the request log: the newest page,
pages deep in the log (by cursor), and filtered pages. The same pages' queries alone
(`storage/request_log.py`) are timed in the same run as the baseline, so the HTTP and JSON
share is visible.

Rows are seeded oldest first, as gateways append them. The target is 200 ms
per page. Filters that match few rows over a long range are the expensive case (the index
walks until it has a page); errors and users' requests have partial indexes of their own
(migration 0006) for them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine
from tests.support.ports import start_on_port_0

from oneflow_ai.storage import migrate
from oneflow_ai.storage.database import create_engine
from oneflow_ai.storage.request_log import Cursor, RequestFilter, list_requests

MASTER = "sk-bench-request-log-0123456789abcdef"
PAGE = 50
MODELS = [
    ("gpt-4o", "openai"),
    ("gpt-4o-mini", "openai"),
    ("gpt-3.5-turbo", "openai"),
    ("claude-3-5-sonnet-20241022", "anthropic"),
    ("claude-3-haiku-20240307", "anthropic"),
    ("dall-e-3", "openai"),
    ("stable-diffusion-xl-1024-v1-0", "stability"),
    ("eleven_multilingual_v2", "elevenlabs"),
]
COLUMNS = [
    "request_id", "occurred_at", "project_id", "user_id", "key_id", "model", "provider",
    "status", "error", "stream", "input_tokens", "output_tokens", "images", "characters",
    "micro_credits", "price_table_version", "estimated", "latency_ms", "ttft_ms",
    "model_requested", "strategy", "fallbacks",
]  # fmt: skip


def records(count: int, end: datetime, seed: int = 1) -> Iterator[tuple[object, ...]]:
    """Oldest first, as a gateway writes them (ids grow with time, a little jitter aside)."""
    rng = random.Random(seed)
    step = 30 * 24 * 3600 / count
    start = end - timedelta(days=30)
    for i in range(count):
        key = rng.randrange(2000)
        model, provider = MODELS[min(int(rng.expovariate(0.7)), 7)]
        status = 200 if rng.random() < 0.98 else rng.choice([429, 502, 504])
        routed = rng.random() < 0.2
        latency = int(rng.lognormvariate(6.3, 0.8))
        signed_in = rng.random() < 0.01
        yield (
            f"req_{i:08d}",
            start + timedelta(seconds=(i + rng.random()) * step),
            f"proj_{key // 100:02d}",
            f"user_{key % 50:02d}" if signed_in else None,
            f"key_{key:04d}",
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
            "cost_optimized" if routed else model,
            "cost_optimized" if routed else None,
            1 if routed and rng.random() < 0.05 else 0,
        )


# ---- databases ---------------------------------------------------------------------------


async def seed_sqlite(folder: Path, count: int, end: datetime) -> str:
    path = folder / "bench.db"
    url = f"sqlite+aiosqlite:///{path}"
    engine = create_engine(url, pool_size=1)
    try:
        await migrate.upgrade(engine)
    finally:
        await engine.dispose()
    connection = sqlite3.connect(path)
    placeholders = ", ".join("?" for _ in COLUMNS)
    statement = f"INSERT INTO usage_records ({', '.join(COLUMNS)}) VALUES ({placeholders})"
    with connection:
        connection.executemany(
            statement,
            (
                (*row[:1], row[1].strftime("%Y-%m-%d %H:%M:%S.%f"), *row[2:])  # type: ignore[attr-defined]
                for row in records(count, end)
            ),
        )
    connection.execute("ANALYZE")
    connection.close()
    return url


def _dsn(url: str, database: str | None = None) -> str:
    parsed = make_url(url).set(drivername="postgresql")
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


async def seed_postgres(server: str, name: str, count: int, end: datetime) -> str:
    admin = await asyncpg.connect(_dsn(server))
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    url = make_url(server).set(drivername="postgresql+asyncpg", database=name)
    rendered = url.render_as_string(hide_password=False)
    engine = create_engine(rendered, pool_size=1)
    try:
        await migrate.upgrade(engine)
    finally:
        await engine.dispose()
    connection = await asyncpg.connect(_dsn(server, name))
    try:
        await connection.copy_records_to_table(
            "usage_records", records=list(records(count, end)), columns=COLUMNS
        )
        await connection.execute("ANALYZE usage_records")
    finally:
        await connection.close()
    return rendered


async def drop_postgres(server: str, name: str) -> None:
    admin = await asyncpg.connect(_dsn(server))
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


# ---- the gateway -------------------------------------------------------------------------


@contextlib.contextmanager
def gateway(database_url: str) -> Iterator[str]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "ONEFLOW_MASTER_KEY": MASTER,
        "FAKE_PROVIDERS": "off",
        "LOG_REQUESTS": "false",
        "LOG_LEVEL": "WARNING",
        "ENABLE_METRICS": "false",
    }
    # `oneflow serve` binds port 0 itself and reports the port (no race for a port).
    oneflow = str(Path(sys.executable).parent / "oneflow")
    process, port = start_on_port_0([oneflow, "serve", "--no-migrate"], env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the gateway did not start")
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=20)


# ---- timing ------------------------------------------------------------------------------


def summary(samples: list[float]) -> dict[str, float]:
    samples = sorted(samples)
    return {
        "p50_ms": round(statistics.median(samples), 1),
        "p95_ms": round(samples[min(len(samples) - 1, int(0.95 * len(samples)))], 1),
        "max_ms": round(samples[-1], 1),
    }


async def timed(runs: int, work: Callable[[], Awaitable[object]]) -> dict[str, float]:
    await work()  # warm: plans cached, pages in memory
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        await work()
        samples.append((time.perf_counter() - started) * 1000)
    return summary(samples)


async def cursor_at(engine: AsyncEngine, depth: int, **where: str) -> Cursor:
    """The cursor after the first ``depth`` rows (newest first) matching ``where``."""
    conditions = " AND ".join(f"{name} = :{name}" for name in where) or "1 = 1"
    async with engine.connect() as connection:
        row = (
            await connection.execute(
                text(
                    f"SELECT occurred_at, id FROM usage_records WHERE {conditions} "
                    "ORDER BY occurred_at DESC, id DESC LIMIT 1 OFFSET :depth"
                ),
                {**where, "depth": depth - 1},
            )
        ).one()
    at = row[0] if isinstance(row[0], datetime) else datetime.fromisoformat(row[0])
    return Cursor(at.replace(tzinfo=UTC) if at.tzinfo is None else at, int(row[1]))


async def scenarios(engine: AsyncEngine, end: datetime, rows: int) -> dict[str, dict[str, object]]:
    """label -> its query parameters and cursor."""
    week_ago = end - timedelta(days=7)
    deep = await cursor_at(engine, rows // 2)
    project_deep = await cursor_at(engine, rows // 25, project_id="proj_07")
    day = {"from": week_ago.isoformat(), "to": (week_ago + timedelta(days=1)).isoformat()}
    return {
        "newest page": {"params": {}},
        f"{rows // 100:,} rows deep": {"cursor": await cursor_at(engine, rows // 100)},
        f"{rows // 2:,} rows deep (half way)": {"cursor": deep},
        "one project, newest": {"params": {"project": "proj_07"}},
        f"one project, {rows // 25:,} rows deep": {
            "params": {"project": "proj_07"},
            "cursor": project_deep,
        },
        "one key, newest": {"params": {"key": "key_0707"}},
        "errors only (2 %)": {"params": {"status": "error"}},
        "one model (about 9 %)": {"params": {"model": "claude-3-haiku-20240307"}},
        "one project, one day a week ago": {"params": {"project": "proj_07", **day}},
        "rare: strategy routed with errors, one project": {
            "params": {"project": "proj_07", "strategy": "cost_optimized", "status": "error"}
        },
        "one error status (502), one project": {"params": {"project": "proj_07", "status": "502"}},
        "one signed-in user (0.02 %)": {"params": {"user": "user_07"}},
        "no match in the last 24 hours": {
            "params": {"model": "no-such-model", "from": (end - timedelta(days=1)).isoformat()}
        },
    }


def _filter(params: dict[str, str]) -> RequestFilter:
    status: str | int | None = params.get("status")
    if isinstance(status, str) and status.isdigit():
        status = int(status)
    return RequestFilter(
        start=datetime.fromisoformat(params["from"]) if "from" in params else None,
        end=datetime.fromisoformat(params["to"]) if "to" in params else None,
        project_id=params.get("project"),
        user_id=params.get("user"),
        key_id=params.get("key"),
        model=params.get("model"),
        strategy=params.get("strategy"),
        status=status,
    )


async def run_backend(
    label: str, url: str, end: datetime, rows: int, runs: int
) -> dict[str, object]:
    engine = create_engine(url, pool_size=2)
    results: dict[str, object] = {}
    try:
        cases = await scenarios(engine, end, rows)
        with gateway(url) as base:
            async with httpx.AsyncClient(
                base_url=base, headers={"Authorization": f"Bearer {MASTER}"}, timeout=60
            ) as client:
                for name, case in cases.items():
                    params: dict[str, str] = dict(case.get("params", {}))  # type: ignore[arg-type]
                    cursor = case.get("cursor")
                    query = {**params, "limit": str(PAGE)}
                    if isinstance(cursor, Cursor):
                        query["cursor"] = cursor.encode()

                    async def http(q: dict[str, str] = query) -> object:
                        response = await client.get("/api/v1/requests", params=q)
                        assert response.status_code == 200, response.text
                        return response

                    async def alone(
                        f: RequestFilter = _filter(params),
                        c: Cursor | None = cursor if isinstance(cursor, Cursor) else None,
                    ) -> object:
                        async with engine.connect() as connection:
                            return await list_requests(connection, f, limit=PAGE, cursor=c)

                    rows = len((await http()).json()["data"])  # type: ignore[attr-defined]
                    results[name] = {
                        "rows": rows,
                        "http": await timed(runs, http),
                        "query alone": await timed(runs, alone),
                    }
    finally:
        await engine.dispose()
    return {"backend": label, "results": results}


def print_table(report: dict[str, object]) -> None:
    print(f"\n{report['backend']}: GET /api/v1/requests, {PAGE} rows a page (ms)")
    print(f"{'page':<48} {'rows':>5} {'http p50':>9} {'p95':>7} {'max':>7} {'query p50':>10}")
    results = report["results"]
    assert isinstance(results, dict)
    for name, value in results.items():
        http, alone = value["http"], value["query alone"]
        print(
            f"{name:<48} {value['rows']:>5} {http['p50_ms']:>9} {http['p95_ms']:>7} "
            f"{http['max_ms']:>7} {alone['p50_ms']:>10}"
        )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    end = datetime.now(UTC)
    reports = []
    if args.backend in ("sqlite", "both"):
        with tempfile.TemporaryDirectory(prefix="oneflow-bench-") as folder:
            started = time.perf_counter()
            url = await seed_sqlite(Path(folder), args.rows, end)
            print(f"sqlite: {args.rows:,} rows seeded in {time.perf_counter() - started:.0f} s")
            reports.append(await run_backend("SQLite", url, end, args.rows, args.runs))
    if args.backend in ("postgresql", "both"):
        server = os.environ.get("BENCH_DATABASE_URL") or os.environ.get("TEST_DATABASE_URL")
        if not server or not server.startswith("postgresql"):
            sys.exit("set BENCH_DATABASE_URL (or TEST_DATABASE_URL) to a PostgreSQL server")
        name = f"oneflow_bench_{uuid.uuid4().hex[:10]}"
        try:
            started = time.perf_counter()
            url = await seed_postgres(server, name, args.rows, end)
            print(f"postgresql: {args.rows:,} rows seeded in {time.perf_counter() - started:.0f} s")
            reports.append(await run_backend("PostgreSQL", url, end, args.rows, args.runs))
        finally:
            await drop_postgres(server, name)
    for report in reports:
        print_table(report)
    if args.json is not None:
        args.json.write_text(json.dumps({"rows": args.rows, "reports": reports}, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
