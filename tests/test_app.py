"""The application's way in: HTTP requests enter at the edge middleware, past FastAPI's layers
that do nothing for them, unless one of those layers would act."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.types import Receive, Scope, Send

from oneflow_ai.api.middleware import EdgeMiddleware
from oneflow_ai.app import GatewayApp, create_app
from oneflow_ai.settings import Settings
from tests.support.server import live_server


def _count_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The scope types Starlette's last-resort error layer is called with."""
    seen: list[str] = []
    original = ServerErrorMiddleware.__call__

    async def counting(self: ServerErrorMiddleware, scope: Scope, rcv: Receive, snd: Send) -> None:
        seen.append(scope["type"])
        await original(self, scope, rcv, snd)

    monkeypatch.setattr(ServerErrorMiddleware, "__call__", counting)
    return seen


def test_http_requests_enter_at_the_edge(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = _count_calls(monkeypatch)
    app = create_app(make_settings(), configure_logs=False)
    with live_server(app) as server:
        health = httpx.get(f"{server.url}/health")
        chat = httpx.post(f"{server.url}/v1/chat/completions", json={"model": "gpt-4o"})
    assert health.status_code == 200 and health.headers["x-oneflow-request-id"]
    assert chat.status_code == 401 and chat.json()["error"]["type"] == "invalid_request_error"
    assert "http" not in seen  # (the lifespan still takes the whole way)


def test_a_framework_layer_that_acts_keeps_the_whole_way(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With FastAPI's own body limit set, its layer acts: every request passes through it."""
    seen = _count_calls(monkeypatch)
    app = GatewayApp(max_body_size=8)
    app.add_middleware(EdgeMiddleware, max_body_size=1024)

    @app.post("/echo")
    async def echo() -> dict[str, bool]:
        return {"ok": True}

    with live_server(app) as server:
        small = httpx.post(f"{server.url}/echo", content=b"1234")
        large = httpx.post(f"{server.url}/echo", content=b"x" * 100)
    assert small.status_code == 200
    assert large.status_code == 413  # FastAPI's limit, below the edge's
    assert seen.count("http") == 2


def test_the_services_live_on_the_app_while_it_runs(
    make_settings: Callable[..., Settings],
) -> None:
    """The lifespan's services are the app's `services` (what every request reads) and its
    `state.services`, until it ends."""
    app = create_app(make_settings(), configure_logs=False)
    assert isinstance(app, GatewayApp) and app.services is None
    with live_server(app) as server:
        assert app.services is not None and app.services is app.state.services
        # A credential is checked by the services' identity (`get_services`): a wrong one, 401.
        wrong = httpx.get(f"{server.url}/v1/models", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
    assert app.services is None
