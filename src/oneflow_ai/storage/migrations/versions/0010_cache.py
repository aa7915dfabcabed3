"""The response cache: a project's cache policy, and what cache hits saved.

``projects.cache`` holds a project's response-cache policy (JSON; null: the cache is off unless
the deployment's CACHE_PROJECTS turns it on).

A request answered from the response cache is charged a fraction of what the live call cost;
``credits_saved`` keeps the rest (micro-credits) on its usage record and in both hourly
rollups, beside the ``cache_hit`` flag and ``cache_hits`` counter of 0004.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_TABLES = ("usage_records", "usage_hourly", "usage_hourly_by_key")


def upgrade() -> None:
    with op.batch_alter_table("projects") as batch:
        batch.add_column(sa.Column("cache", sa.JSON(), nullable=True))
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(
                sa.Column("credits_saved", sa.BigInteger(), nullable=False, server_default="0")
            )


def downgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("credits_saved")
    with op.batch_alter_table("projects") as batch:
        batch.drop_column("cache")
