"""Settings: one pydantic-settings root, read from the environment and an optional `.env`.

Variable names are the product's documented ones (`DATABASE_URL`, `OPENAI_API_KEY`, ...); the
root groups them into per-concern views (`settings.provider("openai")`). Secrets are `SecretStr`
so they never print. Profile rules live in one validator: `production` refuses default secrets.
"""

from __future__ import annotations

import enum
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = [
    "DEFAULT_ELEVENLABS_VOICES",
    "DEFAULT_JWT_SECRET",
    "DEFAULT_MASTER_KEY",
    "PROVIDERS",
    "CachePolicy",
    "Environment",
    "ProviderSettings",
    "SemanticPolicy",
    "Settings",
    "SettingsError",
    "load_settings",
    "user_data_dir",
]

# Known development defaults, not secrets: production refuses them.
DEFAULT_JWT_SECRET = "oneflow-development-jwt-secret-change-me"  # noqa: S105  # nosec B105
DEFAULT_MASTER_KEY = "sk-oneflow-dev-master-key"
EMBEDDED_DATABASE_NAME = "oneflow.db"

PROVIDERS = ("openai", "anthropic", "stability", "elevenlabs")
_DEFAULT_BASE_URLS = {
    # Each follows its official SDK's convention: OpenAI's includes /v1, Anthropic's does not.
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com",
    "stability": "https://api.stability.ai",
    "elevenlabs": "https://api.elevenlabs.io",
}
# ElevenLabs premade voices chosen to resemble OpenAI's voices of the same name.
DEFAULT_ELEVENLABS_VOICES: dict[str, str] = {
    "alloy": "21m00Tcm4TlvDq8ikWAM",  # Rachel
    "echo": "ErXwobaYiN019PkySvjV",  # Antoni
    "fable": "JBFqnCBsd6RMkjVDRZzb",  # George
    "onyx": "pNInz6obpgDQGcFmaJgB",  # Adam
    "nova": "EXAVITQu4vr4xnSDxMaL",  # Sarah
    "shimmer": "MF3mGyEYCl7XYWbV9V6O",  # Elli
    "ash": "TxGEqnHWrfWFTfGW9XjX",  # Josh
    "coral": "XrExE9yKIg1WjnnlVkGX",  # Matilda
    "sage": "pFZP5JQG7iQjIQuC4Bku",  # Lily
    "ballad": "onwK4e9ZLuTAKqWW03F9",  # Daniel
    "verse": "TX3LPaxmHKxFdv7VOQHJ",  # Liam
}
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class Environment(enum.StrEnum):
    DEVELOPMENT = "development"
    STAGING = "staging"
    PRODUCTION = "production"


@dataclass(frozen=True, slots=True)
class ProviderSettings:
    """What the gateway needs to reach one upstream provider."""

    name: str
    api_key: SecretStr | None
    base_url: str
    connect_timeout: float
    read_timeout: float
    max_connections: int = 1024
    query: Mapping[str, str] = field(default_factory=dict)  # sent with every request

    @property
    def configured(self) -> bool:
        return self.api_key is not None and bool(self.api_key.get_secret_value())


