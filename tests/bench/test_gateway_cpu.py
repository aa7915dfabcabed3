"""`bench/gateway_cpu.py`'s count of round trips to PostgreSQL."""

from __future__ import annotations

import pytest
from bench.gateway_cpu import _round_trips
from sqlalchemy import text

from oneflow_ai.storage.database import create_engine


@pytest.mark.postgres
async def test_every_statement_and_transaction_boundary_is_a_round_trip(postgres_url: str) -> None:
    engine = create_engine(postgres_url, pool_size=1)
    try:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))  # connected, its statement prepared
            await connection.rollback()
            with _round_trips() as made:
                await connection.execute(text("SELECT 1"))
                await connection.execute(text("SELECT 2"))  # prepared first
                await connection.commit()
            await connection.execute(text("SELECT 3"))  # not counted any more
            await connection.rollback()
    finally:
        await engine.dispose()
    assert [word.upper() for word in made] == ["BEGIN", "SELECT", "PREPARE", "SELECT", "COMMIT"]
