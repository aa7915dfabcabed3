"""Credits or a budget set on a running system hold on every replica from the next request.

Two gateway processes share PostgreSQL and Redis. A new project (postpaid: no limit) gets room
for exactly 100 requests: a top-up of 0.13 credits through one replica's API, a hard daily
budget of 0.13 credits through its API, or `oneflow credits topup` (a process of its own).
Straight after, 1,000 concurrent requests go through both replicas, each costing 0.0013
credits, exactly what it reserves (the fakes count tokens as the gateway does and cut the
answer at `max_tokens`). Exactly 100 are answered and charged; every other one is refused with
402; the project is charged exactly 0.13 credits, so a prepaid balance ends at 0, never below.

The replicas reload budgets and prepaid projects only every 300 s here (and trust what they
loaded for 600 s), so nothing but the published change can explain a replica that enforces it.
Without Redis there is nothing to publish on: the replicas trust what they loaded for 2 s, and
the CLI, seeing gateways running, waits that long before it returns.

And when the database cannot be read for longer than that bound, a replica does not guess: it
refuses with 503 before calling the provider, and serves again once the database is back.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import orjson
import pytest

from oneflow_ai.storage.database import create_engine
from oneflow_fakes import FakeProviders
from tests.conftest import redis_server_url
from tests.support.billing_world import counter
from tests.support.databases import unreachable_pg_database
from tests.support.gateway_load import (
    HANG_GUARD,
    Answer,
    admin_call,
    gateway_env,
    new_project,
    post_chat,
)
from tests.support.gateway_process import GatewayProcess, gateway_process
from tests.support.ledger import assert_consistent, snapshot

MODEL = "gpt-3.5-turbo"
PROMPT = "Say something about money"  # 11 prompt tokens, with the chat framing
MAX_TOKENS = 5
EACH = 1_300  # micro-credits: 11 x 50 + 5 x 150
ROOM = "0.13"  # credits: 100 requests
COVERED = 100
REQUESTS = 1_000
PROJECT = "funded"
BODY = orjson.dumps(
    {"model": MODEL, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": MAX_TOKENS}
)


@dataclass
class Cluster:
    env: dict[str, str]
    replicas: list[GatewayProcess]
    key: str
    fakes: FakeProviders


@contextmanager
def cluster(database_url: str, tmp_path: Path, **settings: str) -> Iterator[Cluster]:
    """The fakes, two replicas on `database_url` (`settings`: more of their environment), and
    a new postpaid project."""
    with (
        FakeProviders(count_tokens=lambda text: counter.count_text(MODEL, text).tokens) as fakes,
        ExitStack() as stack,
    ):
        env = gateway_env(
            database_url,
            fakes,
            LEDGER_MAINTENANCE_INTERVAL_SECONDS="300",
            LEDGER_OWNER_TIMEOUT_SECONDS="600",
            **settings,
        )
        replicas = [
            stack.enter_context(gateway_process(env, tmp_path / f"replica-{i}.log"))
            for i in range(2)
        ]
        yield Cluster(env, replicas, new_project(replicas[0].url, PROJECT), fakes)


def _top_up_through_the_api(world: Cluster) -> None:
    admin_call(
        world.replicas[0].url, "POST", f"/api/v1/projects/{PROJECT}/credits", {"credits": ROOM}
    )


def _budget_through_the_api(world: Cluster) -> None:
    budget = {"metric": "credits", "period": "day", "limit": ROOM, "mode": "hard"}
    path = f"/api/v1/projects/{PROJECT}/budgets"
    admin_call(world.replicas[0].url, "PUT", path, {"budgets": [budget]})


def _top_up_through_the_cli(world: Cluster) -> str:
    """`oneflow credits topup`; what it said on stderr."""
    result = subprocess.run(
        [sys.executable, "-m", "oneflow_ai", "credits", "topup", PROJECT, ROOM],
        env={**os.environ, **world.env},
        capture_output=True,
        text=True,
        timeout=HANG_GUARD,
    )
    assert result.returncode == 0, result.stderr
    return result.stderr


CHANGES: dict[str, Callable[[Cluster], object]] = {
    "api-top-up": _top_up_through_the_api,
    "api-hard-budget": _budget_through_the_api,
    "cli-top-up": _top_up_through_the_cli,
}


async def _burst(world: Cluster, requests: int = REQUESTS) -> list[Answer]:
    urls = [replica.url for replica in world.replicas]
    connector = aiohttp.TCPConnector(limit=200)
    timeout = aiohttp.ClientTimeout(total=HANG_GUARD)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        return list(
            await asyncio.gather(
                *(
                    post_chat(session, urls[i % len(urls)], world.key, body=BODY)
                    for i in range(requests)
                )
            )
        )


@pytest.mark.redis
@pytest.mark.postgres
@pytest.mark.parametrize("change", list(CHANGES))
async def test_room_for_100_requests_set_on_a_running_system_answers_100_of_1000(
    postgres_url: str, redis_prefix: str, tmp_path: Path, change: str
) -> None:
    redis = {"REDIS_URL": redis_server_url() or "", "REDIS_KEY_PREFIX": redis_prefix}
    with cluster(postgres_url, tmp_path, LEDGER_STATE_MAX_AGE_SECONDS="600", **redis) as world:
        await asyncio.to_thread(CHANGES[change], world)
        answers = await _burst(world)
    await _check(postgres_url, change, answers)


@pytest.mark.postgres
async def test_without_redis_the_cli_returns_once_running_replicas_apply_its_top_up(
    postgres_url: str, tmp_path: Path
) -> None:
    with cluster(postgres_url, tmp_path, LEDGER_STATE_MAX_AGE_SECONDS="2") as world:
        said = await asyncio.to_thread(_top_up_through_the_cli, world)
        answers = await _burst(world)
    await _check(postgres_url, "cli-top-up", answers)
    assert "waiting 2 s for running gateways" in said, said


@pytest.mark.redis
@pytest.mark.postgres
async def test_a_replica_that_cannot_read_the_state_refuses_before_calling_the_provider(
    postgres_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    """The project's database goes away for longer than LEDGER_STATE_MAX_AGE_SECONDS: no
    replica knows any more whether the project is prepaid or has a budget, so each answers 503
    with Retry-After before calling the provider, rather than serving it as unlimited. Once the
    database is back, the project is served again. (Keys are cached for 5 minutes here: what
    refuses is the ledger state, not authentication.)"""
    redis = {"REDIS_URL": redis_server_url() or "", "REDIS_KEY_PREFIX": redis_prefix}
    settings = {"LEDGER_STATE_MAX_AGE_SECONDS": "1", "API_KEY_CACHE_TTL_SECONDS": "300"}
    with cluster(postgres_url, tmp_path, **settings, **redis) as world:
        assert {a.status for a in await _burst(world, 4)} == {200}  # keys now cached
        called = world.fakes.call_count()
        async with unreachable_pg_database(postgres_url):
            await asyncio.sleep(1.5)  # past the bound: what the replicas knew is too old
            during = await _burst(world, 20)
            upstream_calls = world.fakes.call_count() - called
        after = await _burst(world, 4)

    print(f"database away: {Counter(a.status for a in during)}, {upstream_calls} upstream calls")
    assert upstream_calls == 0
    assert {a.status for a in during} == {503}
    assert all(a.headers.get("retry-after") for a in during)
    assert {a.status for a in after} == {200}


async def _check(postgres_url: str, change: str, answers: list[Answer]) -> None:
    """Exactly 100 answered and charged 0.0013 each, 900 refused; the ledger consistent."""
    statuses = Counter(answer.status for answer in answers)
    answered = {a.headers["x-oneflow-request-id"] for a in answers if a.status == 200}
    engine = create_engine(postgres_url, pool_size=1)
    try:
        snap = await snapshot(engine, PROJECT)
        charged = sum(snap.charges.values())
        print(f"{change}: {dict(statuses)}, charged {charged}, balance {snap.balance}")
        assert statuses == {200: COVERED, 402: REQUESTS - COVERED}, (statuses, charged)
        assert set(snap.charges) == answered
        assert set(snap.charges.values()) == {EACH}
        assert charged == COVERED * EACH
        assert snap.reservations == 0
        if change != "api-hard-budget":
            assert snap.mode == "prepaid" and snap.balance == 0
        await assert_consistent(engine, [PROJECT])
    finally:
        await engine.dispose()
