"""Table definitions (SQLAlchemy 2 declarative), shared by SQLite and PostgreSQL.

Migrations under `migrations/versions` are the source of truth for the schema; these classes
mirror them for queries. Constraint names follow one convention so that Alembic can alter and
drop them on both databases (SQLite through batch mode).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any, ClassVar, Final

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "ADMIN_PROJECT_ID",
    "LATENCY_BUCKETS_MS",
    "LATENCY_BUCKET_COLUMNS",
    "ROLLUP_COUNTERS",
    "ApiKey",
    "Base",
    "Budget",
    "BudgetCounter",
    "LedgerAccount",
    "LedgerEntry",
    "LedgerOwner",
    "LedgerReservation",
    "Membership",
    "Project",
    "RefreshToken",
    "RequestBody",
    "RequestLogPolicy",
    "ReservationHold",
    "ResponsesApiRecord",
    "SemanticCacheRow",
    "UsageRecordRow",
    "User",
    "UtcDateTime",
    "table_of",
    "usage_hourly",
    "usage_hourly_by_key",
    "utcnow",
]

ADMIN_PROJECT_ID = "proj_admin"

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on both databases (SQLite keeps no zone: UTC is implied)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: OneFlow stores aware UTC datetimes only")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UtcDateTime}


def table_of(model: type[Base]) -> Table:
    """The Core table of a mapped class (typed, for Core statements)."""
    table = model.__table__
    assert isinstance(table, Table)
    return table


class Project(Base):
    """A team: it owns keys, budgets, balances and usage."""

    __tablename__ = "projects"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    # Aggregate rate limits over every key and user of the project (LimitPolicy fields).
    limits: Mapped[dict[str, int] | None] = mapped_column(JSON, nullable=True)
    # The response cache's policy (settings.CachePolicy fields; migration 0010); None: off.
    cache: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class User(Base):
    """A person who signs in with email and password (argon2id hash)."""

    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class Membership(Base):
    """A user's role in a project."""

    __tablename__ = "memberships"

    user_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    project_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class ApiKey(Base):
    """An API key of a project: only a keyed hash of its secret is stored.

    The key reads `sk-of-<prefix>-<secret>`; `prefix` finds the row, `secret_hash` proves the
    secret. A rotated key keeps working until `grace_until`; a revoked one stops at `revoked_at`.
    """

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    project_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    prefix: Mapped[str] = mapped_column(String(32), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    created_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    rotated_from: Mapped[str | None] = mapped_column(String(64), nullable=True)
    grace_until: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    allowed_models: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    limits: Mapped[dict[str, int] | None] = mapped_column(JSON, nullable=True)
    unlimited: Mapped[bool] = mapped_column(Boolean, default=False)
    # Written in batches in the background, never on the request path.
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class RefreshToken(Base):
    """One refresh token (by its `jti`); every refresh replaces it within its family."""

    __tablename__ = "refresh_tokens"
    __table_args__ = (Index("ix_refresh_tokens_family_id", "family_id"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    family_id: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    project_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("projects.id", ondelete="CASCADE")
    )
    issued_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    replaced_by: Mapped[str | None] = mapped_column(String(64), nullable=True)


# ---- ledger (migration 0003) ------------------------------------------------------------
#
# Money columns are integer micro-credits (1 credit = 1_000_000; 1 micro-credit = 1e-8 USD),
# so USD and credits are exact renderings of one integer (see oneflow_ai.domain.money).

_ID = BigInteger().with_variant(Integer, "sqlite")  # INTEGER PRIMARY KEY autoincrements on SQLite


class LedgerAccount(Base):
    """A project's cached running balance: provably the sum of its ledger entries.

    ``balance`` is updated in the same transaction as every entry; ``reserved`` is the sum of
    the ``amount`` of the project's active reservations. ``mode`` ``prepaid`` refuses a
    reservation that ``balance - reserved`` cannot cover; ``postpaid`` never refuses.
    """

    __tablename__ = "ledger_accounts"
    __table_args__ = (
        CheckConstraint("mode IN ('prepaid', 'postpaid')", name="mode"),
        CheckConstraint("reserved >= 0", name="reserved_not_negative"),
    )

    project_id: Mapped[str] = mapped_column(String(64), ForeignKey("projects.id"), primary_key=True)
    mode: Mapped[str] = mapped_column(String(16), default="postpaid")
    balance: Mapped[int] = mapped_column(BigInteger, default=0)
    reserved: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class LedgerEntry(Base):
    """One append-only money movement: a top-up, an adjustment or a settled charge.

    ``amount`` is signed (a charge is negative). A charge carries its request id (unique among
    charges: one settled charge per request), model, provider, usage and the price table
    version it was priced with. UPDATE and DELETE are refused by a trigger.
    """

    __tablename__ = "ledger_entries"
    __table_args__ = (
        CheckConstraint("kind IN ('topup', 'adjustment', 'charge')", name="kind"),
        CheckConstraint("kind <> 'topup' OR amount > 0", name="topup_positive"),
        CheckConstraint("kind <> 'charge' OR amount <= 0", name="charge_not_positive"),
        CheckConstraint(
            "kind <> 'charge' OR (request_id IS NOT NULL AND price_table_version IS NOT NULL)",
            name="charge_priced",
        ),
        Index("ix_ledger_entries_project_id_id", "project_id", "id"),
        Index(
            "uq_ledger_entries_charge_request_id",
            "request_id",
            unique=True,
            sqlite_where=text("kind = 'charge'"),
            postgresql_where=text("kind = 'charge'"),
        ),
    )

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    project_id: Mapped[str] = mapped_column(String(64), ForeignKey("projects.id"))
    kind: Mapped[str] = mapped_column(String(16))
    amount: Mapped[int] = mapped_column(BigInteger)
    request_id: Mapped[str | None] = mapped_column(String(64))
    model: Mapped[str | None] = mapped_column(String(128))
    provider: Mapped[str | None] = mapped_column(String(32))
    input_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    output_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    images: Mapped[int] = mapped_column(Integer, default=0)
    characters: Mapped[int] = mapped_column(BigInteger, default=0)
    price_table_version: Mapped[str | None] = mapped_column(String(64))
    estimated: Mapped[bool] = mapped_column(Boolean, default=False)
    user_id: Mapped[str | None] = mapped_column(String(64))
    key_id: Mapped[str | None] = mapped_column(String(64))
    note: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    # migration 0007: seconds of transcribed audio (what speech to text bills)
    audio_seconds: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class LedgerOwner(Base):
    """A live gateway process that may hold reservations; its heartbeat proves it alive.

    ``instance`` is the stable identity the process runs as (migration 0005): a process that
    restarts as the same instance settles what its previous incarnations left at once.
    """

    __tablename__ = "ledger_owners"
    __table_args__ = (Index("ix_ledger_owners_instance", "instance"),)

    owner: Mapped[str] = mapped_column(String(100), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime())
    heartbeat_at: Mapped[datetime] = mapped_column(UtcDateTime())
    instance: Mapped[str | None] = mapped_column(String(100))


class LedgerReservation(Base):
    """An active hold for one in-flight request of a project with limits (deleted when resolved).

    ``amount`` is held on the project's prepaid balance (0 when the account is postpaid);
    the holds on hard budgets are in ``reservation_holds``. A reservation whose ``owner``
    stops heartbeating, or that outlives ``expires_at``, is released by any process.

    A streamed answer checkpoints its progress here (migration 0005; a postpaid stream gets a
    row of its own, holding nothing): the tokens delivered so far and their price. A row with
    a checkpoint is settled, not released, when its owner dies: charged what it delivered.
    """

    __tablename__ = "ledger_reservations"
    __table_args__ = (
        CheckConstraint("amount >= 0", name="amount_not_negative"),
        Index("ix_ledger_reservations_owner", "owner"),
        Index("ix_ledger_reservations_expires_at", "expires_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    request_id: Mapped[str] = mapped_column(String(64), unique=True)
    project_id: Mapped[str] = mapped_column(String(64), ForeignKey("projects.id"))
    user_id: Mapped[str | None] = mapped_column(String(64))
    key_id: Mapped[str | None] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(128))
    provider: Mapped[str] = mapped_column(String(32))
    amount: Mapped[int] = mapped_column(BigInteger)
    max_micro_credits: Mapped[int] = mapped_column(BigInteger)
    owner: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())
    input_tokens: Mapped[int | None] = mapped_column(BigInteger)
    output_tokens: Mapped[int | None] = mapped_column(BigInteger)
    progress_micro_credits: Mapped[int | None] = mapped_column(BigInteger)
    price_table_version: Mapped[str | None] = mapped_column(String(64))
    checkpointed_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class Budget(Base):
    """A budget or quota of a project, optionally narrowed to a user, a key and/or a provider.

    ``''`` in ``user_id``/``key_id``/``provider`` means "any". ``metric``: credits
    (micro-credits), tokens (input + output) or requests; ``period``: UTC day or month;
    ``mode``: hard (refuse) or soft (alert only).
    """

    __tablename__ = "budgets"
    __table_args__ = (
        CheckConstraint("metric IN ('credits', 'tokens', 'requests')", name="metric"),
        CheckConstraint("period IN ('day', 'month')", name="period"),
        CheckConstraint("mode IN ('hard', 'soft')", name="mode"),
        CheckConstraint("limit_value >= 0", name="limit_not_negative"),
        UniqueConstraint(
            "project_id",
            "user_id",
            "key_id",
            "provider",
            "metric",
            "period",
            name="uq_budgets_scope",
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    project_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("projects.id", ondelete="CASCADE")
    )
    user_id: Mapped[str] = mapped_column(String(64), default="")
    key_id: Mapped[str] = mapped_column(String(64), default="")
    provider: Mapped[str] = mapped_column(String(32), default="")
    metric: Mapped[str] = mapped_column(String(16))
    period: Mapped[str] = mapped_column(String(8))
    limit_value: Mapped[int] = mapped_column(BigInteger)
    mode: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class BudgetCounter(Base):
    """A budget's consumption in one period: ``used`` (settled) and ``reserved`` (held)."""

    __tablename__ = "budget_counters"
    __table_args__ = (
        PrimaryKeyConstraint("budget_id", "period_start", name="pk_budget_counters"),
        CheckConstraint("reserved >= 0", name="reserved_not_negative"),
    )

    budget_id: Mapped[str] = mapped_column(String(32), ForeignKey("budgets.id", ondelete="CASCADE"))
    period_start: Mapped[date] = mapped_column(Date)
    used: Mapped[int] = mapped_column(BigInteger, default=0)
    reserved: Mapped[int] = mapped_column(BigInteger, default=0)


class ReservationHold(Base):
    """What one active reservation holds on one hard budget's counter."""

    __tablename__ = "reservation_holds"
    __table_args__ = (
        PrimaryKeyConstraint("reservation_id", "budget_id", name="pk_reservation_holds"),
        Index("ix_reservation_holds_budget_id", "budget_id"),
    )

    reservation_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("ledger_reservations.id", ondelete="CASCADE")
    )
    budget_id: Mapped[str] = mapped_column(String(32), ForeignKey("budgets.id", ondelete="CASCADE"))
    period_start: Mapped[date] = mapped_column(Date)
    amount: Mapped[int] = mapped_column(BigInteger)


# ---- usage analytics (migration 0003) ---------------------------------------------------


#: The condition of the request log's partial indexes on errors (`storage/request_log.py`).
_ERRORS = "status >= 400"


class UsageRecordRow(Base):
    """One request as analytics and the request log see it, errors included (written in
    batches). The request log pages through it newest first by ``(occurred_at, id)``, over
    everything or within a project or a key (migration 0004 added the route, the token
    classes and those indexes)."""

    __tablename__ = "usage_records"
    __table_args__ = (
        Index("ix_usage_records_occurred_at_id", "occurred_at", "id"),
        Index("ix_usage_records_project_id_occurred_at_id", "project_id", "occurred_at", "id"),
        Index("ix_usage_records_key_id_occurred_at_id", "key_id", "occurred_at", "id"),
        Index("ix_usage_records_request_id", "request_id"),
        # Migration 0006: partial indexes for the rare filters (errors; signed-in users).
        *(
            Index(name, *columns, postgresql_where=text(where), sqlite_where=text(where))
            for name, columns, where in (
                ("ix_usage_records_errors_occurred_at_id", ("occurred_at", "id"), _ERRORS),
                (
                    "ix_usage_records_errors_project_id_occurred_at_id",
                    ("project_id", "occurred_at", "id"),
                    _ERRORS,
                ),
                (
                    "ix_usage_records_user_id_occurred_at_id",
                    ("user_id", "occurred_at", "id"),
                    "user_id IS NOT NULL",
                ),
            )
        ),
    )

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(String(64))
    occurred_at: Mapped[datetime] = mapped_column(UtcDateTime())
    project_id: Mapped[str | None] = mapped_column(String(64))
    user_id: Mapped[str | None] = mapped_column(String(64))
    key_id: Mapped[str | None] = mapped_column(String(64))
    model: Mapped[str | None] = mapped_column(String(128))
    provider: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[int] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(String(40))
    stream: Mapped[bool] = mapped_column(Boolean, default=False)
    input_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    output_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    images: Mapped[int] = mapped_column(Integer, default=0)
    characters: Mapped[int] = mapped_column(BigInteger, default=0)
    micro_credits: Mapped[int] = mapped_column(BigInteger, default=0)
    price_table_version: Mapped[str | None] = mapped_column(String(64))
    estimated: Mapped[bool] = mapped_column(Boolean, default=False)
    latency_ms: Mapped[int | None] = mapped_column(Integer)
    ttft_ms: Mapped[int | None] = mapped_column(Integer)
    # The route (see oneflow_ai.domain.usage_record.RequestRoute).
    model_requested: Mapped[str | None] = mapped_column(String(128))
    strategy: Mapped[str | None] = mapped_column(String(32))
    route_reason: Mapped[str | None] = mapped_column(String(300))
    fallbacks: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    route_detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Token classes within input_tokens / output_tokens, and a response-cache hit.
    cached_input_tokens: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    reasoning_tokens: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # Prompt-cache writes within input_tokens, by lifetime (migration 0008).
    cache_write_5m_tokens: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    cache_write_1h_tokens: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    cache_hit: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    # migration 0007: seconds of transcribed audio (what speech to text bills)
    audio_seconds: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # Micro-credits a response-cache hit was not charged (migration 0010).
    credits_saved: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


#: Upper bounds (inclusive, ms) of the latency histogram kept in the hourly rollups; a last
#: bucket holds everything slower. Percentiles are interpolated within a bucket.
LATENCY_BUCKETS_MS: Final = (
    5, 10, 20, 30, 50, 75, 100, 150, 200, 300, 400, 500, 750, 1000, 1500, 2000, 3000, 4000,
    5000, 7500, 10000, 15000, 20000, 30000, 60000, 120000, 300000,
)  # fmt: skip
LATENCY_BUCKET_COLUMNS: Final = (
    *(f"lat_le_{bound}" for bound in LATENCY_BUCKETS_MS),
    f"lat_gt_{LATENCY_BUCKETS_MS[-1]}",
)
ROLLUP_COUNTERS: Final = (
    "requests",
    "errors",
    "input_tokens",
    "output_tokens",
    "images",
    "characters",
    "micro_credits",
    "latency_count",
    "latency_sum_ms",
    "ttft_count",
    "ttft_sum_ms",
    # migration 0004: requests answered by a fallback, response-cache hits, token classes
    "fallback_requests",
    "cache_hits",
    "cached_input_tokens",
    "reasoning_tokens",
    # migration 0007: seconds of transcribed audio
    "audio_seconds",
    # migration 0008: prompt-cache writes by lifetime
    "cache_write_5m_tokens",
    "cache_write_1h_tokens",
    # migration 0010: what response-cache hits were not charged (micro-credits)
    "credits_saved",
    *LATENCY_BUCKET_COLUMNS,
)


def _rollup(name: str, *dimensions: str) -> Table:
    """An hourly rollup of usage_records over ``dimensions`` ('' stands for none)."""
    return Table(
        name,
        Base.metadata,
        Column("bucket_hour", Integer, nullable=False),  # hours since 1970-01-01T00:00Z
        *(Column(dim, String(128 if dim == "model" else 64), nullable=False) for dim in dimensions),
        *(
            Column(counter, BigInteger, nullable=False, server_default="0")
            for counter in ROLLUP_COUNTERS
        ),
        PrimaryKeyConstraint("bucket_hour", *dimensions, name=f"pk_{name}"),
    )


#: Per hour, project, model and provider: what most questions need, small and fast.
usage_hourly = _rollup("usage_hourly", "project_id", "model", "provider")
#: Per hour and every dimension, for questions about users and keys.
usage_hourly_by_key = _rollup(
    "usage_hourly_by_key", "project_id", "user_id", "key_id", "model", "provider"
)


# ---- request log (migration 0004) -------------------------------------------------------


class RequestLogPolicy(Base):
    """A project's opt-in to store prompt and answer bodies: kept ``retention_days``, with
    the redaction rules named in ``redact`` applied before they are written."""

    __tablename__ = "request_log_policies"
    __table_args__ = (CheckConstraint("retention_days >= 1", name="retention_positive"),)

    project_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True
    )
    store_bodies: Mapped[bool] = mapped_column(Boolean)
    retention_days: Mapped[int] = mapped_column(Integer)
    redact: Mapped[list[str]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class RequestBody(Base):
    """The stored (redacted) prompt and answer of one request of a project that opted in."""

    __tablename__ = "request_bodies"
    __table_args__ = (Index("ix_request_bodies_expires_at", "expires_at"),)

    request_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    project_id: Mapped[str] = mapped_column(String(64))
    occurred_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())
    request: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    response: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class ResponsesApiRecord(Base):
    """A response of the Responses API that OneFlow keeps (`store: true`) until it expires."""

    __tablename__ = "stored_responses"
    __table_args__ = (Index("ix_stored_responses_expires_at", "expires_at"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    project_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())
    previous_response_id: Mapped[str | None] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(200))
    input: Mapped[list[Any]] = mapped_column(JSON)
    response: Mapped[dict[str, Any]] = mapped_column(JSON)


class SemanticCacheRow(Base):
    """A question the semantic cache can match (docs/cache.md#semantic-cache): the exact
    cache's key of its answer, the scope it may answer in (model, system prompt, earlier
    turns) and when it expires. On PostgreSQL with pgvector the table also has the question's
    `embedding` (`vector`), added by migration 0011 only where the extension could be
    created, so it is not declared here (the models match the schema either way)."""

    __tablename__ = "semantic_cache_entries"
    __table_args__ = (
        Index("ix_semantic_cache_entries_scope", "scope"),
        Index("ix_semantic_cache_entries_expires_at", "expires_at"),
    )

    entry_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    scope: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())
