from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from oneflow_ai.app import create_app
from oneflow_ai.settings import Settings
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
            "checks": {"database": {"status": "ok"}},
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


def test_ready_is_503_naming_the_failed_redis(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(redis_url="redis://127.0.0.1:1/0")
    with live_server(create_app(settings, configure_logs=False)) as server:
        ready = httpx.get(f"{server.url}/ready", timeout=10)
    assert ready.status_code == 503
    assert ready.json()["failed"] == ["redis"]
    assert ready.json()["checks"]["database"]["status"] == "ok"


@pytest.mark.redis
def test_ready_with_redis(make_settings: Callable[..., Settings]) -> None:
    from tests.conftest import redis_server_url

    settings = make_settings(redis_url=redis_server_url())
    with live_server(create_app(settings, configure_logs=False)) as server:
        ready = httpx.get(f"{server.url}/ready")
    assert ready.status_code == 200
    assert ready.json()["checks"]["redis"] == {"status": "ok"}
