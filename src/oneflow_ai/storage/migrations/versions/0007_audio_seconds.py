"""Seconds of transcribed audio: what speech to text bills, on ledger charges, usage records
and the hourly rollups.

Revision ID: 0007
Revises: 0005
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_TABLES = ("ledger_entries", "usage_records", "usage_hourly", "usage_hourly_by_key")


def upgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(
                sa.Column("audio_seconds", sa.BigInteger(), nullable=False, server_default="0")
            )


def downgrade() -> None:
    for table in reversed(_TABLES):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("audio_seconds")
