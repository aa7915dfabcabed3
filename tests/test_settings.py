from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from oneflow_ai.settings import (
    DEFAULT_JWT_SECRET,
    Environment,
    Settings,
    SettingsError,
    load_settings,
)


def test_defaults_are_the_embedded_development_profile(
    make_settings: Callable[..., Settings],
) -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.environment is Environment.DEVELOPMENT
    assert settings.uses_embedded_database
    home = Path(os.environ["ONEFLOW_HOME"])  # tests/conftest.py: never the user's own folder
    assert settings.effective_database_url == f"sqlite+aiosqlite:///{home / 'oneflow.db'}"
    assert settings.redis_url is None
    assert settings.database_pool_size == 10
    assert settings.upstream_connect_timeout == 10.0
    assert settings.upstream_read_timeout == 30.0
    assert settings.max_request_size == 10 * 1024 * 1024


def test_the_embedded_database_is_one_file_per_user_wherever_a_command_runs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Not relative to the current folder: the platform's user data folder, ONEFLOW_HOME
    over it, DATABASE_URL over both."""
    monkeypatch.delenv("ONEFLOW_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "me"))
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    default = Settings(_env_file=None).embedded_database_path  # type: ignore[call-arg]
    if sys.platform == "darwin":
        assert default == tmp_path / "me/Library/Application Support/oneflow/oneflow.db"
    elif sys.platform != "win32":
        assert default == tmp_path / "me/.local/share/oneflow/oneflow.db"
        monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
        xdg = Settings(_env_file=None).embedded_database_path  # type: ignore[call-arg]
        assert xdg == tmp_path / "data/oneflow/oneflow.db"
    assert default.is_absolute()

    monkeypatch.setenv("ONEFLOW_HOME", "relative/home")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.embedded_database_path == tmp_path / "relative/home/oneflow.db"
    assert settings.effective_database_url == (
        f"sqlite+aiosqlite:///{tmp_path / 'relative/home/oneflow.db'}"
    )
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@db/oneflow")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.effective_database_url == "postgresql+asyncpg://u@db/oneflow"
    assert not (tmp_path / "var").exists() and not (tmp_path / "me").exists()  # nothing made


def test_provider_base_urls_follow_each_sdk_convention() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.provider("openai").base_url == "https://api.openai.com/v1"
    assert settings.provider("anthropic").base_url == "https://api.anthropic.com"
    assert settings.provider("stability").base_url == "https://api.stability.ai"
    assert settings.provider("elevenlabs").base_url == "https://api.elevenlabs.io"


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVIRONMENT", "staging")
    monkeypatch.setenv("DATABASE_URL", "postgresql://user:pw@db:5432/oneflow")
    monkeypatch.setenv("REDIS_URL", "redis://cache:6379/0")
    monkeypatch.setenv("LOG_LEVEL", "warning")
    monkeypatch.setenv("ENABLE_TRACING", "true")
    monkeypatch.setenv("DATABASE_POOL_SIZE", "30")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-123456789")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9100/openai/v1/")
    settings = load_settings(_env_file=None)
    assert settings.environment is Environment.STAGING
    assert settings.database_url == "postgresql+asyncpg://user:pw@db:5432/oneflow"
    assert settings.redis_url == "redis://cache:6379/0"
    assert settings.log_level == "WARNING"
    assert settings.enable_tracing is True
    assert settings.database_pool_size == 30
    openai = settings.provider("openai")
    assert openai.configured
    assert openai.base_url == "http://127.0.0.1:9100/openai/v1"
    assert "sk-test-123456789" not in repr(settings)


def test_dotenv_file_is_read(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = tmp_path / ".env"
    env.write_text("LOG_LEVEL=ERROR\nRATE_LIMIT_IGNORED=1\nDATABASE_POOL_SIZE=7\n")
    settings = load_settings(_env_file=str(env))
    assert settings.log_level == "ERROR"
    assert settings.database_pool_size == 7


@pytest.mark.parametrize(
    ("variable", "value", "fragment"),
    [
        ("DATABASE_URL", "nonsense", "invalid setting DATABASE_URL: unsupported database URL"),
        ("DATABASE_URL", "mysql://x@y/z", "invalid setting DATABASE_URL"),
        ("REDIS_URL", "localhost:6379", "invalid setting REDIS_URL"),
        ("LOG_LEVEL", "LOUD", "invalid setting LOG_LEVEL"),
        ("ENVIRONMENT", "prod", "invalid setting ENVIRONMENT"),
        ("DATABASE_POOL_SIZE", "0", "invalid setting DATABASE_POOL_SIZE"),
        ("OPENAI_BASE_URL", "api.openai.com", "invalid setting OPENAI_BASE_URL"),
    ],
)
def test_a_bad_setting_is_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, fragment: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as caught:
        load_settings(_env_file=None)
    message = str(caught.value)
    assert fragment in message
    assert "\n" not in message


def test_database_url_password_is_not_echoed_in_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "mysql://admin:hunter2secret@db/x")
    with pytest.raises(SettingsError) as caught:
        load_settings(_env_file=None)
    assert "hunter2secret" not in str(caught.value)


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [
        ({}, "JWT_SECRET"),
        ({"jwt_secret": DEFAULT_JWT_SECRET}, "JWT_SECRET"),
        ({"jwt_secret": "short"}, "JWT_SECRET"),
        ({"jwt_secret": "x" * 40}, "ONEFLOW_MASTER_KEY"),
        (
            {"jwt_secret": "x" * 40, "oneflow_master_key": "sk-oneflow-dev-master-key"},
            "ONEFLOW_MASTER_KEY",
        ),
    ],
)
def test_production_refuses_default_or_missing_secrets(
    overrides: dict[str, str], variable: str
) -> None:
    with pytest.raises(SettingsError, match=f"invalid setting {variable}"):
        load_settings(_env_file=None, environment="production", **overrides)


def test_production_starts_with_its_own_secrets() -> None:
    settings = load_settings(
        _env_file=None,
        environment="production",
        jwt_secret="j" * 48,
        oneflow_master_key="sk-prod-" + "m" * 40,
    )
    assert settings.is_production
    assert settings.json_logs
    assert not settings.use_fake_providers


def test_fake_providers_only_in_development_without_keys() -> None:
    assert Settings(_env_file=None).use_fake_providers  # type: ignore[call-arg]
    assert not Settings(_env_file=None, openai_api_key="sk-real-key-123").use_fake_providers  # type: ignore[call-arg]
    assert not Settings(_env_file=None, environment="staging").use_fake_providers  # type: ignore[call-arg]
    with pytest.raises(SettingsError, match="FAKE_PROVIDERS"):
        load_settings(
            _env_file=None,
            environment="production",
            jwt_secret="j" * 48,
            oneflow_master_key="sk-prod-" + "m" * 40,
            fake_providers="on",
        )


def test_secret_values_lists_every_configured_secret() -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, anthropic_api_key="sk-ant-abcdefgh", elevenlabs_api_key="el-1234567890"
    )
    values = settings.secret_values
    assert "sk-ant-abcdefgh" in values
    assert "el-1234567890" in values
    assert settings.oneflow_master_key.get_secret_value() in values


def test_a_malformed_catalog_stops_start_up_naming_the_entry(tmp_path) -> None:
    override = tmp_path / "prices.yaml"
    override.write_text("models:\n  gpt-4o:\n    pricing:\n      input_per_mtok: 2.5\n")
    with pytest.raises(SettingsError) as caught:
        load_settings(_env_file=None, catalog_path=str(override))
    message = str(caught.value)
    assert message.startswith("invalid setting CATALOG_PATH: catalog entry 'gpt-4o'")
    assert "pricing.input_per_mtok" in message
    assert "\n" not in message


def test_a_catalog_override_is_accepted(tmp_path) -> None:
    override = tmp_path / "prices.yaml"
    override.write_text('models:\n  gpt-4o:\n    pricing:\n      input_per_mtok: "2.00"\n')
    settings = load_settings(_env_file=None, catalog_path=str(override))
    assert settings.catalog_path == override
