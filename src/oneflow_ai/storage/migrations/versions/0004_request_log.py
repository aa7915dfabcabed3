"""The request log: each usage record's route and token classes, keyset indexes, the rollups'
new counters, and the optional store of prompt and answer bodies.

- usage_records gains the model asked for, the strategy and the route's reason, how many
  candidates fell through, the chain and attempts when they tell more than the row (JSON),
  cached input and reasoning tokens, and a response-cache hit flag;
- its (occurred_at) and (project_id, occurred_at) indexes become (occurred_at, id),
  (project_id, occurred_at, id) and (key_id, occurred_at, id): the request log pages newest
  first by (occurred_at, id) over everything, a project or a key;
- both hourly rollups count requests answered by a fallback, cache hits and the two token
  classes;
- request_log_policies (a project's opt-in to store bodies, their retention and redaction)
  and request_bodies (one row per stored request, deleted after its retention).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)
_ROLLUPS = ("usage_hourly", "usage_hourly_by_key")
# Kept literally here (not imported) so that this revision never changes after release.
_NEW_COUNTERS = ("fallback_requests", "cache_hits", "cached_input_tokens", "reasoning_tokens")
_OLD_INDEXES = (
    ("ix_usage_records_occurred_at", ["occurred_at"]),
    ("ix_usage_records_project_id_occurred_at", ["project_id", "occurred_at"]),
)
_NEW_INDEXES = (
    ("ix_usage_records_occurred_at_id", ["occurred_at", "id"]),
    ("ix_usage_records_project_id_occurred_at_id", ["project_id", "occurred_at", "id"]),
    ("ix_usage_records_key_id_occurred_at_id", ["key_id", "occurred_at", "id"]),
)


def upgrade() -> None:
    with op.batch_alter_table("usage_records") as batch:
        batch.add_column(sa.Column("model_requested", sa.String(128), nullable=True))
        batch.add_column(sa.Column("strategy", sa.String(32), nullable=True))
        batch.add_column(sa.Column("route_reason", sa.String(300), nullable=True))
        batch.add_column(sa.Column("fallbacks", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("route_detail", sa.JSON(), nullable=True))
        for name in ("cached_input_tokens", "reasoning_tokens"):
            batch.add_column(sa.Column(name, sa.BigInteger(), nullable=False, server_default="0"))
        batch.add_column(
            sa.Column("cache_hit", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    for name, columns in _NEW_INDEXES:
        op.create_index(name, "usage_records", columns)
    for name, _ in _OLD_INDEXES:
        op.drop_index(name, table_name="usage_records")
    for table in _ROLLUPS:
        with op.batch_alter_table(table) as batch:
            for counter in _NEW_COUNTERS:
                batch.add_column(
                    sa.Column(counter, sa.BigInteger(), nullable=False, server_default="0")
                )

    op.create_table(
        "request_log_policies",
        sa.Column("project_id", sa.String(64), nullable=False),
        sa.Column("store_bodies", sa.Boolean(), nullable=False),
        sa.Column("retention_days", sa.Integer(), nullable=False),
        sa.Column("redact", sa.JSON(), nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.CheckConstraint(
            "retention_days >= 1", name="ck_request_log_policies_retention_positive"
        ),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name="fk_request_log_policies_project_id_projects",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("project_id", name="pk_request_log_policies"),
    )
    op.create_table(
        "request_bodies",
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("project_id", sa.String(64), nullable=False),
        sa.Column("occurred_at", _TS, nullable=False),
        sa.Column("expires_at", _TS, nullable=False),
        sa.Column("request", sa.JSON(), nullable=True),
        sa.Column("response", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("request_id", name="pk_request_bodies"),
    )
    op.create_index("ix_request_bodies_expires_at", "request_bodies", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_request_bodies_expires_at", table_name="request_bodies")
    op.drop_table("request_bodies")
    op.drop_table("request_log_policies")
    for table in _ROLLUPS:
        with op.batch_alter_table(table) as batch:
            for counter in _NEW_COUNTERS:
                batch.drop_column(counter)
    for name, columns in _OLD_INDEXES:
        op.create_index(name, "usage_records", columns)
    for name, _ in _NEW_INDEXES:
        op.drop_index(name, table_name="usage_records")
    with op.batch_alter_table("usage_records") as batch:
        for name in (
            "cache_hit",
            "reasoning_tokens",
            "cached_input_tokens",
            "route_detail",
            "fallbacks",
            "route_reason",
            "strategy",
            "model_requested",
        ):
            batch.drop_column(name)
