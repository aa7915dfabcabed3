"""GET /api/v1/admin/circuits and the circuits in /ready."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import httpx
import pytest

from oneflow_ai.api.deps import authenticate
from oneflow_ai.app import create_app
from oneflow_ai.auth.principal import Principal, PrincipalKind, Role
from oneflow_ai.resilience import CircuitBreakers, Outcome, RedisBreakerStore
from oneflow_ai.settings import DEFAULT_MASTER_KEY, Settings
from tests.support.redis_server import redis_for_test
from tests.support.server import LiveServer, live_server

ADMIN = {"Authorization": f"Bearer {DEFAULT_MASTER_KEY}"}


def in_server(server: LiveServer, coroutine: Coroutine[Any, Any, object]) -> object:
    """Run a coroutine on the server's own event loop (where its services live)."""
    assert server.loop is not None
    return asyncio.run_coroutine_threadsafe(coroutine, server.loop).result(timeout=10)


async def fail(breakers: CircuitBreakers, provider: str, model: str, times: int) -> None:
    for _ in range(times):
        permit = await breakers.acquire(provider, model)
        await breakers.release(permit, Outcome.FAILURE)


def test_admins_see_every_circuit(make_settings: Callable[..., Settings]) -> None:
    app = create_app(make_settings(circuit_min_calls=3), configure_logs=False)
    with live_server(app) as server:
        breakers: CircuitBreakers = app.state.services.breakers
        in_server(server, fail(breakers, "anthropic", "claude-3-haiku-20240307", 3))
        response = httpx.get(f"{server.url}/api/v1/admin/circuits", headers=ADMIN)
        ready = httpx.get(f"{server.url}/ready")
        anonymous = httpx.get(f"{server.url}/api/v1/admin/circuits")
        metrics = httpx.get(f"{server.url}/metrics").text
    assert response.status_code == 200
    body = response.json()
    assert body["source"] == "process"
    circuits = {c["key"]: c for c in body["circuits"]}
    model = circuits["anthropic/claude-3-haiku-20240307"]
    assert model["state"] == "open" and model["times_opened"] == 1
    assert 14 < model["retry_in_seconds"] <= 15
    assert circuits["anthropic"]["state"] == "open"  # its only traffic failed: 100 % >= 80 %
    assert body["config"]["model"]["min_calls"] == 3
    assert body["config"]["provider"]["failure_rate"] == 0.8
    assert ready.status_code == 200  # open circuits never make a replica unready
    assert ready.json()["circuits"]["open"] == sorted(
        k for k, c in circuits.items() if c["state"] == "open"
    )
    assert anonymous.status_code == 401
    assert 'oneflow_circuit_breaker_state{provider="anthropic"} 2.0' in metrics
    assert 'oneflow_circuit_breaker_state{provider="openai"} 0.0' in metrics


def test_other_roles_are_refused(make_settings: Callable[..., Settings]) -> None:
    app = create_app(make_settings(), configure_logs=False)
    member = Principal(kind=PrincipalKind.API_KEY, project_id="p1", role=Role.MEMBER, key_id="k1")
    app.dependency_overrides[authenticate] = lambda: member
    with live_server(app) as server:
        response = httpx.get(f"{server.url}/api/v1/admin/circuits", headers=ADMIN)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "insufficient_permissions"


@pytest.mark.redis
async def test_with_redis_the_circuits_of_every_replica_are_listed(
    make_settings: Callable[..., Settings], redis_prefix: str
) -> None:
    from tests.conftest import redis_server_url

    settings = make_settings(redis_url=redis_server_url(), redis_key_prefix=redis_prefix)
    async with redis_for_test(redis_prefix) as client:
        other_replica = CircuitBreakers(RedisBreakerStore(client, prefix=redis_prefix))
        for _ in range(10):
            permit = await other_replica.acquire("openai", "gpt-4")
            await other_replica.release(permit, Outcome.FAILURE)
        await other_replica.aclose()
        app = create_app(settings, configure_logs=False)
        with live_server(app) as server:
            async with httpx.AsyncClient(base_url=server.url) as http:
                response = await http.get("/api/v1/admin/circuits", headers=ADMIN)
    body = response.json()
    assert body["source"] == "redis"
    circuits = {c["key"]: c["state"] for c in body["circuits"]}
    assert circuits == {"openai": "open", "openai/gpt-4": "open"}
