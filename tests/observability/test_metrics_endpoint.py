"""`GET /metrics` on a running gateway: the seed's metrics by route template, bounded labels,
the pool gauge read at scrape time, the optional token, and metrics switched off."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from fastapi import APIRouter, FastAPI, Request
from prometheus_client.parser import text_string_to_metric_families
from starlette.responses import PlainTextResponse

from oneflow_ai.api.deps import get_services
from oneflow_ai.api.middleware import EdgeMiddleware
from oneflow_ai.app import create_app
from oneflow_ai.observability.metrics import NoopMetrics
from oneflow_ai.observability.prometheus import PrometheusMetrics
from oneflow_ai.observability.tracing import NoopTracing
from oneflow_ai.settings import Settings
from tests.support.server import live_server


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    return [
        (sample.labels, sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    ]


def test_seed_metrics_use_route_templates(make_settings: Callable[..., Settings]) -> None:
    app = create_app(make_settings(), configure_logs=False)

    @app.get("/_test/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    # Routers included with prefixes, twice: the label is the whole template that matched.
    inner = APIRouter(prefix="/models")

    @inner.get("/{model_id:path}")
    async def model(model_id: str) -> dict[str, str]:
        return {"id": model_id}

    outer = APIRouter(prefix="/v1")
    outer.include_router(inner)
    app.include_router(outer, prefix="/_test")
    app.include_router(outer, prefix="/_test/openai")

    with live_server(app) as server:
        for n in range(5):
            assert httpx.get(f"{server.url}/_test/items/{n}").status_code == 200
        for name in ("gpt-4o", "org/model-x"):
            assert httpx.get(f"{server.url}/_test/v1/models/{name}").status_code == 200
        assert httpx.get(f"{server.url}/_test/openai/v1/models/gpt-4o").status_code == 200
        assert httpx.get(f"{server.url}/_test/items/not-a-number").status_code == 400
        assert httpx.get(f"{server.url}/health").status_code == 200
        assert httpx.post(f"{server.url}/health").status_code == 405
        response = httpx.get(f"{server.url}/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert response.headers["cache-control"] == "no-store"
    counts = {
        (labels["method"], labels["route"], labels["status"]): value
        for labels, value in samples(response.text, "http_requests_total")
    }
    assert counts[("GET", "/_test/items/{item_id}", "200")] == 5
    assert counts[("GET", "/_test/items/{item_id}", "400")] == 1
    assert counts[("GET", "/health", "200")] == 1
    assert counts[("POST", "/health", "405")] == 1
    assert counts[("GET", "/_test/v1/models/{model_id}", "200")] == 2
    assert counts[("GET", "/_test/openai/v1/models/{model_id}", "200")] == 1
    assert not any(route.startswith("/_test/items/") and "{" not in route for _, route, _ in counts)
    durations = dict(
        ((labels["route"], labels["status"]), value)
        for labels, value in samples(response.text, "http_request_duration_seconds_count")
    )
    assert durations[("/_test/items/{item_id}", "200")] == 5
    overhead = samples(response.text, "oneflow_gateway_overhead_seconds_count")
    assert ({"route": "/_test/items/{item_id}"}, 6.0) in overhead  # by route alone
    # The scrape itself is in flight while it renders.
    assert samples(response.text, "http_requests_in_flight") == [({}, 1.0)]


def test_unknown_paths_collapse_into_one_label(make_settings: Callable[..., Settings]) -> None:
    app = create_app(make_settings(), configure_logs=False)
    with live_server(app) as server, httpx.Client(base_url=server.url) as client:
        for n in range(100):
            assert client.get(f"/scan/{n}/secret-{n}").status_code == 404
        text = client.get("/metrics").text

    routes = {labels["route"] for labels, _ in samples(text, "http_requests_total")}
    assert routes == {"unmatched"}
    assert samples(text, "http_requests_total") == [
        ({"method": "GET", "route": "unmatched", "status": "404"}, 100.0)
    ]
    assert "secret-" not in text and "/scan/" not in text


def test_pool_in_use_is_read_at_scrape_time(make_settings: Callable[..., Settings]) -> None:
    app = create_app(make_settings(), configure_logs=False)

    @app.get("/_test/scrape-while-holding")
    async def hold(request: Request) -> PlainTextResponse:
        services = get_services(request)
        async with services.engine.connect(), services.engine.connect():
            body, _ = services.telemetry.metrics.render()
        return PlainTextResponse(body)

    with live_server(app) as server:
        holding = httpx.get(f"{server.url}/_test/scrape-while-holding").text
        idle = httpx.get(f"{server.url}/metrics").text

    assert samples(holding, "oneflow_db_pool_connections_in_use") == [({}, 2.0)]
    assert samples(idle, "oneflow_db_pool_connections_in_use") == [({}, 0.0)]


def test_gateway_metrics_recorded_by_the_pipeline_are_exposed(
    make_settings: Callable[..., Settings],
) -> None:
    app = create_app(make_settings(), configure_logs=False)

    @app.post("/_test/attempt")
    async def attempt(request: Request) -> dict[str, str]:
        telemetry = get_services(request).telemetry
        with telemetry.upstream_attempt(provider="anthropic", model="claude-3-haiku-20240307") as a:
            a.succeeded(input_tokens=12, output_tokens=34)
        telemetry.metrics.set_breaker_state("openai", "open")
        return {"ok": "yes"}

    with live_server(app) as server:
        assert httpx.post(f"{server.url}/_test/attempt").status_code == 200
        text = httpx.get(f"{server.url}/metrics").text

    pm = {"provider": "anthropic", "model": "claude-3-haiku-20240307"}
    assert ({**pm, "outcome": "success"}, 1.0) in samples(text, "oneflow_upstream_requests_total")
    assert ({**pm, "type": "output"}, 34.0) in samples(text, "oneflow_tokens_total")
    assert ({"provider": "openai"}, 2.0) in samples(text, "oneflow_circuit_breaker_state")


def test_metrics_token_is_required_when_set(make_settings: Callable[..., Settings]) -> None:
    token = "scrape-token-0123456789abcdef"
    app = create_app(make_settings(metrics_token=token), configure_logs=False)
    with live_server(app) as server:
        missing = httpx.get(f"{server.url}/metrics")
        wrong = httpx.get(f"{server.url}/metrics", headers={"Authorization": "Bearer nope"})
        right = httpx.get(f"{server.url}/metrics", headers={"Authorization": f"Bearer {token}"})

    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "invalid_metrics_token"
    assert wrong.status_code == 401
    assert right.status_code == 200
    assert "http_requests_total" in right.text


def test_disabled_metrics_answer_404_and_build_nothing(
    make_settings: Callable[..., Settings],
) -> None:
    app = create_app(make_settings(enable_metrics=False), configure_logs=False)
    with live_server(app) as server:
        assert httpx.get(f"{server.url}/health").status_code == 200
        response = httpx.get(f"{server.url}/metrics")
        services = app.state.services
        telemetry = services.telemetry

    assert response.status_code == 404
    assert isinstance(telemetry.metrics, NoopMetrics)
    assert not any(isinstance(obj, PrometheusMetrics) for obj in vars(services).values())
    assert "/metrics" not in {getattr(route, "path", None) for route in app.routes}
    edge = edge_middleware(app)
    assert edge._metrics is NoopMetrics().http  # one shared no-op: nothing per request
    assert isinstance(edge._tracing, NoopTracing)


def edge_middleware(app: FastAPI) -> EdgeMiddleware:
    layer: object = app.middleware_stack
    while not isinstance(layer, EdgeMiddleware):
        layer = layer.app  # type: ignore[attr-defined]
    return layer
