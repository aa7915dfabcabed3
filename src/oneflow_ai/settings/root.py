"""`Settings`: one pydantic-settings root, read from the environment and an optional `.env`,
combining the groups of `settings/groups.py`.

Variable names are the product's documented ones (`DATABASE_URL`, `OPENAI_API_KEY`, ...); the
root offers per-concern views (`settings.provider("openai")`). Secrets are `SecretStr` so they
never print. Profile rules live in one validator: `production` refuses default secrets.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from oneflow_ai.settings.groups import (
    CacheFields,
    GatewayFields,
    IdentityFields,
    LedgerFields,
    RateLimitFields,
    RoutingFields,
    RuntimeFields,
    UpstreamFields,
)
from oneflow_ai.settings.values import (
    DEFAULT_JWT_SECRET,
    DEFAULT_MASTER_KEY,
    EMBEDDED_DATABASE_NAME,
    PROVIDERS,
    Environment,
    ProviderSettings,
    SettingsError,
    user_data_dir,
)

__all__ = ["Settings", "load_settings"]


class Settings(
    RuntimeFields,
    UpstreamFields,
    RoutingFields,
    GatewayFields,
    LedgerFields,
    IdentityFields,
    CacheFields,
    RateLimitFields,
    BaseSettings,
):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        validate_default=True,
    )

    @field_validator(
        "database_url",
        "redis_url",
        "metrics_token",
        "oneflow_instance_id",
        *(f"{p}_{kind}_timeout" for p in PROVIDERS for kind in ("connect", "read")),
        mode="before",
    )
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @model_validator(mode="after")
    def _profile_rules(self) -> Settings:
        if self.environment is Environment.PRODUCTION:
            secret = self.jwt_secret.get_secret_value()
            if not secret or secret == DEFAULT_JWT_SECRET or len(secret) < 32:
                raise ValueError(
                    "JWT_SECRET: production needs a secret of its own (32+ characters), "
                    "not the development default"
                )
            master = self.oneflow_master_key.get_secret_value()
            if not master or master == DEFAULT_MASTER_KEY or len(master) < 24:
                raise ValueError(
                    "ONEFLOW_MASTER_KEY: production needs a key of its own (24+ characters), "
                    "not the development default"
                )
            for previous in self.jwt_previous_secrets:
                if len(previous.get_secret_value()) < 32:
                    raise ValueError("JWT_PREVIOUS_SECRETS: every secret needs 32+ characters")
            if self.api_key_pepper is not None and len(self.api_key_pepper.get_secret_value()) < 32:
                raise ValueError("API_KEY_PEPPER: production needs 32+ characters")
            if self.fake_providers == "on":
                raise ValueError("FAKE_PROVIDERS: the fake providers are never used in production")
        return self

    # ---- derived views -------------------------------------------------------------------

    @property
    def is_production(self) -> bool:
        return self.environment is Environment.PRODUCTION

    @property
    def embedded_database_path(self) -> Path:
        """Where the embedded SQLite database lives: `$ONEFLOW_HOME/oneflow.db`, by default in
        the user's data folder (the same file whichever folder a command runs from)."""
        home = self.oneflow_home if self.oneflow_home is not None else user_data_dir()
        return (home / EMBEDDED_DATABASE_NAME).absolute()

    @property
    def effective_database_url(self) -> str:
        """The configured database, or the embedded SQLite file (`embedded_database_path`)."""
        if self.database_url is not None:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.embedded_database_path}"

    @property
    def uses_embedded_database(self) -> bool:
        return self.database_url is None

    @property
    def json_logs(self) -> bool:
        if self.log_format == "auto":
            return self.environment is not Environment.DEVELOPMENT
        return self.log_format == "json"

    def provider(self, name: str) -> ProviderSettings:
        if name not in PROVIDERS:
            raise KeyError(name)
        key: SecretStr | None = getattr(self, f"{name}_api_key")
        connect: float | None = getattr(self, f"{name}_connect_timeout")
        read: float | None = getattr(self, f"{name}_read_timeout")
        return ProviderSettings(
            name=name,
            api_key=key,
            base_url=getattr(self, f"{name}_base_url"),
            connect_timeout=connect or self.upstream_connect_timeout,
            read_timeout=read or self.upstream_read_timeout,
            max_connections=self.upstream_max_connections,
        )

    @property
    def use_fake_providers(self) -> bool:
        """Whether upstream calls go to the built-in fake providers."""
        if self.fake_providers == "on":
            return True
        if self.fake_providers == "off" or self.environment is not Environment.DEVELOPMENT:
            return False
        return not any(self.provider(p).configured for p in PROVIDERS)

    @property
    def secret_values(self) -> tuple[str, ...]:
        """Every configured secret, so log redaction can scrub them wherever they appear."""
        values = [self.jwt_secret.get_secret_value(), self.oneflow_master_key.get_secret_value()]
        if self.metrics_token is not None:
            values.append(self.metrics_token.get_secret_value())
        values.extend(previous.get_secret_value() for previous in self.jwt_previous_secrets)
        if self.api_key_pepper is not None:
            values.append(self.api_key_pepper.get_secret_value())
        for name in PROVIDERS:
            key = self.provider(name).api_key
            if key is not None:
                values.append(key.get_secret_value())
        values.extend(key.get_secret_value() for key in self.provider_api_keys.values())
        return tuple(v for v in values if len(v) >= 8)


def _variable_name(loc: tuple[int | str, ...], message: str) -> str:
    if loc:
        return str(loc[0]).upper()
    head = message.split(":", 1)[0]
    if head.isupper() and " " not in head:
        return head
    return "settings"


def load_settings(**overrides: object) -> Settings:
    """Build the settings, turning validation failures into one `SettingsError` line."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
        name = _variable_name(tuple(first.get("loc", ())), message)
        if message.startswith(f"{name}: "):
            message = message[len(name) + 2 :]
        extra = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
        raise SettingsError(f"invalid setting {name}: {message}{extra}") from None
