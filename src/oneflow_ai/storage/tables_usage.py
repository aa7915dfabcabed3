"""Tables of usage analytics (the usage records and their hourly rollups) and of the request
log (its policies, stored bodies), stored Responses and the semantic cache; their base is
`storage/table_base.py`, and `storage/tables.py` exports them with the others.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    Table,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from oneflow_ai.storage.table_base import ID, Base, UtcDateTime, utcnow

__all__ = [
    "LATENCY_BUCKETS_MS",
    "LATENCY_BUCKET_COLUMNS",
    "ROLLUP_COUNTERS",
    "RequestBody",
    "RequestLogPolicy",
    "ResponsesApiRecord",
    "SemanticCacheRow",
    "UsageRecordRow",
    "usage_hourly",
    "usage_hourly_by_key",
]


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

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
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
