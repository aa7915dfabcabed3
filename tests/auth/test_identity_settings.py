"""The identity and rate-limit settings: parsing, profile rules, redaction."""

from __future__ import annotations

import pytest

from oneflow_ai.settings import SettingsError, load_settings

PROD = {"environment": "production", "jwt_secret": "j" * 48, "oneflow_master_key": "m" * 40}


def test_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JWT_PREVIOUS_SECRETS", '["old-secret-1", "old-secret-2"]')
    monkeypatch.setenv("RATE_LIMIT_PROVIDERS", '{"openai": {"requests_per_minute": 3000}}')
    monkeypatch.setenv("RATE_LIMIT_PER_MINUTE", "120")
    monkeypatch.setenv("API_KEY_PEPPER", "pepper-pepper-pepper")
    settings = load_settings(_env_file=None)
    assert [s.get_secret_value() for s in settings.jwt_previous_secrets] == [
        "old-secret-1",
        "old-secret-2",
    ]
    assert settings.rate_limit_providers == {"openai": {"requests_per_minute": 3000}}
    assert settings.rate_limit_per_minute == 120 and settings.rate_limit_per_hour == 1000
    # Every secret is known to log redaction.
    assert {"old-secret-1", "old-secret-2", "pepper-pepper-pepper"} <= set(settings.secret_values)
    assert "pepper-pepper-pepper" not in repr(settings)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ('{"acme": {"requests_per_minute": 1}}', "unknown provider"),
        ('{"openai": {"rpm": 1}}', "unknown limit"),
        ('{"openai": {"requests_per_minute": 0}}', "positive"),
    ],
)
def test_bad_provider_limits_are_one_line(
    monkeypatch: pytest.MonkeyPatch, value: str, fragment: str
) -> None:
    monkeypatch.setenv("RATE_LIMIT_PROVIDERS", value)
    with pytest.raises(SettingsError, match="invalid setting RATE_LIMIT_PROVIDERS") as caught:
        load_settings(_env_file=None)
    assert fragment in str(caught.value)


def test_production_wants_long_identity_secrets() -> None:
    load_settings(_env_file=None, **PROD, api_key_pepper="p" * 32, jwt_previous_secrets=["o" * 32])
    with pytest.raises(SettingsError, match="API_KEY_PEPPER"):
        load_settings(_env_file=None, **PROD, api_key_pepper="short")
    with pytest.raises(SettingsError, match="JWT_PREVIOUS_SECRETS"):
        load_settings(_env_file=None, **PROD, jwt_previous_secrets=["short"])
