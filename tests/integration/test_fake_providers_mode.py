"""`make run` in development with no provider key: the gateway serves through the fakes it
starts itself, says so in its log and in a response header; production never does."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import openai
import pytest
from structlog.testing import capture_logs

from oneflow_ai.app import create_app
from oneflow_ai.settings import DEFAULT_MASTER_KEY, Settings, SettingsError, load_settings
from tests.support.server import live_server


def test_development_without_keys_serves_through_the_built_in_fakes(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings()
    assert settings.use_fake_providers
    app = create_app(settings, configure_logs=False)
    with capture_logs() as logs, live_server(app) as server:
        client = openai.OpenAI(
            base_url=f"{server.url}/v1", api_key=DEFAULT_MASTER_KEY, max_retries=0
        )
        raw = client.chat.completions.with_raw_response.create(
            model="claude-3-sonnet", messages=[{"role": "user", "content": "hello"}]
        )
        assert raw.parse().choices[0].message.content
        assert raw.headers["x-oneflow-fake-providers"] == "true"
        assert raw.headers["x-oneflow-provider"] == "anthropic"
        fakes = app.state.services.fake_providers
        assert fakes is not None and fakes.call_count("anthropic") == 1
        assert set(app.state.services.registry.names) == {
            "openai",
            "anthropic",
            "stability",
            "elevenlabs",
        }
        assert client.models.list().data  # every provider's models are offered
    warnings = [e for e in logs if e["log_level"] == "warning" and "FAKE PROVIDERS" in e["event"]]
    assert len(warnings) == 1 and warnings[0]["fake_providers_url"].startswith("http://127.0.0.1:")


def test_a_configured_key_turns_the_fakes_off(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(openai_api_key="sk-real")
    assert not settings.use_fake_providers
    app = create_app(settings, configure_logs=False)
    with live_server(app) as server:
        assert app.state.services.fake_providers is None
        assert app.state.services.registry.names == ("openai",)
        assert "x-oneflow-fake-providers" not in httpx.get(f"{server.url}/health").headers


def test_production_never_uses_the_fakes() -> None:
    secrets = {"jwt_secret": "j" * 40, "oneflow_master_key": "m" * 30}
    production = load_settings(environment="production", **secrets)
    assert not production.use_fake_providers  # no key, still no fakes
    with pytest.raises(SettingsError, match="FAKE_PROVIDERS"):
        load_settings(environment="production", fake_providers="on", **secrets)
