"""An `Identity` on a real migrated database (SQLite and PostgreSQL) with a hand-moved clock."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest
from argon2 import PasswordHasher
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from oneflow_ai.auth.identity import Identity
from oneflow_ai.auth.invalidation import InvalidationBus
from oneflow_ai.auth.passwords import PasswordHashing
from oneflow_ai.settings import Settings
from oneflow_ai.storage.database import create_engine, create_sessionmaker
from tests.support.clock import FakeClock


@dataclass
class IdentityEnv:
    identity: Identity
    clock: FakeClock
    engine: AsyncEngine
    queries: list[str]


@pytest.fixture
async def env(
    database_url: str, make_settings: Callable[..., Settings]
) -> AsyncIterator[IdentityEnv]:
    settings = make_settings(database_url=database_url, api_key_rotation_grace_hours=1)
    engine = create_engine(database_url, pool_size=5)
    queries: list[str] = []

    def count(conn: object, cursor: object, statement: str, *args: object) -> None:
        queries.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", count)
    clock = FakeClock()
    identity = Identity(
        settings,
        create_sessionmaker(engine),
        InvalidationBus(),
        clock=clock,
        monotonic=clock.monotonic,
        # argon2id still, with cheaper parameters: the production ones are tested apart.
        passwords=PasswordHashing(PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)),
    )
    try:
        yield IdentityEnv(identity, clock, engine, queries)
    finally:
        await identity.close()
        await engine.dispose()
