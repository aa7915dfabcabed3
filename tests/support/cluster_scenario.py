"""The cluster's proof: a steady load from two projects through the load balancer while the
faults of `Timeline` happen, then every check of tests/support/cluster_checks.py, and a table.

Projects:
- `cluster-a`, prepaid (a real hold per request) with ample credits, and two keys: `a` (no
  rate limit) and `limited` (`rate_limit` requests per hour: the load uses it up early);
- `cluster-b`, postpaid, given a hard monthly credits budget of `budget_credits` while under
  load (the last fault).

Used by tests/integration/test_cluster.py and `scripts/cluster.py prove` (which takes the
settings of a branch under test with `--env`).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from decimal import Decimal

import aiohttp
import orjson
from sqlalchemy.ext.asyncio import AsyncEngine

from oneflow_ai.domain.money import MICRO_CREDITS_PER_CREDIT
from oneflow_ai.storage.database import create_engine
from tests.support.cluster import Cluster, ClusterConfig
from tests.support.cluster_checks import (
    Charge,
    charges_of,
    classify,
    cut_by_kill,
    money_problems,
    outcome_problems,
    rate_limit_problems,
)
from tests.support.cluster_faults import Fault, Timeline, run_faults
from tests.support.cluster_load import Caller, Outcome, SteadyLoad
from tests.support.gateway_load import HANG_GUARD, MASTER
from tests.support.ledger import Snapshot, assert_consistent, snapshot

__all__ = ["CLUSTER_ENV", "Report", "Scenario", "prove"]

#: A killed replica's holds are reconciled 10 s after its last heartbeat (not 30 s), so that
#: the run need not wait long for them.
CLUSTER_ENV = {
    "LEDGER_OWNER_TIMEOUT_SECONDS": "10",
    "LEDGER_MAINTENANCE_INTERVAL_SECONDS": "2.5",
}
#: Streams of 24 words, 40 ms apart: about a second each, so that some are under way at every
#: fault (and within the 64 tokens each request reserves, in both dialects).
FAKE_OPTIONS = ("--chunk-delay-ms", "40", "--reply-words", "24")
PROJECTS = ("cluster-a", "cluster-b")


@dataclass(frozen=True)
class Scenario:
    timeline: Timeline = field(default_factory=Timeline)
    #: Requests per second of the callers `a`, `limited` (project A) and `b` (project B).
    rates: tuple[float, float, float] = (8.0, 2.0, 6.0)
    rate_limit: int = 60
    top_up: str = "100000"
    budget_credits: str = "0.1"

    def cluster_config(self, env: dict[str, str] | None = None) -> ClusterConfig:
        return ClusterConfig(env={**CLUSTER_ENV, **(env or {})}, fake_options=FAKE_OPTIONS)


@dataclass
class Report:
    outcomes: list[Outcome]
    kinds: list[str]
    faults: list[Fault]
    charges: dict[str, list[Charge]]
    usage_credits: dict[str, Decimal]
    problems: list[str]
    table: str = ""


class _Admin:
    """The master key's calls through the load balancer; each must succeed."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.client = aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {MASTER}"}, timeout=aiohttp.ClientTimeout(30)
        )

    async def call(self, method: str, path: str, body: object = None) -> dict[str, object]:
        async with self.client.request(method, self.url + path, json=body) as response:
            text = await response.text()
            assert response.status < 300, (method, path, response.status, text)
        answer: dict[str, object] = orjson.loads(text)
        return answer

    async def key(self, project: str, name: str, **fields: object) -> str:
        made = await self.call(
            "POST", "/api/v1/keys", {"name": name, "project_id": project, **fields}
        )
        return str(made["key"])


async def _callers(admin: _Admin, scenario: Scenario) -> list[Caller]:
    a, b = PROJECTS
    for project in PROJECTS:
        await admin.call("POST", "/api/v1/projects", {"name": project, "id": project})
    await admin.call("POST", f"/api/v1/projects/{a}/credits", {"credits": scenario.top_up})
    limits = {"requests_per_hour": scenario.rate_limit}
    rate_a, rate_limited, rate_b = scenario.rates
    return [
        Caller("a", a, await admin.key(a, "a"), rate_a),
        Caller("limited", a, await admin.key(a, "limited", limits=limits), rate_limited),
        Caller("b", b, await admin.key(b, "b"), rate_b),
    ]


