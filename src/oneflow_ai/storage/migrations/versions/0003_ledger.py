"""Credits ledger, budgets and quotas, usage records and their hourly rollups.

Money is integer micro-credits (1 credit = 1_000_000 micro-credits = 0.01 USD). Users and API
keys are referenced by id only (no foreign keys), so this revision does not depend on theirs.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TS = sa.DateTime(timezone=True)

# Kept literally here (not imported) so that this revision never changes after release.
_LATENCY_BUCKETS_MS = (
    5, 10, 20, 30, 50, 75, 100, 150, 200, 300, 400, 500, 750, 1000, 1500, 2000, 3000, 4000,
    5000, 7500, 10000, 15000, 20000, 30000, 60000, 120000, 300000,
)  # fmt: skip
_ROLLUP_COUNTERS = (
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
    *(f"lat_le_{bound}" for bound in _LATENCY_BUCKETS_MS),
    f"lat_gt_{_LATENCY_BUCKETS_MS[-1]}",
)

_APPEND_ONLY_PG = """
CREATE FUNCTION ledger_entries_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger_entries is append-only: % refused', TG_OP;
END;
$$
"""


def upgrade() -> None:
    op.create_table(
        "ledger_accounts",
        sa.Column("project_id", sa.String(64), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("balance", sa.BigInteger(), nullable=False),
        sa.Column("reserved", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("project_id", name="pk_ledger_accounts"),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name="fk_ledger_accounts_project_id_projects"
        ),
        sa.CheckConstraint("mode IN ('prepaid', 'postpaid')", name="ck_ledger_accounts_mode"),
        sa.CheckConstraint("reserved >= 0", name="ck_ledger_accounts_reserved_not_negative"),
    )
    op.create_table(
        "ledger_entries",
        sa.Column("id", _ID, nullable=False, autoincrement=True),
        sa.Column("project_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("request_id", sa.String(64), nullable=True),
        sa.Column("model", sa.String(128), nullable=True),
        sa.Column("provider", sa.String(32), nullable=True),
        sa.Column("input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("output_tokens", sa.BigInteger(), nullable=False),
        sa.Column("images", sa.Integer(), nullable=False),
        sa.Column("characters", sa.BigInteger(), nullable=False),
        sa.Column("price_table_version", sa.String(64), nullable=True),
        sa.Column("estimated", sa.Boolean(), nullable=False),
        sa.Column("user_id", sa.String(64), nullable=True),
        sa.Column("key_id", sa.String(64), nullable=True),
        sa.Column("note", sa.String(500), nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_ledger_entries"),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name="fk_ledger_entries_project_id_projects"
        ),
        sa.CheckConstraint(
            "kind IN ('topup', 'adjustment', 'charge')", name="ck_ledger_entries_kind"
        ),
        sa.CheckConstraint(
            "kind <> 'topup' OR amount > 0", name="ck_ledger_entries_topup_positive"
        ),
        sa.CheckConstraint(
            "kind <> 'charge' OR amount <= 0", name="ck_ledger_entries_charge_not_positive"
        ),
        sa.CheckConstraint(
            "kind <> 'charge' OR (request_id IS NOT NULL AND price_table_version IS NOT NULL)",
            name="ck_ledger_entries_charge_priced",
        ),
    )
    op.create_index("ix_ledger_entries_project_id_id", "ledger_entries", ["project_id", "id"])
    op.create_index(
        "uq_ledger_entries_charge_request_id",
        "ledger_entries",
        ["request_id"],
        unique=True,
        sqlite_where=sa.text("kind = 'charge'"),
        postgresql_where=sa.text("kind = 'charge'"),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_APPEND_ONLY_PG)
        op.execute(
            "CREATE TRIGGER ledger_entries_append_only BEFORE UPDATE OR DELETE ON ledger_entries "
            "FOR EACH ROW EXECUTE FUNCTION ledger_entries_append_only()"
        )
    else:
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER ledger_entries_no_{action.lower()} BEFORE {action} "
                "ON ledger_entries BEGIN "
                f"SELECT RAISE(ABORT, 'ledger_entries is append-only: {action} refused'); END"
            )

    op.create_table(
        "ledger_owners",
        sa.Column("owner", sa.String(100), nullable=False),
        sa.Column("started_at", _TS, nullable=False),
        sa.Column("heartbeat_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("owner", name="pk_ledger_owners"),
    )
    op.create_table(
        "ledger_reservations",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("project_id", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(64), nullable=True),
        sa.Column("key_id", sa.String(64), nullable=True),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("max_micro_credits", sa.BigInteger(), nullable=False),
        sa.Column("owner", sa.String(100), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("expires_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_ledger_reservations"),
        sa.UniqueConstraint("request_id", name="uq_ledger_reservations_request_id"),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name="fk_ledger_reservations_project_id_projects"
        ),
        sa.CheckConstraint("amount >= 0", name="ck_ledger_reservations_amount_not_negative"),
    )
    op.create_index("ix_ledger_reservations_owner", "ledger_reservations", ["owner"])
    op.create_index("ix_ledger_reservations_expires_at", "ledger_reservations", ["expires_at"])

    op.create_table(
        "budgets",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("project_id", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("metric", sa.String(16), nullable=False),
        sa.Column("period", sa.String(8), nullable=False),
        sa.Column("limit_value", sa.BigInteger(), nullable=False),
        sa.Column("mode", sa.String(8), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_budgets"),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name="fk_budgets_project_id_projects",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint(
            "project_id",
            "user_id",
            "key_id",
            "provider",
            "metric",
            "period",
            name="uq_budgets_scope",
        ),
        sa.CheckConstraint("metric IN ('credits', 'tokens', 'requests')", name="ck_budgets_metric"),
        sa.CheckConstraint("period IN ('day', 'month')", name="ck_budgets_period"),
        sa.CheckConstraint("mode IN ('hard', 'soft')", name="ck_budgets_mode"),
        sa.CheckConstraint("limit_value >= 0", name="ck_budgets_limit_not_negative"),
    )
    op.create_table(
        "budget_counters",
        sa.Column("budget_id", sa.String(32), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("used", sa.BigInteger(), nullable=False),
        sa.Column("reserved", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("budget_id", "period_start", name="pk_budget_counters"),
        sa.ForeignKeyConstraint(
            ["budget_id"],
            ["budgets.id"],
            name="fk_budget_counters_budget_id_budgets",
            ondelete="CASCADE",
        ),
        sa.CheckConstraint("reserved >= 0", name="ck_budget_counters_reserved_not_negative"),
    )
    op.create_table(
        "reservation_holds",
        sa.Column("reservation_id", sa.String(32), nullable=False),
        sa.Column("budget_id", sa.String(32), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("reservation_id", "budget_id", name="pk_reservation_holds"),
        sa.ForeignKeyConstraint(
            ["reservation_id"],
            ["ledger_reservations.id"],
            name="fk_reservation_holds_reservation_id_ledger_reservations",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["budget_id"],
            ["budgets.id"],
            name="fk_reservation_holds_budget_id_budgets",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_reservation_holds_budget_id", "reservation_holds", ["budget_id"])

    op.create_table(
        "usage_records",
        sa.Column("id", _ID, nullable=False, autoincrement=True),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("occurred_at", _TS, nullable=False),
        sa.Column("project_id", sa.String(64), nullable=True),
        sa.Column("user_id", sa.String(64), nullable=True),
        sa.Column("key_id", sa.String(64), nullable=True),
        sa.Column("model", sa.String(128), nullable=True),
        sa.Column("provider", sa.String(32), nullable=True),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("error", sa.String(40), nullable=True),
        sa.Column("stream", sa.Boolean(), nullable=False),
        sa.Column("input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("output_tokens", sa.BigInteger(), nullable=False),
        sa.Column("images", sa.Integer(), nullable=False),
        sa.Column("characters", sa.BigInteger(), nullable=False),
        sa.Column("micro_credits", sa.BigInteger(), nullable=False),
        sa.Column("price_table_version", sa.String(64), nullable=True),
        sa.Column("estimated", sa.Boolean(), nullable=False),
        sa.Column("latency_ms", sa.Integer(), nullable=True),
        sa.Column("ttft_ms", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_usage_records"),
    )
    op.create_index("ix_usage_records_occurred_at", "usage_records", ["occurred_at"])
    op.create_index(
        "ix_usage_records_project_id_occurred_at", "usage_records", ["project_id", "occurred_at"]
    )
    op.create_index("ix_usage_records_request_id", "usage_records", ["request_id"])

    for name, dimensions in (
        ("usage_hourly", ("project_id", "model", "provider")),
        ("usage_hourly_by_key", ("project_id", "user_id", "key_id", "model", "provider")),
    ):
        op.create_table(
            name,
            sa.Column("bucket_hour", sa.Integer(), nullable=False),
            *(
                sa.Column(dim, sa.String(128 if dim == "model" else 64), nullable=False)
                for dim in dimensions
            ),
            *(
                sa.Column(counter, sa.BigInteger(), nullable=False, server_default="0")
                for counter in _ROLLUP_COUNTERS
            ),
            sa.PrimaryKeyConstraint("bucket_hour", *dimensions, name=f"pk_{name}"),
        )


def downgrade() -> None:
    op.drop_table("usage_hourly_by_key")
    op.drop_table("usage_hourly")
    op.drop_index("ix_usage_records_request_id", table_name="usage_records")
    op.drop_index("ix_usage_records_project_id_occurred_at", table_name="usage_records")
    op.drop_index("ix_usage_records_occurred_at", table_name="usage_records")
    op.drop_table("usage_records")
    op.drop_index("ix_reservation_holds_budget_id", table_name="reservation_holds")
    op.drop_table("reservation_holds")
    op.drop_table("budget_counters")
    op.drop_table("budgets")
    op.drop_index("ix_ledger_reservations_expires_at", table_name="ledger_reservations")
    op.drop_index("ix_ledger_reservations_owner", table_name="ledger_reservations")
    op.drop_table("ledger_reservations")
    op.drop_table("ledger_owners")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS ledger_entries_append_only ON ledger_entries")
        op.execute("DROP FUNCTION IF EXISTS ledger_entries_append_only()")
    else:
        op.execute("DROP TRIGGER IF EXISTS ledger_entries_no_update")
        op.execute("DROP TRIGGER IF EXISTS ledger_entries_no_delete")
    op.drop_index("uq_ledger_entries_charge_request_id", table_name="ledger_entries")
    op.drop_index("ix_ledger_entries_project_id_id", table_name="ledger_entries")
    op.drop_table("ledger_entries")
    op.drop_table("ledger_accounts")
