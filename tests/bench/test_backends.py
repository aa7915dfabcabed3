"""The services of `make bench` on servers given to it: the run's keys on a shared Redis are
deleted at the end, the fresh PostgreSQL database is dropped."""

from __future__ import annotations

import os
import uuid

import pytest
from bench.backends import forget_keys, fresh_database, libpq_url, psql
from redis import Redis

from tests.conftest import redis_server_url


@pytest.mark.redis
def test_the_run_s_keys_are_deleted_and_no_other() -> None:
    url = redis_server_url()
    assert url is not None
    prefix = f"oneflow_bench_test_{uuid.uuid4().hex[:8]}:"
    client = Redis.from_url(url)
    try:
        for i in range(1200):  # more than one batch of deletes
            client.set(f"{prefix}{i}", 1, ex=60)
        client.set(f"{prefix[:-1]}-other", 1, ex=60)
        forget_keys(url, prefix)
        assert list(client.scan_iter(match=f"{prefix}*")) == []
        assert client.get(f"{prefix[:-1]}-other") == b"1"
    finally:
        client.delete(f"{prefix[:-1]}-other")
        client.close()


@pytest.mark.postgres
def test_the_fresh_database_is_dropped_on_the_way_out() -> None:
    server = os.environ.get("TEST_DATABASE_URL")
    assert server, "needs TEST_DATABASE_URL"
    with fresh_database(server) as url:
        name = url.rsplit("/", 1)[1]
        assert name.startswith("oneflow_bench_")
        assert psql(libpq_url(url, name), "SELECT 1").strip() == "1"
    listed = psql(libpq_url(server, "postgres"), "SELECT datname FROM pg_database")
    assert name not in listed.split()
