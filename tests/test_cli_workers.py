"""`oneflow serve --workers N` without Redis: every worker would keep its own rate-limit
counters (every limit N times over), idempotency keys and caches. It refuses to start unless
told that is acceptable, and then its start-up lines say so; with Redis, the workers share
them."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import redis_server_url
from tests.support.oneflow_serve import serve_environment, serve_refusal, started

PER_WORKER = "rate limits: per worker (2 workers without REDIS_URL: every limit applies 2 times"


def test_several_workers_without_redis_refuse_to_start(tmp_path: Path) -> None:
    code, lines = serve_refusal(tmp_path, serve_environment(tmp_path), "--workers", "2")
    assert code == 2
    assert lines == [
        "oneflow: --workers 2 without REDIS_URL would give each worker its own rate-limit "
        "counters (every limit 2 times over), idempotency keys and caches: set REDIS_URL, or "
        "pass --allow-per-worker-limits to accept that"
    ]


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_per_worker_limits_allowed_explicitly_are_announced(tmp_path: Path, how: str) -> None:
    args = ["--workers", "2", "--migrate"]
    env = serve_environment(tmp_path)
    if how == "flag":
        args.append("--allow-per-worker-limits")
    else:
        env["ALLOW_PER_WORKER_LIMITS"] = "true"
    with started(tmp_path, env, *args) as gateway:
        gateway.wait("/ready")
        assert PER_WORKER in gateway.output()


def test_one_worker_without_redis_needs_no_permission(tmp_path: Path) -> None:
    with started(tmp_path, serve_environment(tmp_path), "--migrate") as gateway:
        gateway.wait("/ready")
        assert "rate limits:" not in gateway.output()


@pytest.mark.redis
def test_several_workers_with_redis_share_their_limits(tmp_path: Path, redis_prefix: str) -> None:
    env = serve_environment(
        tmp_path, {"REDIS_URL": redis_server_url() or "", "REDIS_KEY_PREFIX": redis_prefix}
    )
    with started(tmp_path, env, "--workers", "2", "--migrate") as gateway:
        gateway.wait("/ready")
        assert "rate limits:" not in gateway.output()
