"""The arithmetic of `make bench-scaling`: per-request costs from the services' statistics with
the background subtracted (bench/scaling.py), and the projection to a target request rate
(bench/projection.py)."""

from __future__ import annotations

import pytest
from bench.projection import Assumptions, PerRequest, project, projection_markdown
from bench.scaling import ScalingRow, Snapshot, cost_of, per_request, rows_markdown


def snap(at: float, xacts: int, redis: int, size: int = 0, **by: int) -> Snapshot:
    return Snapshot(at, xacts, size, redis, dict(by), 0.0)


def test_per_request_subtracts_the_background_measured_over_the_quiet_window() -> None:
    a = snap(0.0, 1000, 500, 10_000, evalsha=0)
    b = snap(10.0, 1020, 600, 10_000, evalsha=0)  # 2 xact/s and 10 commands/s alone
    c = snap(30.0, 1240, 2800, 1_010_000, evalsha=2000, ping=10)  # 20 s, 1,000 requests
    xacts, commands, grown, xact_rate, redis_rate, top = per_request(a, b, c, 1000)
    assert (xact_rate, redis_rate) == (2.0, 10.0)
    assert xacts == pytest.approx((220 - 40) / 1000)
    assert commands == pytest.approx((2200 - 200) / 1000)
    assert grown == 1000.0
    assert top == {"evalsha": 2.0}  # commands under 5 % of the requests are left out


def test_the_projection_sizes_replicas_services_and_disk() -> None:
    cost = PerRequest(cpu_ms=1.5, xacts=0.5, redis_commands=3.0, db_bytes=1024.0)
    assume = Assumptions(
        replica_utilisation=0.5,
        pg_xacts_per_core=1000.0,
        redis_commands_per_shard=50_000.0,
        service_utilisation=0.5,
        retention_days=10,
    )
    p = project(10_000, cost, assume)
    assert p.replicas == 30  # 10,000 x 1.5 ms = 15 cores of work, at half load
    assert (p.pg_xacts_per_second, p.pg_cores) == (5000.0, 10)
    assert (p.redis_commands_per_second, p.redis_shards) == (30_000.0, 2)
    assert p.db_gib_per_day == round(10_000 * 86_400 * 1024 / 2**30, 1)
    assert p.db_gib_retained == round(10_000 * 86_400 * 1024 / 2**30 * 10, 1)
    assert project(1, cost, assume).redis_shards == 1
    table = projection_markdown([p], assume)
    assert "| 10,000 req/s | 30 | 5,000 | 10 | 30,000 | 2 |" in table
    assert "(10 days)" in table


def test_the_projection_uses_the_one_replica_row() -> None:
    def row(replicas: int, cpu: float) -> ScalingRow:
        return ScalingRow(replicas, 100.0, 1.0, 2.0, 0, 0, cpu, 0.1, 4.0, 900.0, 0.5, 1.0, {})

    rows = [row(2, 2.0), row(1, 1.0), row(3, 3.0)]
    assert cost_of(rows) == PerRequest(cpu_ms=1.0, xacts=0.1, redis_commands=4.0, db_bytes=900.0)
    assert "| 1 | 100 | 1.0 | 2.0 | 0 | 1.00 | 0.10 | 4.00 | 900 |" in rows_markdown(rows)
