"""The request log's rare filters are answered from the partial indexes of migration 0006, on
both databases: the plan each planner chooses for a page names the index, so a page of one
project's strategy-routed errors no longer walks the project's (or everyone's) rows."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from oneflow_ai.storage.database import create_engine
from oneflow_ai.storage.request_log import RequestFilter, _page, records

ROWS = 20_000


def _rows() -> list[dict[str, object]]:
    start = datetime(2026, 11, 1, tzinfo=UTC)
    return [
        {
            "request_id": f"req_{i}",
            "occurred_at": start + timedelta(seconds=i),
            "project_id": f"proj_{i % 20}",
            "user_id": f"user_{i % 7}" if i % 50 == 0 else None,
            "key_id": f"key_{i % 400}",
            "model": "gpt-4o",
            "provider": "openai",
            "status": 502 if i % 53 == 0 else 200,
            "strategy": "cost_optimized" if i % 5 == 0 else None,
        }
        for i in range(ROWS)
    ]


async def _plan(connection: AsyncConnection, filters: RequestFilter) -> str:
    dialect = postgresql.dialect() if connection.dialect.name == "postgresql" else sqlite.dialect()
    statement = _page(filters, None, 51).compile(
        dialect=dialect, compile_kwargs={"literal_binds": True}
    )
    if connection.dialect.name == "postgresql":
        result = await connection.execute(text(f"EXPLAIN (FORMAT JSON) {statement}"))
        return json.dumps(result.scalar())
    result = await connection.execute(text(f"EXPLAIN QUERY PLAN {statement}"))
    return " | ".join(str(row[-1]) for row in result.all())


@pytest.mark.parametrize(
    ("filters", "index"),
    [
        (
            RequestFilter(project_id="proj_7", strategy="cost_optimized", status="error"),
            "ix_usage_records_errors_project_id_occurred_at_id",
        ),
        (RequestFilter(project_id="proj_7", status=502), "ix_usage_records_errors_project_id"),
        (RequestFilter(status="error", model="gpt-4o"), "ix_usage_records_errors_occurred_at_id"),
        (RequestFilter(user_id="user_3"), "ix_usage_records_user_id_occurred_at_id"),
    ],
)
async def test_a_rare_filter_walks_its_partial_index(
    database_url: str, filters: RequestFilter, index: str
) -> None:
    engine = create_engine(database_url, pool_size=1)
    try:
        async with engine.begin() as connection:
            await connection.execute(insert(records), _rows())
            await connection.execute(text("ANALYZE"))
        async with engine.connect() as connection:
            assert index in await _plan(connection, filters)
    finally:
        await engine.dispose()
