"""Prompt-cache writes by lifetime: usage_records and both hourly rollups count the input
tokens written to a provider's prompt cache for 5 minutes and for an hour (Anthropic bills
them at their own prices), beside the cached-input and reasoning tokens of 0004.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# Kept literally here (not imported) so that this revision never changes after release.
_TABLES = ("usage_records", "usage_hourly", "usage_hourly_by_key")
_COLUMNS = ("cache_write_5m_tokens", "cache_write_1h_tokens")


def upgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            for name in _COLUMNS:
                batch.add_column(
                    sa.Column(name, sa.BigInteger(), nullable=False, server_default="0")
                )


def downgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            for name in reversed(_COLUMNS):
                batch.drop_column(name)
