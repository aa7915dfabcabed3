"""The settings, in groups: one class of fields per concern, each with the checks of its own
fields. `Settings` (`settings/root.py`) combines them; a field's environment variable is its
name in capitals, whichever group holds it. A new setting goes into the group of its concern
(or a new group, added to `Settings`' bases)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Literal, Self

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator

from oneflow_ai.settings.values import (
    DEFAULT_BASE_URLS,
    DEFAULT_ELEVENLABS_VOICES,
    DEFAULT_JWT_SECRET,
    DEFAULT_MASTER_KEY,
    LOG_LEVELS,
    PROVIDERS,
    CachePolicy,
    Environment,
    normalize_database_url,
)

__all__ = [
    "CacheFields",
    "GatewayFields",
    "IdentityFields",
    "LedgerFields",
    "RateLimitFields",
    "RoutingFields",
    "RuntimeFields",
    "UpstreamFields",
]


class RuntimeFields(BaseModel):
    """The environment, logs, the database and Redis, metrics and traces, the master secrets."""

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

    @field_validator("log_level", mode="before")
    @classmethod
    def _log_level(cls, value: object) -> str:
        level = str(value).strip().upper()
        if level not in LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
        return level

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


class UpstreamFields(BaseModel):
    """The providers: keys, URLs, timeouts, connections, retries and circuit breakers."""

    openai_api_key: SecretStr | None = None
    openai_base_url: str = DEFAULT_BASE_URLS["openai"]
    anthropic_api_key: SecretStr | None = None
    anthropic_base_url: str = DEFAULT_BASE_URLS["anthropic"]
    stability_api_key: SecretStr | None = None
    stability_base_url: str = DEFAULT_BASE_URLS["stability"]
    elevenlabs_api_key: SecretStr | None = None
    elevenlabs_base_url: str = DEFAULT_BASE_URLS["elevenlabs"]

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

    @field_validator(*(f"{p}_base_url" for p in PROVIDERS))
    @classmethod
    def _base_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")


class RoutingFields(BaseModel):
    """How a model is chosen (oneflow_ai.routing)."""

    # Routing (oneflow_ai.routing): balanced weights, chain shape, latency learning.
    routing_weight_cost: float = Field(default=1.0, ge=0)
    routing_weight_latency: float = Field(default=1.0, ge=0)
    routing_weight_quality: float = Field(default=1.0, ge=0)
    routing_near_equal: float = Field(default=0.05, ge=0, le=1)
    routing_max_fallbacks: int = Field(default=3, ge=0)
    routing_latency_alpha: float = Field(default=0.2, gt=0, le=1)
    routing_latency_half_life: float = Field(default=600.0, ge=0)

    @model_validator(mode="after")
    def _routing_weights(self) -> Self:
        weights = (self.routing_weight_cost, self.routing_weight_latency)
        if sum(weights) + self.routing_weight_quality <= 0:
            raise ValueError("ROUTING_WEIGHT_COST: the three routing weights must not all be 0")
        return self


class GatewayFields(BaseModel):
    """The gateway's own behaviour: idempotency, the fake providers, the catalog, shutdown,
    request size, stored responses, CORS."""

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


class LedgerFields(BaseModel):
    """The ledger: group commit, reservations, checkpoints, the spool (oneflow_ai.billing)."""

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
    # Credit leases: a replica holds a slice of a prepaid balance and reserves from it in
    # memory (no database write before the upstream call); see docs/billing.md.
    ledger_leases: bool = True
    ledger_lease_share: int = Field(default=8, ge=2, le=1000)
    ledger_lease_min_requests: int = Field(default=16, ge=1, le=100_000)
    ledger_lease_horizon_seconds: float = Field(default=10.0, gt=0, le=3600)
    ledger_lease_lifetime_seconds: float = Field(default=60.0, gt=0, le=3600)
    ledger_lease_max_credits: Decimal = Field(default=Decimal(100), gt=0)
    # Write-behind: settlements go to the local spool (one fsync) and reach the database in
    # batches moments later, off the answer's path (PostgreSQL); see docs/billing.md.
    ledger_write_behind: bool = False
    # This replica's stable identity (unset: HOSTNAME, e.g. the pod's name, else the host's
    # name); a restart as the same instance settles what it left at once.
    oneflow_instance_id: str | None = Field(default=None, max_length=60)
    # Files the gateway keeps: the ledger's spool of settlements the database did not take.
    oneflow_data_dir: Path = Path("var")

    @model_validator(mode="after")
    def _ledger_timing(self) -> Self:
        if self.ledger_maintenance_interval_seconds * 2 > self.ledger_owner_timeout_seconds:
            raise ValueError(
                "LEDGER_OWNER_TIMEOUT_SECONDS: must be at least twice "
                "LEDGER_MAINTENANCE_INTERVAL_SECONDS, or live replicas would look dead"
            )
        return self


class IdentityFields(BaseModel):
    """Access tokens and API keys."""

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


class CacheFields(BaseModel):
    """The response cache (docs/cache.md): off unless a project or key opts in."""

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


class RateLimitFields(BaseModel):
    """Rate limits (0 turns a default off)."""

    # ---- rate limits (0 turns a default off) ---------------------------------------------
    rate_limit_per_minute: int = Field(default=60, ge=0)
    rate_limit_per_hour: int = Field(default=1000, ge=0)
    rate_limit_tokens_per_minute: int = Field(default=0, ge=0)
    # Aggregate limits per upstream provider, e.g. {"openai": {"requests_per_minute": 3000}}.
    rate_limit_providers: dict[str, dict[str, int]] = Field(default_factory=dict)
    # When the shared counter store (Redis) fails: admit (true) or refuse with 503 (false).
    rate_limit_fail_open: bool = True

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
