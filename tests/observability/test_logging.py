"""Secrets never reach a log line: by key, by shape, by value, in our logs and the stdlib's."""

from __future__ import annotations

import io
import logging
from collections.abc import Callable

import httpx
import orjson
import pytest
import structlog
from fastapi import Request

from oneflow_ai.app import create_app
from oneflow_ai.observability.logging import REDACTED, Redactor, configure_logging, info_line
from oneflow_ai.settings import Settings
from tests.support.server import live_server

OPENAI_KEY = "sk-proj-Abc123def456ghi789jkl012mno345"
ANTHROPIC_KEY = "sk-ant-api03-ZYXwvu987654321abcdefghijk"
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1c2VyLTEiLCJleHAiOjE5MDAwMDAwMDB9."
    "c2lnbmF0dXJlLWJ5dGVzLWhlcmUtMTIzNDU2"
)
OPAQUE_SECRET = "opaque-provider-secret-42-xyzzy"  # no recognisable shape: redacted by value
MASTER = "sk-oneflow-test-master-key-0123456789"


def test_redactor_scrubs_by_key_shape_and_value() -> None:
    redactor = Redactor([OPAQUE_SECRET])
    event = redactor(
        None,
        "info",
        {
            "event": f"calling upstream with {OPENAI_KEY}",
            "authorization": f"Bearer {JWT}",
            "headers": {"X-API-Key": ANTHROPIC_KEY, "accept": "application/json"},
            "body": {"messages": [{"content": f"my key is {OPAQUE_SECRET}"}], "api_key": "x"},
            "note": f"token {JWT} and Bearer abc.def",
            "count": 3,
        },
    )
    text = orjson.dumps(event).decode()
    for secret in (OPENAI_KEY, ANTHROPIC_KEY, JWT, OPAQUE_SECRET, "abc.def"):
        assert secret not in text
    assert event["headers"]["accept"] == "application/json"
    assert event["headers"]["X-API-Key"] == REDACTED
    assert event["count"] == 3
    assert event["note"].startswith("token [REDACTED] and Bearer [REDACTED]")


def test_stdlib_logs_go_through_the_same_redaction() -> None:
    stream = io.StringIO()
    configure_logging(level="DEBUG", json=True, secret_values=[OPAQUE_SECRET], stream=stream)
    logging.getLogger("somelib").warning("connecting with %s and %s", OPENAI_KEY, OPAQUE_SECRET)
    structlog.get_logger("x").info("hello", api_key=OPENAI_KEY)
    output = stream.getvalue()
    assert OPENAI_KEY not in output and OPAQUE_SECRET not in output
    lines = [orjson.loads(line) for line in output.splitlines()]
    assert lines[0]["logger"] == "somelib"
    assert lines[1]["api_key"] == REDACTED


def test_no_secret_in_any_log_line_of_a_request(
    make_settings: Callable[..., Settings], capfd: pytest.CaptureFixture[str]
) -> None:
    settings = make_settings(
        log_level="DEBUG",
        oneflow_master_key=MASTER,
        openai_api_key=OPAQUE_SECRET,
    )
    app = create_app(settings)

    @app.post("/_test/echo")
    async def careless(request: Request) -> dict[str, str]:
        # A careless handler that logs everything it got, then fails with the key in the message.
        body = await request.json()
        structlog.get_logger("careless").info(
            "got", headers=dict(request.headers), body=body, query=str(request.url)
        )
        logging.getLogger("careless.stdlib").info("headers were %s", dict(request.headers))
        raise RuntimeError(f"failed for {request.headers['authorization']} / {body['api_key']}")

    with live_server(app) as server:
        response = httpx.post(
            f"{server.url}/_test/echo?key={OPENAI_KEY}",
            headers={
                "Authorization": f"Bearer {MASTER}",
                "X-API-Key": ANTHROPIC_KEY,
                "xi-api-key": OPAQUE_SECRET,
                "Cookie": f"session={JWT}",
            },
            json={"api_key": OPENAI_KEY, "password": "hunter2-hunter2", "jwt": JWT},
        )
    assert response.status_code == 500
    assert response.json()["error"]["type"] == "server_error"
    captured = capfd.readouterr()
    output = captured.out + captured.err
    assert '"event":"got"' in output and "unhandled_error" in output
    assert '"event":"request"' in output
    for secret in (OPENAI_KEY, ANTHROPIC_KEY, JWT, OPAQUE_SECRET, MASTER, "hunter2-hunter2"):
        assert secret not in output, f"{secret[:12]}... leaked into the logs"
        assert secret not in response.text


