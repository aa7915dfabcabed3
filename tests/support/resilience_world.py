"""A running gateway in front of the fake providers, tuned for fault injection.

`resilient_gateway(fakes, tmp_path, **settings)` serves `create_app` on a live port with short
timeouts, a small circuit window and a short cool-down (override any setting per test), and
`Resilient` wraps what a test looks at: the answer's `X-OneFlow-*` headers, the circuits as the
admin endpoint, `/ready` and `/metrics` show them, and the fakes' call log.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
from fastapi import FastAPI
from opentelemetry.sdk.trace.export import SpanExporter

from oneflow_ai.app import create_app
from oneflow_ai.observability.telemetry import Telemetry
from oneflow_ai.settings import DEFAULT_MASTER_KEY, Settings
from oneflow_fakes import FakeProviders
from tests.support.databases import migrated_sqlite_url
from tests.support.server import live_server

__all__ = [
    "DEFAULTS",
    "HAIKU",
    "KEY",
    "MIN_CALLS",
    "Answer",
    "Resilient",
    "resilient_gateway",
    "wait_until",
]

KEY = DEFAULT_MASTER_KEY
HAIKU = "claude-3-haiku-20240307"
#: Calls in a circuit's window before it may open.
MIN_CALLS = 4
#: Seconds an open circuit waits before a probe may pass.
COOLDOWN = 3.0

#: What every fault-injection gateway runs with unless a test says otherwise.
DEFAULTS: dict[str, object] = {
    "upstream_read_timeout": 1.0,
    "upstream_max_retries": 0,
    "circuit_min_calls": MIN_CALLS,
    "circuit_window_seconds": 60.0,
    "circuit_cooldown_seconds": COOLDOWN,
    "circuit_cache_ttl": 0.05,
}


@dataclass(frozen=True)
class Answer:
    """A `/api/v1/request` answer: which model and provider served it, after how many
    fallbacks."""

    status: int
    model: str
    provider: str
    fallbacks: int
    body: dict[str, object]

    @classmethod
    def of(cls, response: httpx.Response) -> Answer:
        assert response.status_code == 200, response.text
        headers = response.headers
        return cls(
            response.status_code,
            headers["x-oneflow-model"],
            headers["x-oneflow-provider"],
            int(headers["x-oneflow-fallbacks"]),
            response.json(),
        )


class Resilient:
    """One gateway (`url`) and the fakes behind it."""

    def __init__(self, url: str, fakes: FakeProviders, app: FastAPI | None = None) -> None:
        self.url = url
        self.fakes = fakes
        self.app = app
        self.http = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {KEY}"}, timeout=30
        )

    def close(self) -> None:
        self.http.close()

    def request(self, strategy: str = "cost_optimized", **fields: object) -> Answer:
        body = {"prompt": "Say hello", "strategy": strategy, "max_tokens": 40, **fields}
        return Answer.of(self.http.post("/api/v1/request", json=body))

    def primary(self, strategy: str, **fields: object) -> str:
        """The model the router would pick now for `request(strategy)`'s prompt and answer
        length (`/api/v1/estimate`: no provider is called)."""
        body = {"prompt": "Say hello", "strategy": strategy, "output_tokens": 40, **fields}
        response = self.http.post("/api/v1/estimate", json=body)
        assert response.status_code == 200, response.text
        primary: str = response.json()["routing"]["primary_model"]
        return primary

    def openai(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=KEY, max_retries=0)

    # ---- the circuits, as each view shows them -------------------------------------------

    def circuits(self) -> dict[str, dict[str, object]]:
        """The admin endpoint's circuits by key (`anthropic`, `anthropic/<model>`)."""
        response = self.http.get("/api/v1/admin/circuits")
        assert response.status_code == 200, response.text
        return {c["key"]: c for c in response.json()["circuits"]}

    def state(self, key: str) -> str | None:
        circuit = self.circuits().get(key)
        return None if circuit is None else str(circuit["state"])

    def ready_circuits(self) -> dict[str, list[str]]:
        """This replica's own view of its open and half-open circuits (`/ready`)."""
        response = self.http.get("/ready")
        assert response.status_code == 200, response.text
        circuits: dict[str, list[str]] = response.json()["circuits"]
        return circuits

    def breaker_gauge(self, provider: str) -> float:
        """`oneflow_circuit_breaker_state{provider=...}` from `/metrics`."""
        text = self.http.get("/metrics").text
        prefix = f'oneflow_circuit_breaker_state{{provider="{provider}"}} '
        for line in text.splitlines():
            if line.startswith(prefix):
                return float(line[len(prefix) :])
        raise AssertionError(f"no breaker gauge for {provider}")


def wait_until(condition: Callable[[], bool], timeout: float = 15.0, step: float = 0.02) -> None:
    """Poll `condition` until it holds (fails after `timeout` seconds)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition did not come true in time"
        time.sleep(step)


def gateway_settings(fakes: FakeProviders, database_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": database_url,
        "log_format": "json",
        "log_requests": False,
        "fake_providers": "off",
        **DEFAULTS,
        **fakes.settings_overrides(),
        **overrides,
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg, arg-type]


@contextmanager
def resilient_gateway(
    fakes: FakeProviders,
    tmp_path: Path,
    *,
    span_exporter: SpanExporter | None = None,
    **overrides: object,
) -> Iterator[Resilient]:
    """A live gateway in front of `fakes` (settings: `DEFAULTS`, then `overrides`); with
    `span_exporter`, tracing is on and its spans go there."""
    database_url = migrated_sqlite_url(tmp_path / "oneflow.db")
    settings = gateway_settings(
        fakes, database_url, **({"enable_tracing": True} if span_exporter else {}), **overrides
    )
    telemetry = (
        Telemetry.from_settings(settings, span_exporter=span_exporter) if span_exporter else None
    )
    app = create_app(settings, configure_logs=False, telemetry=telemetry)
    with live_server(app) as server:
        gateway = Resilient(server.url, fakes, app)
        try:
            yield gateway
        finally:
            gateway.close()
