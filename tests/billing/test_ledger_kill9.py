"""kill -9 in the middle of a load of streaming requests, then reconciliation from a restart.

Every request the client saw complete is charged exactly once; every reservation the dead
process left is released; the ledger balances. (The same through the whole gateway comes
with the request pipeline; this drives the ledger the way the pipeline does.)
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from oneflow_ai.billing import PricingEngine
from oneflow_ai.billing.budgets import BudgetMode, BudgetSpec, Metric, Period
from oneflow_ai.billing.ledger import Ledger, LedgerConfig
from oneflow_ai.domain.usage import Usage
from tests.support.ledger import assert_consistent, create_projects, make_ledger, snapshot
from tests.support.ledger_load import MAINTENANCE, OWNER_TIMEOUT

ROOT = Path(__file__).resolve().parents[2]
SEEN_BEFORE_KILL = 300


def run_until_killed(database_url: str, project: str) -> set[str]:
    """Start the load, kill -9 it after enough completions; the request ids it completed."""
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.support.ledger_load", database_url, project],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    done: set[str] = set()
    deadline = time.monotonic() + 120
    try:
        assert child.stdout is not None
        for line in child.stdout:
            if line.startswith("done "):
                done.add(line.split()[1])
            if len(done) >= SEEN_BEFORE_KILL:
                break
            assert time.monotonic() < deadline, "the load did not get going"
        os.kill(child.pid, signal.SIGKILL)
        for line in child.stdout:  # what was already written reached the client too
            if line.startswith("done "):
                done.add(line.split()[1])
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    return done


async def test_kill_9_under_streaming_load_then_reconcile(
    engine: AsyncEngine, database_url: str
) -> None:
    await create_projects(engine, "load")
    admin = make_ledger(engine)
    await admin.start()
    try:
        await admin.top_up("load", 10_000 * 1_000_000)
        [budget] = await admin.set_budgets(
            "load",
            [
                BudgetSpec(
                    id="",
                    project_id="load",
                    metric=Metric.TOKENS,
                    period=Period.MONTH,
                    limit=10**12,
                    mode=BudgetMode.HARD,
                )
            ],
        )
    finally:
        await admin.close()

    done = await asyncio.to_thread(run_until_killed, database_url, "load")
    left = await snapshot(engine, "load")
    assert left.reservations > 0  # it died with requests in flight

    # The restart: a new process whose maintenance reconciles what the dead one left.
    restarted = Ledger(
        engine,
        PricingEngine(),
        LedgerConfig(owner_timeout=OWNER_TIMEOUT, maintenance_interval=MAINTENANCE),
        owner="restarted",
    )
    await restarted.start()
    try:
        deadline = time.monotonic() + 30
        while (await snapshot(engine, "load")).reservations and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
    finally:
        await restarted.close()

    snap = (await assert_consistent(engine, ["load"], hard_limits={budget.spec.id: 10**12}))["load"]
    assert snap.reservations == 0 and snap.reserved == 0
    assert snap.counters[budget.spec.id][1] == 0
    missing = done - set(snap.charges)
    assert not missing, f"completed but not charged: {sorted(missing)[:5]}"
    assert snap.duplicate_charges == 0
    cost = PricingEngine().price("gpt-4o", Usage(input_tokens=500, output_tokens=400))
    assert set(snap.charges.values()) == {cost.micro_credits}
    assert snap.balance == 10_000 * 1_000_000 - len(snap.charges) * cost.micro_credits
    assert snap.usage_records == len(snap.charges)