async def prove(cluster: Cluster, scenario: Scenario) -> Report:
    """Run the load and the faults on `cluster`, wait for the ledger to settle, check."""
    admin = _Admin(cluster.url)
    engine = create_engine(cluster.database_url, pool_size=2)
    budget: dict[str, object] = {}
    try:
        load = SteadyLoad(cluster.url, await _callers(admin, scenario))

        async def set_budget() -> dict[str, object]:
            body = {"budgets": [{"metric": "credits", "period": "month", "mode": "hard",
                                 "limit": scenario.budget_credits}]}  # fmt: skip
            set_at = load.elapsed()
            made = await admin.call("PUT", f"/api/v1/projects/{PROJECTS[1]}/budgets", body)
            budget.update(id=made["data"][0]["id"], set_at=set_at, answered_at=load.elapsed())  # type: ignore[index]
            return dict(budget)

        running = asyncio.create_task(load.run())
        try:
            faults = await run_faults(cluster, load, scenario.timeline, set_budget)
        except BaseException:
            load.finish_in(0)
            await running
            raise
        outcomes = await running
        kinds = [classify(o, faults, scenario.timeline) for o in outcomes]
        report = Report(outcomes, kinds, faults, {}, {}, outcome_problems(outcomes, kinds))
        left = await _wait_settled(engine)
        if left:
            report.problems.append(f"reservations still held {HANG_GUARD:.0f} s after: {left}")
        report.usage_credits = {p: await _usage_credits(admin, p) for p in PROJECTS}
        await _ledger_checks(engine, scenario, report, budget)
    finally:
        await admin.client.close()
        await engine.dispose()
    report.problems += money_problems(report.outcomes, report.kinds, report.charges)
    report.problems += _totals_problems(report)
    limited = [i for i, o in enumerate(report.outcomes) if o.caller == "limited"]
    report.problems += rate_limit_problems(
        [report.outcomes[i] for i in limited],
        [report.kinds[i] for i in limited],
        scenario.rate_limit,
        report.faults,
        scenario.timeline.recovery,
    )
    if budget:
        report.problems += _budget_problems(report, budget, _credits(scenario.budget_credits))
    report.table = table(report, scenario)
    return report


async def _usage_credits(admin: _Admin, project: str) -> Decimal:
    totals = (await admin.call("GET", f"/api/v1/usage?project={project}"))["totals"]
    return Decimal(totals["credits"])  # type: ignore[index]


async def _ledger_checks(
    engine: AsyncEngine, scenario: Scenario, report: Report, budget: dict[str, object]
) -> None:
    """The charges, and the ledger's invariants (the hard budget's too, once set)."""
    report.charges = await charges_of(engine, list(PROJECTS))
    hard = {str(budget["id"]): _credits(scenario.budget_credits)} if budget else {}
    try:
        await assert_consistent(engine, PROJECTS, hard_limits=hard)
    except AssertionError as exc:  # (project, [budget,] snapshot): the numbers that matter
        *where, snap = exc.args[0] if exc.args and isinstance(exc.args[0], tuple) else [exc]
        report.problems.append(f"ledger invariants of {where}: {_summary(snap)}")


async def _wait_settled(engine: AsyncEngine) -> dict[str, int]:
    """Wait (up to HANG_GUARD) until no reservation is left; what is still left."""
    deadline = time.monotonic() + HANG_GUARD
    while True:
        left = {p: (await snapshot(engine, p)).reservations for p in PROJECTS}
        if not any(left.values()) or time.monotonic() > deadline:
            return {p: n for p, n in left.items() if n}
        await asyncio.sleep(1)


def _summary(snap: object) -> str:
    if not isinstance(snap, Snapshot):
        return str(snap)[:300]
    return (
        f"balance {snap.balance}, reserved {snap.reserved} (holds {snap.active_holds_sum}), "
        f"entries {snap.entries_sum}, budget counters (used, reserved) {snap.counters}, "
        f"duplicate charges {snap.duplicate_charges} (micro-credits)"
    )


def _credits(amount: str | Decimal) -> int:
    return int(Decimal(amount) * MICRO_CREDITS_PER_CREDIT)


def _totals_problems(report: Report) -> list[str]:
    """Per project: the ledger's total = the answers' credits (+ what interrupted requests
    were charged) = what `/api/v1/usage` reports."""
    problems = []
    for project in PROJECTS:
        ledger = sum(c.micro_credits for cs in report.charges.values() for c in cs
                     if c.project == project)  # fmt: skip
        answered = sum(
            _credits(o.credits)
            for o, k in zip(report.outcomes, report.kinds, strict=True)
            if o.project == project and k == "ok" and o.credits is not None
        )
        cut = sum(
            c.micro_credits
            for o, k in zip(report.outcomes, report.kinds, strict=True)
            if o.project == project and k != "ok"
            for c in report.charges.get(o.gateway_id or "", [])
        )
        usage = _credits(report.usage_credits[project])
        if not ledger == answered + cut == usage:
            problems.append(
                f"{project}: ledger {ledger / 1e6} credits, answers {answered / 1e6} "
                f"+ interrupted {cut / 1e6}, /api/v1/usage {usage / 1e6}"
            )
    return problems


