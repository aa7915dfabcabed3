"""The request log's rare filters: partial indexes on errors and on signed-in users' requests.

A page of the request log walks one index newest first until it has its rows, testing the
other filters on each row it passes. A filter on errors (2 % of requests, or one error status)
combined with others that match few rows (one project's strategy-routed errors) walked
hundreds of thousands of rows; errors now have indexes of their own, over everything and per
project, and the requests of signed-in users (most rows carry no user) one per user. Each is
partial, so it costs space only for the rows it serves. (`storage/request_log.py` writes the
conditions so that both databases' planners can prove a query is within an index.)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# Kept literally here (not imported) so that this revision never changes after release.
_INDEXES = (
    ("ix_usage_records_errors_occurred_at_id", ["occurred_at", "id"], "status >= 400"),
    (
        "ix_usage_records_errors_project_id_occurred_at_id",
        ["project_id", "occurred_at", "id"],
        "status >= 400",
    ),
    (
        "ix_usage_records_user_id_occurred_at_id",
        ["user_id", "occurred_at", "id"],
        "user_id IS NOT NULL",
    ),
)


def upgrade() -> None:
    for name, columns, where in _INDEXES:
        op.create_index(
            name,
            "usage_records",
            columns,
            postgresql_where=sa.text(where),
            sqlite_where=sa.text(where),
        )


def downgrade() -> None:
    for name, _, _ in reversed(_INDEXES):
        op.drop_index(name, table_name="usage_records")
