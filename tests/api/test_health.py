from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx
import pytest

from oneflow_ai.app import create_app
from oneflow_ai.settings import Settings
from oneflow_ai.storage import migrate
from oneflow_ai.storage.database import create_engine
from tests.support.databases import behind_revision, put_schema
from tests.support.server import live_server


def test_health_ready_docs_on_the_embedded_default(
    make_settings: Callable[..., Settings],
) -> None:
    app = create_app(make_settings(), configure_logs=False)
    with live_server(app) as server:
        health = httpx.get(f"{server.url}/health")
        assert health.status_code == 200
        assert health.json()["status"] == "ok"

        ready = httpx.get(f"{server.url}/ready")
        assert ready.status_code == 200
        assert ready.json() == {
            "status": "ready",
            "checks": {
                "database": {"status": "ok"},
                "schema": {"status": "ok", "revision": migrate.head_revision()},
                "ledger_spool": {"status": "ok", "backlog": 0},
            },
            "circuits": {"open": [], "half_open": []},
        }

        assert httpx.get(f"{server.url}/docs").status_code == 200
        spec = httpx.get(f"{server.url}/openapi.json")
        assert spec.status_code == 200
        assert "/health" in spec.json()["paths"]


@pytest.mark.postgres
async def test_ready_on_postgresql(
    make_settings: Callable[..., Settings], postgres_url: str
) -> None:
    app = create_app(make_settings(database_url=postgres_url), configure_logs=False)
    with live_server(app) as server:
        ready = httpx.get(f"{server.url}/ready")
    assert ready.status_code == 200
    assert ready.json()["checks"]["database"] == {"status": "ok"}


async def test_ready_is_503_while_the_schema_is_behind_then_200_without_a_restart(
    make_settings: Callable[..., Settings], fresh_database_url: str
) -> None:
    """A replica started before its release's migration job finished: not ready (the body says
    what to run) until the job is done, then ready, the same process."""
    await put_schema(fresh_database_url, "behind")
    app = create_app(make_settings(database_url=fresh_database_url), configure_logs=False)
    with live_server(app) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            behind = await client.get("/ready")
            assert behind.status_code == 503
            assert behind.json()["failed"] == ["schema"]
            assert behind.json()["checks"]["schema"] == {
                "status": "failed",
                "error": "schema behind: run oneflow db upgrade",
                "revision": behind_revision(),
                "head": migrate.head_revision(),
            }
            engine = create_engine(fresh_database_url, pool_size=1)
            try:
                await migrate.upgrade(engine)  # the migration job
            finally:
                await engine.dispose()
            deadline = time.monotonic() + 30
            while (ready := await client.get("/ready")).status_code != 200:
                assert time.monotonic() < deadline, ready.text
                await asyncio.sleep(0.2)
    assert ready.json()["checks"]["schema"] == {
        "status": "ok",
        "revision": migrate.head_revision(),
    }


async def test_ready_is_503_for_a_schema_ahead_of_the_code(
    make_settings: Callable[..., Settings], fresh_database_url: str
) -> None:
    await put_schema(fresh_database_url, "ahead")
    app = create_app(make_settings(database_url=fresh_database_url), configure_logs=False)
    with live_server(app) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            ready = await client.get("/ready")
    assert ready.status_code == 503
    assert ready.json()["checks"]["schema"]["error"].startswith("schema ahead of the code")


def test_ready_is_503_naming_the_failed_database(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(database_url="postgresql+asyncpg://nobody@127.0.0.1:1/none")
    with live_server(create_app(settings, configure_logs=False)) as server:
        ready = httpx.get(f"{server.url}/ready", timeout=10)
        health = httpx.get(f"{server.url}/health")
    assert health.status_code == 200  # liveness does no I/O
    assert ready.status_code == 503
    body = ready.json()
    assert body["failed"] == ["database"]
    assert body["checks"]["database"]["status"] == "failed"
    assert body["checks"]["database"]["error"]


def test_ready_stays_200_naming_an_unreachable_redis(
    make_settings: Callable[..., Settings],
) -> None:
    """Without Redis a replica still serves (its limits, breakers and idempotency keys decide
    in process): taking every replica out of the load balancer would make Redis's outage a
    total one. It says so."""
    settings = make_settings(redis_url="redis://127.0.0.1:1/0")
    with live_server(create_app(settings, configure_logs=False)) as server:
        ready = httpx.get(f"{server.url}/ready", timeout=10)
    assert ready.status_code == 200
    assert ready.json()["status"] == "degraded"
    assert ready.json()["degraded"] == ["redis"]
    assert ready.json()["checks"]["redis"]["status"] == "failed"
    assert ready.json()["checks"]["database"]["status"] == "ok"


@pytest.mark.redis
def test_ready_with_redis(make_settings: Callable[..., Settings]) -> None:
    from tests.conftest import redis_server_url

    settings = make_settings(redis_url=redis_server_url())
    with live_server(create_app(settings, configure_logs=False)) as server:
        ready = httpx.get(f"{server.url}/ready")
    assert ready.status_code == 200
    assert ready.json()["checks"]["redis"] == {"status": "ok"}
