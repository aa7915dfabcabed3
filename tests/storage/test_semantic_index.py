"""The semantic cache's indexes: the nearest question of a scope, in process (bounded,
expiring) and in PostgreSQL with pgvector."""

from __future__ import annotations

import math

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from oneflow_ai.domain.embeddings import Vector
from oneflow_ai.storage.database import create_engine
from oneflow_ai.storage.semantic_index import (
    MemorySemanticIndex,
    PgVectorSemanticIndex,
    has_pgvector,
)
from tests.support.pgvector import pgvector_missing


def _vector(angle: float) -> Vector:
    return Vector.of_floats([math.cos(angle), math.sin(angle), 0.0])


async def test_the_nearest_question_of_the_scope_and_its_similarity() -> None:
    index = MemorySemanticIndex(max_entries=10)
    await index.add("scope", "a", _vector(0.0), 60)
    await index.add("scope", "b", _vector(1.0), 60)
    await index.add("other", "c", _vector(0.1), 60)
    found = await index.nearest("scope", Vector.of_floats([2.0, 0.2, 0.0]))  # not unit length
    assert found is not None and found[0] == "a"
    assert math.isclose(found[1], math.cos(math.atan(0.1)), rel_tol=1e-6)
    assert await index.nearest("nowhere", _vector(0.0)) is None
    assert await index.nearest("scope", Vector.of_floats([1.0, 0.0])) is None  # other length


async def test_it_keeps_at_most_its_bound_and_forgets_expired_questions() -> None:
    now = [0.0]
    index = MemorySemanticIndex(max_entries=2, clock=lambda: now[0])
    await index.add("scope", "a", _vector(0.0), 60)
    await index.add("scope", "b", _vector(0.5), 10)
    await index.add("scope", "c", _vector(1.0), 60)  # "a" goes: the oldest
    assert len(index) == 2
    found = await index.nearest("scope", _vector(0.0))
    assert found is not None and found[0] == "b"
    now[0] = 11.0  # "b" expired
    found = await index.nearest("scope", _vector(0.0))
    assert found is not None and found[0] == "c"
    assert len(index) == 1
    assert len(MemorySemanticIndex(max_entries=0)) == 0


async def test_a_scope_keeps_at_most_its_own_bound() -> None:
    index = MemorySemanticIndex(max_entries=100, scope_entries=2)
    for key, angle in (("a", 0.0), ("b", 1.0), ("c", 2.0)):
        await index.add("scope", key, _vector(angle), 60)
    await index.add("other", "d", _vector(0.0), 60)
    found = await index.nearest("scope", _vector(0.0))
    assert found is not None and found[0] == "b"  # "a", the scope's oldest, went
    assert len(index) == 3


async def test_a_lookup_of_many_questions_yields_and_finds_the_nearest() -> None:
    index = MemorySemanticIndex(max_entries=1000)
    for i in range(450):
        await index.add("scope", f"k{i}", _vector(i / 100), 60)
    found = await index.nearest("scope", _vector(3.0))
    assert found is not None and found[0] == "k300"


@pytest.mark.postgres
async def test_pgvector_finds_the_nearest_question_of_the_scope(postgres_url: str) -> None:
    engine = create_engine(postgres_url, pool_size=1)
    try:
        if not await has_pgvector(engine):
            pgvector_missing()
        index = PgVectorSemanticIndex(engine)
        await index.add("scope", "a", _vector(0.0), 60)
        await index.add("scope", "b", _vector(1.0), 60)
        await index.add("scope", "gone", _vector(0.05), -1)  # already expired
        await index.add("other", "c", _vector(0.1), 60)
        await index.add("scope", "short", Vector.of_floats([1.0, 0.0]), 60)  # another length
        found = await index.nearest("scope", Vector.of_floats([2.0, 0.2, 0.0]))
        assert found is not None and found[0] == "a"
        assert math.isclose(found[1], math.cos(math.atan(0.1)), rel_tol=1e-5)
        await index.add("scope", "a", _vector(3.0), 60)  # stored again: replaced
        found = await index.nearest("scope", _vector(0.0))
        assert found is not None and found[0] == "b"
        assert await index.nearest("nowhere", _vector(0.0)) is None
    finally:
        await engine.dispose()


async def test_sqlite_has_no_pgvector(database_url: str) -> None:
    engine = create_engine(database_url, pool_size=1)
    try:
        assert await has_pgvector(engine) is (
            engine.dialect.name == "postgresql" and await _extension(engine)
        )
    finally:
        await engine.dispose()


async def _extension(engine: AsyncEngine) -> bool:
    async with engine.connect() as connection:
        found = await connection.execute(
            text("SELECT 1 FROM pg_extension WHERE extname = 'vector'")
        )
        return found.first() is not None