class SemanticPolicy(BaseModel):
    """The semantic cache of a policy (docs/cache.md#semantic-cache): the last user turn is
    embedded with ``model`` (an embedding model of the catalog, called and billed like any
    ``/v1/embeddings`` call of the caller) and a stored answer whose question is at least
    ``threshold`` similar (cosine, 0 to 1) answers it, within the same model, system prompt
    and earlier conversation."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(min_length=1)
    threshold: float = Field(default=0.95, gt=0, le=1)


class CachePolicy(BaseModel):
    """Whether and how the response cache serves a project's or a key's calls
    (``CACHE_PROJECTS`` / ``CACHE_KEYS``; docs/cache.md).

    ``shared``: the project's keys share entries (otherwise each key has its own);
    ``allow_temperature``: cache answers asked for with ``temperature > 0`` too;
    ``coalesce``: identical requests arriving while the first is still being answered wait
    for its answer instead of calling the provider too (across replicas with Redis);
    ``ttl_seconds`` and ``hit_fraction`` replace the deployment's defaults; ``semantic``
    also answers paraphrases (``SemanticPolicy``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    shared: bool = False
    allow_temperature: bool = False
    coalesce: bool = False
    ttl_seconds: int | None = Field(default=None, ge=1)
    hit_fraction: Decimal | None = Field(default=None, ge=0, le=1)
    semantic: SemanticPolicy | None = None


class SettingsError(Exception):
    """Invalid configuration; `str()` is one line naming the variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        validate_default=True,
    )

    environment: Environment = Environment.DEVELOPMENT
    log_level: str = "INFO"
    log_format: Literal["auto", "json", "console"] = "auto"
    log_requests: bool = True

    database_url: str | None = None
    # The folder of the embedded SQLite database when DATABASE_URL is unset (default: the
    # platform's per-user data folder, see user_data_dir()).
    oneflow_home: Path | None = None
    database_pool_size: int = Field(default=10, ge=1, le=500)
    database_echo: bool = False
    # PostgreSQL: seconds to open a connection, and to run one statement, before giving up.
    database_connect_timeout: float = Field(default=2.0, gt=0, le=60)
    database_command_timeout: float = Field(default=10.0, gt=0, le=3600)
    redis_url: str | None = None
    redis_key_prefix: str = "oneflow:"

    enable_metrics: bool = True
    enable_tracing: bool = False
    # When set, GET /metrics wants `Authorization: Bearer <token>`; unset, it is open (scraped
    # on the pod's own address, never routed through the public ingress).
    metrics_token: SecretStr | None = None

    jwt_secret: SecretStr = SecretStr(DEFAULT_JWT_SECRET)
    oneflow_master_key: SecretStr = SecretStr(DEFAULT_MASTER_KEY)

    openai_api_key: SecretStr | None = None
    openai_base_url: str = _DEFAULT_BASE_URLS["openai"]
    anthropic_api_key: SecretStr | None = None
    anthropic_base_url: str = _DEFAULT_BASE_URLS["anthropic"]
    stability_api_key: SecretStr | None = None
    stability_base_url: str = _DEFAULT_BASE_URLS["stability"]
    elevenlabs_api_key: SecretStr | None = None
    elevenlabs_base_url: str = _DEFAULT_BASE_URLS["elevenlabs"]

    # Keys of the providers the catalog declares (CATALOG_PATH's `providers:`), by name, as a
    # JSON object: {"azure": "...", "groq": "..."}.
    provider_api_keys: dict[str, SecretStr] = Field(default_factory=dict)

    upstream_connect_timeout: float = Field(default=10.0, gt=0)
    upstream_read_timeout: float = Field(default=30.0, gt=0)
    # Pooled keep-alive connections per provider.
    upstream_max_connections: int = Field(default=1024, ge=1, le=10_000)

    # OpenAI voice names -> ElevenLabs voice ids (a JSON object in the environment); a voice
    # that is not a key here is taken as an ElevenLabs voice id.
    elevenlabs_voices: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_ELEVENLABS_VOICES)
    )

    # Per-provider overrides of the two timeouts above (unset: the defaults above).
    openai_connect_timeout: float | None = Field(default=None, gt=0)
    openai_read_timeout: float | None = Field(default=None, gt=0)
    anthropic_connect_timeout: float | None = Field(default=None, gt=0)
    anthropic_read_timeout: float | None = Field(default=None, gt=0)
    stability_connect_timeout: float | None = Field(default=None, gt=0)
    stability_read_timeout: float | None = Field(default=None, gt=0)
    elevenlabs_connect_timeout: float | None = Field(default=None, gt=0)
    elevenlabs_read_timeout: float | None = Field(default=None, gt=0)

    # Retries of upstream calls (oneflow_ai.resilience.retry).
    upstream_max_retries: int = Field(default=2, ge=0, le=10)
    upstream_retry_base_delay: float = Field(default=0.25, ge=0)
    upstream_retry_max_delay: float = Field(default=8.0, ge=0)
    upstream_max_retry_after: float = Field(default=20.0, ge=0)
    upstream_retry_budget_ratio: float = Field(default=0.2, ge=0, le=1)
    upstream_retry_budget_min_per_second: float = Field(default=1.0, ge=0)

    # Circuit breakers (oneflow_ai.resilience.breaker_set), per (provider, model) and provider.
    circuit_failure_rate: float = Field(default=0.5, gt=0, le=1)
    circuit_provider_failure_rate: float = Field(default=0.8, gt=0, le=1)
    circuit_min_calls: int = Field(default=10, ge=1)
    circuit_window_seconds: float = Field(default=30.0, gt=0)
    circuit_cooldown_seconds: float = Field(default=15.0, ge=0)
    circuit_half_open_probes: int = Field(default=1, ge=1)
    circuit_cache_ttl: float = Field(default=1.0, ge=0)

    # Routing (oneflow_ai.routing): balanced weights, chain shape, latency learning.
    routing_weight_cost: float = Field(default=1.0, ge=0)
    routing_weight_latency: float = Field(default=1.0, ge=0)
    routing_weight_quality: float = Field(default=1.0, ge=0)
    routing_near_equal: float = Field(default=0.05, ge=0, le=1)
    routing_max_fallbacks: int = Field(default=3, ge=0)
    routing_latency_alpha: float = Field(default=0.2, gt=0, le=1)
    routing_latency_half_life: float = Field(default=600.0, ge=0)

    # Idempotency-Key on the gateway's POST endpoints (oneflow_ai.api.idempotency).
    idempotency_ttl_seconds: float = Field(default=24 * 3600.0, gt=0)
    idempotency_wait_seconds: float = Field(default=60.0, ge=0)
    idempotency_lock_seconds: float = Field(default=300.0, gt=0)
    idempotency_max_response_bytes: int = Field(default=4 * 1024 * 1024, ge=0)

    # "auto": in development with no provider key configured, serve through the built-in fake
    # providers so that a newcomer sees the whole flow work. Never in production.
    fake_providers: Literal["auto", "on", "off"] = "auto"

    # An operator's YAML file merged over the packaged model catalog and price table.
    catalog_path: Path | None = None

    # Ledger: group commit of charges and usage records, reservations and their reconciliation.
    ledger_flush_interval_ms: float = Field(default=2.0, ge=0, le=1000)
    ledger_batch_max_rows: int = Field(default=500, ge=1, le=10_000)
    ledger_reservation_ttl_seconds: float = Field(default=3600.0, gt=0)
    ledger_owner_timeout_seconds: float = Field(default=30.0, gt=0)
    ledger_maintenance_interval_seconds: float = Field(default=5.0, gt=0)
    ledger_state_max_age_seconds: float = Field(default=10.0, gt=0)
    ledger_state_fail_open: bool = False
    # Streams write what they delivered this often (0: never), for a crash to charge it.
    ledger_checkpoint_interval_ms: float = Field(default=1000.0, ge=0, le=60_000)
    # Database unreachable: serve prepaid and hard-budget requests without a hold, charged
    # from the spool later (true), or refuse them at once with 503 (false).
    ledger_degraded_postpaid: bool = False
    # This replica's stable identity (unset: HOSTNAME, e.g. the pod's name, else the host's
    # name); a restart as the same instance settles what it left at once.
    oneflow_instance_id: str | None = Field(default=None, max_length=60)
    # Files the gateway keeps: the ledger's spool of settlements the database did not take.
    oneflow_data_dir: Path = Path("var")

    # SIGTERM: keep accepting this long after /ready turns 503 (for load balancers to notice;
    # 0 behind a Kubernetes preStop hook that waits), then give requests and streams under way
    # this long to finish before open streams are ended with an error event.
    shutdown_delay_seconds: float = Field(default=5.0, ge=0, le=300)
    shutdown_grace_seconds: float = Field(default=30.0, gt=0, le=3600)

    max_request_size: int = Field(default=10 * 1024 * 1024, ge=1024)
    # Responses of /v1/responses kept (store: true) are deleted this many days after they
    # were made; until then GET /v1/responses/{id} and previous_response_id find them.
    responses_retention_days: int = Field(default=30, ge=1, le=3650)
    cors_origins: list[str] = Field(default_factory=list)

    # ---- identity: access tokens, API keys ---------------------------------------------
    # Secrets that signed earlier access/refresh tokens; still accepted by their `kid`.
    jwt_previous_secrets: list[SecretStr] = Field(default_factory=list)
    jwt_issuer: str = "oneflow"
    jwt_audience: str = "oneflow-api"
    jwt_access_ttl_seconds: int = Field(default=900, ge=30, le=86_400)
    jwt_refresh_ttl_seconds: int = Field(default=30 * 86_400, ge=300)
    # Keyed hash of API keys; unset: derived from ONEFLOW_MASTER_KEY.
    api_key_pepper: SecretStr | None = None
    api_key_cache_ttl_seconds: float = Field(default=5.0, gt=0, le=300)
    api_key_cache_size: int = Field(default=10_000, ge=16)
    api_key_max_age_days: int = Field(default=90, ge=0)
    api_key_rotation_grace_hours: float = Field(default=24.0, ge=0)
    login_attempts_per_minute: int = Field(default=10, ge=0)

    # ---- response cache (docs/cache.md): off unless a project or key opts in ----------------
    # Project id -> policy ("*": every project), key id -> policy (replaces its project's).
    cache_projects: dict[str, CachePolicy] = Field(default_factory=dict)
    cache_keys: dict[str, CachePolicy] = Field(default_factory=dict)
    cache_ttl_seconds: int = Field(default=3600, ge=1)
    # The longest X-OneFlow-Cache-TTL a caller may ask for.
    cache_max_ttl_seconds: int = Field(default=7 * 86_400, ge=1)
    # Answers larger than this (serialized) are not stored.
    cache_max_entry_bytes: int = Field(default=1024 * 1024, ge=1024)
    # The in-process cache (without REDIS_URL): least recently used entries go past this.
    cache_memory_bytes: int = Field(default=64 * 1024 * 1024, ge=0)
    # What a hit is charged, as a fraction of what the answer cost when it was made live.
    cache_hit_fraction: Decimal = Field(default=Decimal(0), ge=0, le=1)
    # Cached answers count against rate limits like live ones (false: they do not).
    cache_counts_rate_limits: bool = True
    # The semantic cache's in-process index (without pgvector): questions kept at most.
    cache_semantic_max_entries: int = Field(default=10_000, ge=0)

    # ---- rate limits (0 turns a default off) ---------------------------------------------
    rate_limit_per_minute: int = Field(default=60, ge=0)
    rate_limit_per_hour: int = Field(default=1000, ge=0)
    rate_limit_tokens_per_minute: int = Field(default=0, ge=0)
    # Aggregate limits per upstream provider, e.g. {"openai": {"requests_per_minute": 3000}}.
    rate_limit_providers: dict[str, dict[str, int]] = Field(default_factory=dict)
    # When the shared counter store (Redis) fails: admit (true) or refuse with 503 (false).
    rate_limit_fail_open: bool = True

    @field_validator("log_level", mode="before")
    @classmethod
    def _log_level(cls, value: object) -> str:
        level = str(value).strip().upper()
        if level not in _LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(_LOG_LEVELS)}")
        return level

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

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return normalize_database_url(value)

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @field_validator("oneflow_home", mode="before")
    @classmethod
    def _home(cls, value: object) -> object:
        if isinstance(value, str):
            return Path(value.strip()).expanduser() if value.strip() else None
        return value

    @field_validator("catalog_path", mode="before")
    @classmethod
    def _empty_path_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("catalog_path")
    @classmethod
    def _catalog_loads(cls, value: Path | None) -> Path | None:
        """A malformed catalog stops start-up, naming the entry and field."""
        if value is not None:
            from oneflow_ai.catalog import load_catalog

            load_catalog(value)  # raises CatalogError (a ValueError) with one clear line
        return value

    @field_validator("rate_limit_providers")
    @classmethod
    def _provider_limits(cls, value: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
        allowed = {"requests_per_minute", "requests_per_hour", "tokens_per_minute"}
        for provider, limits in value.items():
            if provider not in PROVIDERS:
                raise ValueError(f"unknown provider {provider!r}")
            for name, limit in limits.items():
                if name not in allowed:
                    raise ValueError(f"{provider}: unknown limit {name!r}")
                if limit < 1:
                    raise ValueError(f"{provider}.{name} must be a positive integer")
        return value

    @field_validator(*(f"{p}_base_url" for p in PROVIDERS))
    @classmethod
    def _base_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _routing_weights(self) -> Settings:
        weights = (self.routing_weight_cost, self.routing_weight_latency)
        if sum(weights) + self.routing_weight_quality <= 0:
            raise ValueError("ROUTING_WEIGHT_COST: the three routing weights must not all be 0")
        return self

    @model_validator(mode="after")
    def _ledger_timing(self) -> Settings:
        if self.ledger_maintenance_interval_seconds * 2 > self.ledger_owner_timeout_seconds:
            raise ValueError(
                "LEDGER_OWNER_TIMEOUT_SECONDS: must be at least twice "
                "LEDGER_MAINTENANCE_INTERVAL_SECONDS, or live replicas would look dead"
            )
        return self

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


def user_data_dir() -> Path:
    """OneFlow's folder in the platform's per-user data directory: `$XDG_DATA_HOME/oneflow`
    (`~/.local/share/oneflow`) on Linux and other Unix systems, `~/Library/Application
    Support/oneflow` on macOS, `%LOCALAPPDATA%\\oneflow` on Windows."""
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA", "").strip()
        return (Path(base) if base else Path.home() / "AppData" / "Local") / "oneflow"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "oneflow"
    xdg = os.environ.get("XDG_DATA_HOME", "").strip()
    # The XDG specification ignores a relative path.
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "share"
    return base / "oneflow"


def normalize_database_url(value: str) -> str:
    """Accept the common spellings and return the async driver URL; reject anything else."""
    url = value.strip()
    if url.startswith(("postgresql://", "postgres://")):
        url = "postgresql+asyncpg://" + url.split("://", 1)[1]
    elif url.startswith("sqlite://") and not url.startswith("sqlite+aiosqlite://"):
        url = "sqlite+aiosqlite://" + url.split("://", 1)[1]
    if not url.startswith(("postgresql+asyncpg://", "sqlite+aiosqlite://")):
        raise ValueError(
            f"unsupported database URL {_mask_url(value)!r}: use postgresql+asyncpg://... "
            "or sqlite+aiosqlite:///path"
        )
    if url.startswith("postgresql+asyncpg://") and len(url) <= len("postgresql+asyncpg://"):
        raise ValueError("PostgreSQL URL names no host")
    return url


def _mask_url(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    return url


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
