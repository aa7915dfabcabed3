"""The semantic cache's questions (docs/cache.md#semantic-cache).

``semantic_cache_entries`` holds one row per answer the semantic cache can match: the exact
cache's key of the answer (``entry_key``), the scope it may answer in (a hash of the model,
the system prompt and the earlier turns) and when it expires.

On PostgreSQL, when the ``vector`` extension (pgvector) is installed on the server and this
migration may create it, the table also gets the question's ``embedding`` (``vector``, of any
length: each scope's questions come from one embedding model). Where it cannot, the column is
left out and OneFlow keeps the questions in each process instead (the table stays empty). No
approximate index: a lookup reads one scope's rows (``ix_semantic_cache_entries_scope``) and
scores them exactly (docs/cache.md says why). A downgrade drops the table, not the extension
(other tables of the database may use it).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
import structlog
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

log = structlog.get_logger("oneflow.migrations")

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "semantic_cache_entries",
        sa.Column("entry_key", sa.String(64), nullable=False),
        sa.Column("scope", sa.String(64), nullable=False),
        sa.Column("expires_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("entry_key", name="pk_semantic_cache_entries"),
    )
    op.create_index("ix_semantic_cache_entries_scope", "semantic_cache_entries", ["scope"])
    op.create_index(
        "ix_semantic_cache_entries_expires_at", "semantic_cache_entries", ["expires_at"]
    )
    if _create_vector_extension():
        op.execute("ALTER TABLE semantic_cache_entries ADD COLUMN embedding vector")


def _create_vector_extension() -> bool:
    """Whether the `vector` extension is there (created now if the server has it and this
    role may create it)."""
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return False
    available = bind.execute(
        sa.text("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")
    ).first()
    if available is None:
        log.warning("pgvector_unavailable", hint="the semantic cache keeps its index in process")
        return False
    try:
        with bind.begin_nested():
            bind.execute(sa.text("CREATE EXTENSION IF NOT EXISTS vector"))
    except sa.exc.DBAPIError as exc:
        log.warning(
            "pgvector_not_created",
            error=str(exc).splitlines()[0],
            hint="as a superuser: CREATE EXTENSION vector; ALTER TABLE "
            "semantic_cache_entries ADD COLUMN embedding vector (the semantic cache then "
            "uses it)",
        )
        return False
    return True


def downgrade() -> None:
    op.drop_index("ix_semantic_cache_entries_expires_at", table_name="semantic_cache_entries")
    op.drop_index("ix_semantic_cache_entries_scope", table_name="semantic_cache_entries")
    op.drop_table("semantic_cache_entries")
