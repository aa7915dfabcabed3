"""Crash recovery of the ledger: stream checkpoints on reservations, instance identities.

A reservation row may now carry the progress of a streamed answer (tokens delivered and their
price at the last checkpoint); a postpaid stream gets a row of its own at its first
checkpoint. An owner row names the stable instance it belongs to, so that a restarted process
recognises what its previous incarnation left.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_PROGRESS = (
    ("input_tokens", sa.BigInteger()),
    ("output_tokens", sa.BigInteger()),
    ("progress_micro_credits", sa.BigInteger()),
    ("price_table_version", sa.String(64)),
    ("checkpointed_at", sa.DateTime(timezone=True)),
)


def upgrade() -> None:
    with op.batch_alter_table("ledger_owners") as batch:
        batch.add_column(sa.Column("instance", sa.String(100), nullable=True))
    op.create_index("ix_ledger_owners_instance", "ledger_owners", ["instance"])
    with op.batch_alter_table("ledger_reservations") as batch:
        for name, type_ in _PROGRESS:
            batch.add_column(sa.Column(name, type_, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("ledger_reservations") as batch:
        for name, _ in reversed(_PROGRESS):
            batch.drop_column(name)
    op.drop_index("ix_ledger_owners_instance", table_name="ledger_owners")
    with op.batch_alter_table("ledger_owners") as batch:
        batch.drop_column("instance")
