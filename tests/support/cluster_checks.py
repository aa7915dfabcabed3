"""What a cluster run must show, read from the clients' outcomes, the faults' times and the
ledger. Each check returns problems (sentences with the numbers) rather than stopping at the
first: a failing run reports everything that went wrong at once.

The kinds of outcome:

- `ok`: the whole answer (a plain body; a stream to its end, after its usage event);
- `interrupted`: a stream that began and broke off; allowed when a replica it was on was
  killed (kill -9) while it ran;
- `402 budget`, `429 rate limit`: refusals by a hard budget or a rate limit;
- `503 outage`: a 503 while PostgreSQL or Redis was down (or within `recovery` seconds of its
  return): the documented refusal during an outage, which must carry `Retry-After`; `503
  outage, no replica ready` when the load balancer answered it itself, every replica's
  `/ready` failing (it must carry `Retry-After` too: it does not);
- `502 cut by kill -9`: the load balancer's 502 for a request that was on the replica killed
  while it ran (nothing had been sent back yet);
- anything else (no answer at all, another 5xx, another 4xx) is a problem.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from oneflow_ai.domain.money import MICRO_CREDITS_PER_CREDIT
from tests.support.cluster_faults import Fault, Timeline
from tests.support.cluster_load import Outcome

__all__ = [
    "ALLOWED",
    "Charge",
    "charges_of",
    "classify",
    "cut_by_kill",
    "money_problems",
    "outcome_problems",
    "rate_limit_problems",
]

#: Kinds of outcome that are not problems.
ALLOWED = frozenset(
    {
        "ok",
        "interrupted",
        "402 budget",
        "429 rate limit",
        "503 outage",
        "503 outage, no replica ready",
        "502 cut by kill -9",
    }
)


def cut_by_kill(outcome: Outcome, faults: list[Fault]) -> Fault | None:
    """The kill that cut `outcome` short: it ran on that replica while the replica died
    (between the signal and the exit)."""
    return next(
        (
            f
            for f in faults
            if f.kind == "kill"
            and outcome.started <= float(str(f.details.get("gone", f.start)))
            and outcome.ended >= f.start
            and f.target in outcome.headers.get("x-oneflow-upstream", "")
        ),
        None,
    )


def _in_outage(outcome: Outcome, faults: list[Fault], timeline: Timeline) -> bool:
    return any(
        f.kind in ("postgres", "redis")
        and outcome.ended >= f.start
        and outcome.started <= f.end + timeline.recovery
        for f in faults
    )


def classify(outcome: Outcome, faults: list[Fault], timeline: Timeline) -> str:
    status = outcome.status
    if status == 200:
        if outcome.complete:
            return "ok"
        return "interrupted" if cut_by_kill(outcome, faults) else "interrupted, no kill"
    if status == 0:
        return "no answer"
    if status == 402:
        return "402 budget"
    if status == 429:
        return "429 rate limit"
    if status == 503 and _in_outage(outcome, faults, timeline):
        # The load balancer's own page: it saw no replica ready.
        return "503 outage, no replica ready" if outcome.body.startswith(b"<") else "503 outage"
    if status == 502 and cut_by_kill(outcome, faults):
        return "502 cut by kill -9"
    return f"{status} {'outside an outage' if status >= 500 else 'unexpected'}"


def outcome_problems(outcomes: list[Outcome], kinds: list[str]) -> list[str]:
    problems = []
    bad = Counter(k for k in kinds if k not in ALLOWED)
    for kind, count in sorted(bad.items()):
        examples = [o for o, k in zip(outcomes, kinds, strict=True) if k == kind][:3]
        shown = "; ".join(
            f"{o.request_id} at {o.started:.1f}-{o.ended:.1f} s: {o.status} "
            f"{(o.error or o.body[:160].decode(errors='replace'))!r}"
            for o in examples
        )
        problems.append(f"{count} request(s) {kind} (e.g. {shown})")
    unannounced = [
        o.request_id for o, k in zip(outcomes, kinds, strict=True) if k == "ok" and not o.credits
    ]
    if unannounced:
        problems.append(f"{len(unannounced)} answer(s) announced no credits: {unannounced[:5]}")
    no_retry = [
        o.request_id
        for o, k in zip(outcomes, kinds, strict=True)
        if k.startswith(("503", "429")) and "retry-after" not in o.headers
    ]
    if no_retry:
        problems.append(f"{len(no_retry)} 503/429 without Retry-After: {no_retry[:5]}")
    return problems


@dataclass(frozen=True)
class Charge:
    project: str
    micro_credits: int
    input_tokens: int
    output_tokens: int


async def charges_of(engine: AsyncEngine, projects: list[str]) -> dict[str, list[Charge]]:
    """Every charge entry of `projects`, by the request id it charges (one each, if right)."""
    found: dict[str, list[Charge]] = {}
    async with engine.connect() as connection:
        rows = await connection.execute(
            text(
                "SELECT request_id, project_id, amount, input_tokens, output_tokens "
                "FROM ledger_entries WHERE kind = 'charge' AND project_id = ANY(:projects)"
            ),
            {"projects": projects},
        )
        for request_id, project, amount, tokens_in, tokens_out in rows:
            charge = Charge(project, -int(amount), int(tokens_in or 0), int(tokens_out or 0))
            found.setdefault(request_id, []).append(charge)
    return found


def _micro(credits: Decimal) -> int:
    return int(credits * MICRO_CREDITS_PER_CREDIT)


def money_problems(
    outcomes: list[Outcome], kinds: list[str], charges: dict[str, list[Charge]]
) -> list[str]:
    """Every answered request charged exactly once, what its answer announced; an interrupted
    one charged once for its prompt and at most what it could deliver; nothing else charged
    but requests whose answer was cut by a kill."""
    problems: list[str] = []
    twice = {rid: len(c) for rid, c in charges.items() if len(c) > 1}
    if twice:
        problems.append(f"{len(twice)} request(s) charged more than once: {list(twice)[:5]}")
    wrong, missing = [], []
    for outcome, kind in zip(outcomes, kinds, strict=True):
        charged = charges.get(outcome.gateway_id or "", [])
        if kind == "ok":
            if not charged:
                missing.append(f"{outcome.request_id} ({kind})")
            elif outcome.credits is not None and charged[0].micro_credits != _micro(
                outcome.credits
            ):
                wrong.append((outcome.request_id, outcome.credits, charged[0].micro_credits))
        elif kind.startswith("interrupted") and (not charged or charged[0].input_tokens <= 0):
            missing.append(f"{outcome.request_id} ({kind})")
    if missing:
        problems.append(
            f"{len(missing)} answered or interrupted request(s) not charged (or not for their "
            f"prompt): {missing[:5]}"
        )
    if wrong:
        problems.append(f"{len(wrong)} charge(s) differ from the answer's credits: {wrong[:5]}")
    seen = {o.gateway_id for o in outcomes if o.gateway_id}
    unseen = [rid for rid in charges if rid not in seen]
    cut = sum(1 for k in kinds if k == "502 cut by kill -9")
    if len(unseen) > cut:
        problems.append(
            f"{len(unseen)} charge(s) of requests no client saw an answer of, but only {cut} "
            f"request(s) were cut by the kill: {unseen[:5]}"
        )
    return problems


def rate_limit_problems(
    outcomes: list[Outcome], kinds: list[str], limit: int, faults: list[Fault], recovery: float
) -> list[str]:
    """The rate-limited key's answers: every remaining count handed out at most once, never
    more admitted than the limit, no refusal before the limit was used up, and no admission
    without a decision outside the Redis outage (where `RATE_LIMIT_FAIL_OPEN` decides)."""
    problems: list[str] = []
    decided = [
        o
        for o in outcomes
        if o.status not in (0, 429) and o.headers.get("x-ratelimit-limit") == str(limit)
    ]
    remaining = Counter(int(o.headers["x-ratelimit-remaining"]) for o in decided)
    repeated = sorted(r for r, n in remaining.items() if n > 1)
    if repeated:
        problems.append(f"rate limit: remaining counts handed out twice: {repeated[:10]}")
    if len(decided) > limit:
        problems.append(f"rate limit: {len(decided)} admitted by the limiter, limit {limit}")
    seen = {id(o) for o in decided}
    unknown = sum(1 for o in outcomes if o.status in (0, 502, 503) and id(o) not in seen)
    refused = [o for o, k in zip(outcomes, kinds, strict=True) if k == "429 rate limit"]
    if refused and len(decided) + unknown < limit:
        problems.append(
            f"rate limit: refused after {len(decided)} admissions (+{unknown} unknown), "
            f"limit {limit}"
        )
    redis = [f for f in faults if f.kind == "redis"]
    undecided = [
        o.request_id
        for o in outcomes
        if o.status == 200
        and "x-ratelimit-limit" not in o.headers
        and not any(f.start <= o.ended and o.started <= f.end + recovery for f in redis)
    ]
    if undecided:
        problems.append(
            f"rate limit: {len(undecided)} admitted without a decision outside the Redis "
            f"outage: {undecided[:5]}"
        )
    return problems
