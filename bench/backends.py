"""The production configuration's services for `make bench`: a fresh PostgreSQL database the
run creates and drops itself, and a Redis for limits and shared state (a `redis-server` of the
run's own unless `--redis-url` names one)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEFAULT_POSTGRES = "postgresql+asyncpg://postgres@127.0.0.1:5432/"


class Unreachable(RuntimeError):
    """A service the configuration needs does not answer: the configuration is skipped."""


def libpq_url(url: str, database: str) -> str:
    """`postgresql+asyncpg://user@host:port/anything` as psql spells it, on `database`."""
    scheme, sep, rest = url.partition("://")
    if not sep or not scheme.startswith("postgresql"):
        raise ValueError(f"not a PostgreSQL URL: {url!r}")
    authority = rest.split("/", 1)[0]
    return f"postgresql://{authority}/{database}"


def psql(url: str, sql: str) -> str:
    if shutil.which("psql") is None:
        raise Unreachable("psql is not installed (apt-get install postgresql-client)")
    done = subprocess.run(
        ["psql", url, "-v", "ON_ERROR_STOP=1", "-Atc", sql],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if done.returncode != 0:
        raise Unreachable(f"PostgreSQL at {url.rsplit('/', 1)[0]}: {done.stderr.strip()}")
    return done.stdout


@contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    """A new database on the server of `server_url` (its path is ignored), dropped on the way
    out; yields its URL as the gateway spells it."""
    name = f"oneflow_bench_{uuid.uuid4().hex[:10]}"
    maintenance = libpq_url(server_url, "postgres")
    psql(maintenance, f'CREATE DATABASE "{name}"')
    base = server_url.split("://", 1)
    authority = base[1].split("/", 1)[0]
    try:
        yield f"{base[0]}://{authority}/{name}"
    finally:
        psql(maintenance, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def redis_for_bench(url: str | None) -> Iterator[str]:
    """`url` when given (checked with PING), else a `redis-server` of the run's own."""
    if url is not None:
        from redis import Redis
        from redis.exceptions import RedisError

        try:
            Redis.from_url(url, socket_timeout=3).ping()
        except RedisError as exc:
            raise Unreachable(f"Redis at {url}: {exc}") from None
        yield url
        return
    if shutil.which("redis-server") is None:
        raise Unreachable("redis-server is not installed (apt-get install redis-server)")
    from tests.support.redis_server import PrivateRedis

    server = PrivateRedis()
    try:
        yield server.url
    finally:
        server.remove()


def forget_keys(url: str, prefix: str) -> None:
    """Delete the keys under `prefix` a run left on a shared Redis."""
    from redis import Redis

    client = Redis.from_url(url, socket_timeout=5)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start : start + 500])
    finally:
        client.close()
