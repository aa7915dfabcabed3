"""Stored prompts and answers: a project's policy, and the retention that ends each body."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from oneflow_ai.storage.request_bodies import (
    BodyPolicy,
    BodyRow,
    get_policy,
    insert_bodies,
    load_body,
    purge_expired,
    set_policy,
)
from tests.support.ledger import create_projects

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


async def test_a_project_stores_nothing_until_it_says_so(engine: AsyncEngine) -> None:
    await create_projects(engine, "p1")
    async with engine.begin() as connection:
        assert await get_policy(connection, "p1") == BodyPolicy()
        await set_policy(connection, "p1", BodyPolicy(True, 3, ("emails",)))
        await set_policy(connection, "p1", BodyPolicy(True, 5, ("card_numbers", "emails")))
        assert await get_policy(connection, "p1") == BodyPolicy(True, 5, ("card_numbers", "emails"))


async def test_a_body_is_gone_after_its_retention(engine: AsyncEngine) -> None:
    rows = [
        BodyRow(f"r{days}", "p1", NOW, NOW + timedelta(days=days), {"q": days}, {"a": days})
        for days in (1, 3)
    ]
    async with engine.begin() as connection:
        await insert_bodies(connection, rows)
    async with engine.begin() as connection:
        later = NOW + timedelta(days=2)
        assert await load_body(connection, "r1", now=NOW) is not None
        assert await load_body(connection, "r1", now=later) is None  # expired: never shown
        kept = await load_body(connection, "r3", now=later)
        assert kept is not None and kept["request"] == {"q": 3}
        assert await purge_expired(connection, now=later) == 1
        assert await purge_expired(connection, now=later) == 0
        assert await load_body(connection, "r3", now=later) is not None