def _budget_problems(report: Report, budget: dict[str, object], limit: int) -> list[str]:
    """What project B's requests sent after the budget was set were charged, in all."""
    since = float(budget["answered_at"])  # type: ignore[arg-type]
    spent = sum(
        c.micro_credits
        for o in report.outcomes
        if o.project == PROJECTS[1] and o.started > since
        for c in report.charges.get(o.gateway_id or "", [])
    )
    if spent > limit:
        return [f"budget overspent: {spent / 1e6} credits charged after a hard {limit / 1e6}"]
    return []


def _after(fault: Fault, recovery: float) -> float:
    """How long past its end a fault's requests may still feel it."""
    return recovery if fault.kind in ("postgres", "redis") else 0.0


def _phase(moment: float, faults: list[Fault], recovery: float) -> str:
    """The fault a request sent at `moment` ran into (the first that covers it)."""
    for fault in faults:
        if fault.covers(moment, _after(fault, recovery)) or (
            fault.kind == "budget" and moment >= fault.start
        ):
            return fault.name
    return "no fault"


def _errors(outcomes: list[Outcome], kinds: list[str]) -> str:
    """Kinds other than `ok` with their counts; a 503's time to answer (p50, max)."""
    counts = Counter(kinds)
    parts = []
    for kind, count in sorted(counts.items()):
        if kind == "ok":
            continue
        part = f"{kind} {count}"
        if kind.startswith("503"):
            times = sorted(o.seconds for o, k in zip(outcomes, kinds, strict=True) if k == kind)
            part += f" (in {times[len(times) // 2] * 1000:.0f} ms p50, {times[-1] * 1000:.0f} max)"
        parts.append(part)
    return ", ".join(parts) or "none"


def table(report: Report, scenario: Scenario) -> str:
    """scenario | load | faults | requests | errors by kind | credits charged vs expected
    (what the answers announced; interrupted requests announce nothing)."""
    recovery = scenario.timeline.recovery
    phases: dict[str, list[int]] = defaultdict(list)
    for i, outcome in enumerate(report.outcomes):
        cut_by = cut_by_kill(outcome, report.faults)
        if report.kinds[i] in ("interrupted", "502 cut by kill -9") and cut_by is not None:
            phases[cut_by.name].append(i)  # on the replica killed while it ran
        else:
            phases[_phase(outcome.started, report.faults, recovery)].append(i)
    # How long each phase lasted: tenths of a second of the load, each given to its phase.
    total = max((o.started for o in report.outcomes), default=0.0)
    spans = Counter(_phase(t / 10, report.faults, recovery) for t in range(int(total * 10)))
    spans["all"] = int(total * 10)
    lines = [
        "| scenario | load | faults | requests | errors by kind | credits charged | expected |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in ["no fault", *(f.name for f in report.faults), "all"]:
        picked = range(len(report.outcomes)) if name == "all" else phases.get(name, [])
        outcomes = [report.outcomes[i] for i in picked]
        if not outcomes:
            continue
        kinds = [report.kinds[i] for i in picked]
        streamed = sum(1 for o in outcomes if o.stream) * 100 // len(outcomes)
        charged = sum(c.micro_credits for o in outcomes
                      for c in report.charges.get(o.gateway_id or "", []))  # fmt: skip
        expected = sum(_credits(o.credits) for o in outcomes if o.complete and o.credits)
        fault = next((f for f in report.faults if f.name == name), None)
        rate = len(outcomes) * 10 / max(1, spans[name])
        lines.append(
            f"| {name} | {rate:.1f} req/s, {streamed}% streamed | "
            f"{_fault_text(fault)} | {len(outcomes)} | {_errors(outcomes, kinds)} | "
            f"{charged / 1e6:.6f} | {expected / 1e6:.6f} |"
        )
    lines.append(
        f"\n/api/v1/usage: {sum(report.usage_credits.values())} credits; "
        f"{len(report.problems)} problem(s)"
    )
    return "\n".join(lines)


def _fault_text(fault: Fault | None) -> str:
    if fault is None:
        return "-"
    shown = {k: round(v, 1) if isinstance(v, float) else v for k, v in fault.details.items()}
    extra = ", ".join(f"{k} {v}" for k, v in shown.items() if k != "id")
    return f"{fault.start:.1f}-{fault.end:.1f} s{f' ({extra})' if extra else ''}"
