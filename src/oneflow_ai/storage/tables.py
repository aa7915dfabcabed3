"""Table definitions (SQLAlchemy 2 declarative), shared by SQLite and PostgreSQL.

Migrations under `migrations/versions` are the source of truth for the schema; these classes
mirror them for queries. Constraint names follow one convention so that Alembic can alter and
drop them on both databases (SQLite through batch mode).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from oneflow_ai.storage.table_base import (
    ADMIN_PROJECT_ID,
    ID,
    Base,
    UtcDateTime,
    table_of,
    utcnow,
)
from oneflow_ai.storage.tables_usage import (
    LATENCY_BUCKET_COLUMNS,
    LATENCY_BUCKETS_MS,
    ROLLUP_COUNTERS,
    RequestBody,
    RequestLogPolicy,
    ResponsesApiRecord,
    SemanticCacheRow,
    UsageRecordRow,
    usage_hourly,
    usage_hourly_by_key,
)

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

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
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