def test_one_access_line_per_request(
    make_settings: Callable[..., Settings], capfd: pytest.CaptureFixture[str]
) -> None:
    app = create_app(make_settings())
    with live_server(app) as server:
        response = httpx.get(f"{server.url}/health", headers={"X-Request-ID": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"
    lines = [
        orjson.loads(line)
        for line in capfd.readouterr().err.splitlines()
        if line.startswith("{") and '"event":"request"' in line
    ]
    assert len(lines) == 1
    line = lines[0]
    assert line["method"] == "GET"
    assert line["path"] == "/health"
    assert line["status"] == 200
    assert line["client_request_id"] == "abc-123"
    assert line["request_id"] == response.headers["x-oneflow-request-id"] != "abc-123"
    assert isinstance(line["duration_ms"], float)
    assert line["level"] == "info"


def _without_timestamp(output: str) -> list[dict[str, object]]:
    lines = [orjson.loads(line) for line in output.splitlines()]
    for line in lines:
        assert line.pop("timestamp")
    return lines


@pytest.mark.parametrize("json", [True, False])
def test_an_info_line_is_the_line_structlog_writes(json: bool) -> None:
    """`info_line` skips structlog's bound logger, not a processor: same keys in the same
    order, same values, same redaction, the context's ids included."""
    stream = io.StringIO()
    configure_logging(level="INFO", json=json, secret_values=[OPAQUE_SECRET], stream=stream)
    structlog.contextvars.bind_contextvars(request_id="r-1", client_request_id="c-1")
    try:
        for _ in range(2):  # the second time, the redactor knows the clean values
            fields = {
                "method": "POST",
                "path": f"/v1/chat/{OPAQUE_SECRET}",
                "status": 200,
                "duration_ms": 1.25,
                "note": f"Bearer {JWT}",
                "api_key": "x",
                "body": {"key": OPENAI_KEY, "n": [1, 2]},
                "request_id": "the caller's own",
            }
            structlog.get_logger("oneflow.access").info("request", **fields)
            info_line("oneflow.access")("request", dict(fields))
    finally:
        structlog.contextvars.clear_contextvars()
    output = stream.getvalue()
    for secret in (OPAQUE_SECRET, JWT, OPENAI_KEY):
        assert secret not in output
    if json:
        lines = _without_timestamp(output)
        assert len(lines) == 4 and all(line == lines[0] for line in lines)
        assert list(lines[0]) == [*fields, "event", "client_request_id", "level"]
    else:
        lines = [line.split(" ", 1)[1] for line in output.splitlines()]  # after the time
        assert len(lines) == 4 and all(line == lines[0] for line in lines)


def test_info_lines_follow_structlogs_configuration() -> None:
    """Below the configured level nothing is written; a test capturing logs captures the
    line (and nothing is written)."""
    stream = io.StringIO()
    configure_logging(level="WARNING", json=True, stream=stream)
    info_line("oneflow.access")("request", {"status": 200})
    assert stream.getvalue() == ""
    configure_logging(level="INFO", json=True, stream=stream)
    with structlog.testing.capture_logs() as captured:
        info_line("oneflow.access")("request", {"status": 200})
    assert captured == [{"event": "request", "status": 200, "log_level": "info"}]
    assert stream.getvalue() == ""
    info_line("oneflow.access")("request", {"status": 201})
    assert orjson.loads(stream.getvalue())["status"] == 201
