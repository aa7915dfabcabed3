"""Request ids, security headers, body-size limits and errors in the caller's dialect."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator

import httpx
import pytest
from fastapi import Request

from oneflow_ai.app import create_app
from oneflow_ai.settings import Settings
from tests.support.server import LiveServer, live_server

SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "x-xss-protection": "1; mode=block",
    "strict-transport-security": "max-age=31536000; includeSubDomains",
    "referrer-policy": "strict-origin-when-cross-origin",
}


@pytest.fixture
def server(make_settings: Callable[..., Settings]) -> Iterator[LiveServer]:
    app = create_app(make_settings(max_request_size=64 * 1024), configure_logs=False)

    @app.post("/_test/body")
    async def body(request: Request) -> dict[str, int]:
        return {"size": len(await request.body())}

    @app.get("/_test/boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    @app.post("/v1/messages/_test_boom")
    async def anthropic_boom() -> None:
        raise RuntimeError("boom")

    with live_server(app) as running:
        yield running


def test_request_id_is_generated_and_the_callers_echoed(server: LiveServer) -> None:
    plain = httpx.get(f"{server.url}/health").headers
    assert len(plain["x-request-id"]) == 32
    assert plain["x-oneflow-request-id"] == plain["x-request-id"]
    # The caller's id is echoed; the gateway's own is new every time, even for a reused one.
    first, second = (
        httpx.get(f"{server.url}/health", headers={"X-Request-ID": "req-42"}).headers
        for _ in range(2)
    )
    assert first["x-request-id"] == second["x-request-id"] == "req-42"
    assert len({first["x-oneflow-request-id"], second["x-oneflow-request-id"], "req-42"}) == 3
    # An unsafe id is replaced rather than echoed.
    unsafe = httpx.get(f"{server.url}/health", headers={"X-Request-ID": "a b<script>"})
    assert unsafe.headers["x-request-id"] != "a b<script>"


@pytest.mark.parametrize("path", ["/health", "/ready", "/docs", "/nope"])
def test_security_headers_on_every_response(server: LiveServer, path: str) -> None:
    response = httpx.get(f"{server.url}{path}")
    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name] == value
    csp = response.headers["content-security-policy"]
    if path == "/docs":
        assert "https://cdn.jsdelivr.net" in csp  # Swagger UI's assets load
    else:
        assert csp.startswith("default-src 'none'")


def test_body_within_the_limit_passes(server: LiveServer) -> None:
    response = httpx.post(f"{server.url}/_test/body", content=b"x" * 1000)
    assert response.json() == {"size": 1000}


def test_declared_oversize_body_is_413_before_it_is_read(server: LiveServer) -> None:
    # Declare a huge body but send none of it: the answer must come from the header alone.
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(
            b"POST /_test/body HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 20971520\r\n\r\n"
        )
        received = b""
        while chunk := sock.recv(65536):  # the server closes the connection after a 413
            received += chunk
    answer = received.decode()
    assert answer.startswith("HTTP/1.1 413")
    assert "request_too_large" in answer


def test_chunked_oversize_body_is_413(server: LiveServer) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(100):
            yield b"y" * 4096

    response = httpx.post(f"{server.url}/_test/body", content=chunks())
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


def test_unexpected_error_is_a_500_in_the_openai_dialect(server: LiveServer) -> None:
    response = httpx.get(f"{server.url}/_test/boom")
    assert response.status_code == 500
    error = response.json()["error"]
    assert error["type"] == "server_error"
    assert "boom" not in error["message"]  # internals stay in the logs
    assert response.headers["x-request-id"]


def test_unexpected_error_is_a_500_in_the_anthropic_dialect(server: LiveServer) -> None:
    response = httpx.post(f"{server.url}/v1/messages/_test_boom")
    assert response.status_code == 500
    assert response.json() == {
        "type": "error",
        "error": {"type": "api_error", "message": response.json()["error"]["message"]},
    }


def test_unknown_route_is_a_404_in_the_dialect(server: LiveServer) -> None:
    response = httpx.get(f"{server.url}/v1/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_cors_from_configuration(make_settings: Callable[..., Settings]) -> None:
    app = create_app(make_settings(cors_origins=["https://app.example"]), configure_logs=False)
    with live_server(app) as running:
        preflight = httpx.options(
            f"{running.url}/health",
            headers={"Origin": "https://app.example", "Access-Control-Request-Method": "GET"},
        )
        other = httpx.get(f"{running.url}/health", headers={"Origin": "https://evil.example"})
        simple = httpx.get(f"{running.url}/health", headers={"Origin": "https://app.example"})
    assert preflight.headers["access-control-allow-origin"] == "https://app.example"
    exposed = {
        name.strip().lower() for name in simple.headers["access-control-expose-headers"].split(",")
    }
    # A page reading what answered its model call and what it cost can see those headers.
    assert {"x-oneflow-route", "x-oneflow-credits", "x-oneflow-model"} <= exposed
    assert "access-control-allow-origin" not in other.headers
