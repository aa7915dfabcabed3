"""The running gateway between the official SDKs and the fake providers (real HTTP both sides).

One fake-provider server per session and one gateway per module, pointed at it; every test
starts with no fault rules, an empty call log and an empty usage record.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from oneflow_ai.app import create_app
from oneflow_ai.settings import DEFAULT_MASTER_KEY, Settings
from oneflow_fakes import FakeProviders
from tests.support.databases import migrated_sqlite_url
from tests.support.recording import RecordingSink
from tests.support.server import LiveServer, live_server

KEY = DEFAULT_MASTER_KEY
#: The gateway's read timeout here: a hung provider becomes a timeout quickly.
READ_TIMEOUT = 1.5


@dataclass
class Gateway:
    server: LiveServer
    fakes: FakeProviders
    sink: RecordingSink

    @property
    def url(self) -> str:
        return self.server.url

    def openai(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=KEY, max_retries=0)

    def anthropic(self) -> anthropic.Anthropic:
        return anthropic.Anthropic(base_url=self.url, api_key=KEY, max_retries=0)

    def post(self, path: str, body: object, **headers: str) -> httpx.Response:
        return httpx.post(
            f"{self.url}{path}",
            json=body,
            headers={"Authorization": f"Bearer {KEY}", **headers},
            timeout=30,
        )


@pytest.fixture(scope="session")
def fakes() -> Iterator[FakeProviders]:
    with FakeProviders() as server:
        yield server


@pytest.fixture(scope="module")
def _module_gateway(
    fakes: FakeProviders, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    database = Path(tmp_path_factory.mktemp("gateway")) / "oneflow.db"
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=migrated_sqlite_url(database),
        log_format="json",
        fake_providers="off",
        upstream_read_timeout=READ_TIMEOUT,
        # These tests map each provider failure to the caller's dialect: one upstream call per
        # request, and no circuit opening from one test's failures into the next test.
        upstream_max_retries=0,
        circuit_min_calls=1_000_000,
        **fakes.settings_overrides(),  # type: ignore[arg-type]
    )
    app = create_app(settings, configure_logs=False)
    with live_server(app) as server:
        sink = RecordingSink()
        app.state.services.pipeline.hooks.insert(0, sink)
        yield Gateway(server, fakes, sink)


@pytest.fixture
def gateway(_module_gateway: Gateway) -> Gateway:
    _module_gateway.fakes.reset()
    _module_gateway.sink.records.clear()
    return _module_gateway
