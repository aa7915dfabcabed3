"""Stored responses of the Responses API, on SQLite and PostgreSQL: per project, a chain of
`previous_response_id` read in one query, deletion, and the retention that ends each."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from oneflow_ai.storage.stored_responses import (
    StoredRow,
    delete_response,
    load_chain,
    load_response,
    purge_expired,
    save_response,
)
from oneflow_ai.storage.tables import utcnow


def _row(rid: str, previous: str | None, project: str = "p1", days: int = 30) -> StoredRow:
    now = utcnow()
    return StoredRow(
        id=rid,
        project_id=project,
        created_at=now,
        expires_at=now + timedelta(days=days),
        previous_response_id=previous,
        model="gpt-4o",
        input=[
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": rid}]}
        ],
        response={
            "id": rid,
            "output": [{"type": "message", "content": []}],
            "metadata": {"k": "v"},
        },
    )


async def test_a_response_is_read_by_its_project_only(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        await save_response(connection, _row("resp_a", None))
    async with engine.connect() as connection:
        found = await load_response(connection, "p1", "resp_a")
        assert found is not None and found.response["metadata"] == {"k": "v"}
        assert found.input[0]["content"][0]["text"] == "resp_a" and not found.expired()
        assert await load_response(connection, "p2", "resp_a") is None
        assert await load_response(connection, "p1", "resp_missing") is None
    async with engine.begin() as connection:
        assert not await delete_response(connection, "p2", "resp_a")
        assert await delete_response(connection, "p1", "resp_a")
        assert not await delete_response(connection, "p1", "resp_a")


async def test_a_chain_is_read_newest_first_and_stops_at_another_project(
    engine: AsyncEngine,
) -> None:
    async with engine.begin() as connection:
        await save_response(connection, _row("resp_0", None, project="p2"))
        await save_response(connection, _row("resp_1", "resp_0"))
        await save_response(connection, _row("resp_2", "resp_1"))
        await save_response(connection, _row("resp_3", "resp_2"))
    async with engine.connect() as connection:
        chain = await load_chain(connection, "p1", "resp_3", limit=100)
        assert [row.id for row in chain] == ["resp_3", "resp_2", "resp_1"]
        assert chain[-1].previous_response_id == "resp_0"  # p2's: not read
        assert [r.id for r in await load_chain(connection, "p1", "resp_3", limit=2)] == [
            "resp_3",
            "resp_2",
        ]
        assert await load_chain(connection, "p2", "resp_3", limit=100) == []


async def test_expired_responses_are_purged(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        await save_response(connection, _row("resp_old", None, days=-2))
        await save_response(connection, _row("resp_new", None))
    async with engine.begin() as connection:
        old = await load_response(connection, "p1", "resp_old")
        assert old is not None and old.expired()
        assert not await delete_response(connection, "p1", "resp_old")  # expired: not deleted
        assert await purge_expired(connection, now=utcnow() - timedelta(days=1)) == 1
        assert await load_response(connection, "p1", "resp_old") is None
        assert await load_response(connection, "p1", "resp_new") is not None
