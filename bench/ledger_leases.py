"""The ledger alone on PostgreSQL: a funded request's reserve and settle, with and without
credit leases, and with leases and write-behind (settlements through the local spool,
``LEDGER_WRITE_BEHIND``), at a given concurrency (no HTTP, no provider: what the ledger adds).

    .venv/bin/python -m bench.ledger_leases --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/DB

The database is migrated and used as is (create an empty one). Prints, per mode: requests per
second, p50/p99 of reserve alone (what comes before the upstream call) and of reserve + settle,
and the rows written to ``ledger_reservations`` per request (PostgreSQL's own statistics);
after the ledger is closed it checks that the balance is the top-up minus every charge.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import text

from oneflow_ai.billing.leases import LeaseConfig
from oneflow_ai.billing.ledger import Ledger, LedgerConfig
from oneflow_ai.billing.pricing import PricingEngine
from oneflow_ai.domain.usage import Usage
from oneflow_ai.storage.database import create_engine
from oneflow_ai.storage.migrate import upgrade
from oneflow_ai.storage.spool import SettlementSpool


async def _inserted(engine: object) -> int:
    async with engine.connect() as c:  # type: ignore[attr-defined]
        await c.execute(text("SELECT pg_stat_clear_snapshot()"))
        row = await c.execute(
            text("SELECT n_tup_ins FROM pg_stat_user_tables WHERE relname = 'ledger_reservations'")
        )
        return int(row.scalar_one())


async def run(url: str, mode: str, requests: int, concurrency: int) -> str:
    with tempfile.TemporaryDirectory() as folder:
        return await _run(url, mode, requests, concurrency, Path(folder))


async def _run(url: str, mode: str, requests: int, concurrency: int, folder: Path) -> str:
    leases = mode != "off"
    engine = create_engine(url, pool_size=5)
    await upgrade(engine)
    project = f"bench-{uuid.uuid4().hex[:8]}"
    async with engine.begin() as c:
        await c.execute(
            text("INSERT INTO projects (id, name, created_at) VALUES (:p, :p, now())"),
            {"p": project},
        )
    write_behind = mode == "write-behind"
    config = LedgerConfig(leases=LeaseConfig(enabled=leases), write_behind=write_behind)
    spool = SettlementSpool(folder / "spool.jsonl") if write_behind else None
    ledger = Ledger(engine, PricingEngine(), config, owner=f"bench-{mode}", spool=spool)
    await ledger.start()
    await ledger.wait_ready()
    await ledger.top_up(project, 10_000 * 1_000_000)
    worst = ledger.pricing.max_cost("gpt-4o", 1000, 200)
    before_call: list[float] = []
    whole: list[float] = []
    charged: list[int] = []
    queue = iter(range(20))  # warm-up first

    async def worker() -> None:
        for _ in queue:
            started = time.perf_counter()
            held = await ledger.reserve(
                request_id=uuid.uuid4().hex, project_id=project, max_cost=worst, provider="openai"
            )
            before_call.append(time.perf_counter() - started)
            settled = await ledger.settle(held, Usage(input_tokens=1000, output_tokens=100))
            charged.append(settled.cost.micro_credits)
            whole.append(time.perf_counter() - started)

    await worker_round(worker, 1)  # warm up: the lease is taken in the background
    await asyncio.sleep(0.2)
    before_call.clear()
    whole.clear()
    queue = iter(range(requests))
    inserted = await _inserted(engine)
    started = time.perf_counter()
    await worker_round(worker, concurrency)
    elapsed = time.perf_counter() - started
    await asyncio.sleep(1.5)  # PostgreSQL publishes its table statistics every few hundred ms
    inserted = await _inserted(engine) - inserted
    await ledger.close()
    async with engine.connect() as c:
        row = await c.execute(
            text("SELECT balance, reserved FROM ledger_accounts WHERE project_id = :p"),
            {"p": project},
        )
        balance, reserved = row.one()
    await engine.dispose()
    exact = balance == 10_000 * 1_000_000 - sum(charged) and reserved == 0
    done = len(whole)

    def ms(values: list[float], q: int) -> float:
        return statistics.quantiles(values, n=100)[q - 1] * 1000

    return (
        f"{mode:<12} c={concurrency:<3} {done / elapsed:8.0f} req/s  "
        f"reserve p50 {ms(before_call, 50):6.2f} ms p99 {ms(before_call, 99):6.2f} ms  "
        f"reserve+settle p50 {ms(whole, 50):6.2f} ms p99 {ms(whole, 99):6.2f} ms  "
        f"reservation rows/request {inserted / done:.3f}  balance {'exact' if exact else 'WRONG'}"
    )


async def worker_round(worker: object, concurrency: int) -> None:
    await asyncio.gather(*(worker() for _ in range(concurrency)))  # type: ignore[operator]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, action="append")
    parser.add_argument(
        "--mode", action="append", choices=["off", "leases", "write-behind"], help="default: all"
    )
    args = parser.parse_args()
    for concurrency in args.concurrency or [1, 10]:
        for mode in args.mode or ["off", "leases", "write-behind"]:
            print(asyncio.run(run(args.database_url, mode, args.requests, concurrency)))


if __name__ == "__main__":
    main()
