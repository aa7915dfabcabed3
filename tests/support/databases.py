"""Real databases for tests: a fresh SQLite file, or a fresh PostgreSQL database per use.

`TEST_DATABASE_URL` names a PostgreSQL server the suite may create databases on (CI sets it);
each use gets a database of its own, so parallel runs never share state.
"""

from __future__ import annotations

import os
import uuid

import asyncpg
from sqlalchemy.engine import make_url

__all__ = ["create_pg_database", "drop_pg_database", "pg_server_url"]


def pg_server_url() -> str | None:
    url = os.environ.get("TEST_DATABASE_URL", "").strip()
    return url or None


def _dsn(url: str, database: str) -> str:
    parsed = make_url(url).set(drivername="postgresql", database=database)
    return parsed.render_as_string(hide_password=False)


async def create_pg_database(server_url: str, prefix: str = "oneflow_test") -> str:
    """Create an empty database; returns its `postgresql+asyncpg://` URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    maintenance = make_url(server_url).database or "postgres"
    connection = await asyncpg.connect(_dsn(server_url, maintenance))
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return (
        make_url(server_url)
        .set(drivername="postgresql+asyncpg", database=name)
        .render_as_string(hide_password=False)
    )


async def drop_pg_database(url: str) -> None:
    parsed = make_url(url)
    name = parsed.database
    assert name and name.startswith("oneflow_test"), name
    maintenance_url = os.environ.get("TEST_DATABASE_URL", "")
    maintenance = make_url(maintenance_url).database or "postgres"
    connection = await asyncpg.connect(_dsn(url, maintenance))
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()
