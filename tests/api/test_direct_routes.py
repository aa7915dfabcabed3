"""The model endpoints' direct path answers as the FastAPI routes it stands in for."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from oneflow_ai.api.direct_routes import MODEL_ENDPOINTS, DirectRoutes
from oneflow_ai.app import create_app
from oneflow_ai.settings import DEFAULT_MASTER_KEY, Settings
from tests.support.server import live_server


def test_direct_endpoints_keep_routes_errors_and_labels(
    make_settings: Callable[..., Settings],
) -> None:
    app = create_app(make_settings(enable_metrics=True), configure_logs=False)
    with live_server(app) as server:
        # Errors leave in each endpoint's dialect, before and after authentication.
        anonymous = httpx.post(f"{server.url}/v1/chat/completions", json={"model": "gpt-4o"})
        assert anonymous.status_code == 401
        assert anonymous.json()["error"]["code"] == "invalid_api_key"  # OpenAI's shape
        anthropic = httpx.post(f"{server.url}/v1/messages", json={})
        assert anthropic.status_code == 401
        assert anthropic.json()["type"] == "error"
        assert anthropic.json()["error"]["type"] == "authentication_error"
        bad = httpx.post(
            f"{server.url}/v1/chat/completions",
            content=b"{not json",
            headers={"Authorization": f"Bearer {DEFAULT_MASTER_KEY}"},
        )
        assert bad.status_code == 400
        assert bad.json()["error"]["type"] == "invalid_request_error"

        # Other methods still reach FastAPI's routing, and the document still lists both.
        assert httpx.get(f"{server.url}/v1/chat/completions").status_code == 405
        paths = httpx.get(f"{server.url}/openapi.json").json()["paths"]
        assert "post" in paths["/v1/chat/completions"]
        assert "post" in paths["/v1/messages"]

        # The request metrics carry the route template, as for a FastAPI route.
        metrics = httpx.get(f"{server.url}/metrics").text
    assert 'route="/v1/chat/completions",status="401"' in metrics
    assert 'route="/v1/messages",status="401"' in metrics


def test_the_model_endpoints_table_is_what_is_served_and_documented(
    make_settings: Callable[..., Settings],
) -> None:
    """One table: each entry is dispatched by DirectRoutes and is an operation of the document
    with its summary and its body's schema; nothing else is dispatched directly."""
    app = create_app(make_settings(), configure_logs=False)
    paths = app.openapi()["paths"]
    for entry in MODEL_ENDPOINTS:
        operation = paths[entry.path][entry.method.lower()]
        assert operation["summary"] == entry.summary
        body = operation["requestBody"]["content"]["application/json"]["schema"]
        assert body == {"$ref": f"#/components/schemas/{entry.body.name}"}
    served = DirectRoutes(app).served
    assert served == {(entry.method, entry.path) for entry in MODEL_ENDPOINTS}
