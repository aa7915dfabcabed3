"""On paper: the replicas, PostgreSQL, Redis and disk a target request rate needs, from the
per-request figures `make bench-scaling` measures (CPU, database transactions, Redis commands,
database growth). Pure arithmetic; the assumptions are explicit fields, printed with the
result (docs/benchmarks.md carries one projection)."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class PerRequest:
    """What one request costs, as measured (bench/scaling.py)."""

    cpu_ms: float  # OneFlow replica CPU (one worker per replica)
    xacts: float  # PostgreSQL transactions committed
    redis_commands: float
    db_bytes: float  # growth of the database (usage records, ledger rows, indexes)


@dataclass(frozen=True)
class Assumptions:
    #: A replica is one worker on one core, run at most this busy (headroom for bursts).
    replica_utilisation: float = 0.6
    #: Small write transactions (a few rows, group commit) one PostgreSQL core sustains.
    pg_xacts_per_core: float = 4000.0
    #: Commands one Redis shard (single-threaded) sustains, pipelined Lua scripts included.
    redis_commands_per_shard: float = 80_000.0
    #: How busy the database and Redis may run.
    service_utilisation: float = 0.6
    #: How long request records are kept in the database.
    retention_days: int = 30


@dataclass(frozen=True)
class Projection:
    target_rps: float
    replicas: int
    pg_xacts_per_second: float
    pg_cores: int
    redis_commands_per_second: float
    redis_shards: int
    db_gib_per_day: float
    db_gib_retained: float


def project(target_rps: float, cost: PerRequest, assume: Assumptions) -> Projection:
    """What `target_rps` requests a second need at `cost` each, under `assume`."""
    xacts = target_rps * cost.xacts
    commands = target_rps * cost.redis_commands
    per_day = target_rps * 86_400 * cost.db_bytes / 2**30
    return Projection(
        target_rps=target_rps,
        replicas=math.ceil(target_rps * cost.cpu_ms / 1000 / assume.replica_utilisation),
        pg_xacts_per_second=round(xacts, 1),
        pg_cores=math.ceil(xacts / (assume.pg_xacts_per_core * assume.service_utilisation)),
        redis_commands_per_second=round(commands, 1),
        redis_shards=max(
            1, math.ceil(commands / (assume.redis_commands_per_shard * assume.service_utilisation))
        ),
        db_gib_per_day=round(per_day, 1),
        db_gib_retained=round(per_day * assume.retention_days, 1),
    )


def projection_markdown(rows: list[Projection], assume: Assumptions) -> str:
    lines = [
        "| target | replicas (1 worker, 1 core each) | PostgreSQL xact/s | PostgreSQL cores "
        "| Redis commands/s | Redis shards | database growth/day "
        f"| database size ({assume.retention_days} days) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for p in rows:
        lines.append(
            f"| {p.target_rps:,.0f} req/s | {p.replicas:,} | {p.pg_xacts_per_second:,.0f} "
            f"| {p.pg_cores:,} | {p.redis_commands_per_second:,.0f} | {p.redis_shards:,} "
            f"| {p.db_gib_per_day:,.1f} GiB | {p.db_gib_retained:,.0f} GiB |"
        )
    return "\n".join(lines)
