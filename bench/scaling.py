"""`make bench-scaling`: 1, 2, 3 OneFlow replicas behind HAProxy on one PostgreSQL and one
Redis (the local cluster of `make cluster`, tests/support/cluster.py: servers of its own, so
that their statistics count only this run), the full pipeline as in `make bench` (a prepaid
project's key, limits on key and project, metrics, access lines), non-streaming chat through
the load balancer with wrk on the whole machine.

For each replica count it reports req/s, the replicas' CPU per request, and what a request
costs the shared services, read from their own statistics: PostgreSQL transactions
(`pg_stat_database.xact_commit` of the gateway's database), Redis commands
(`INFO stats` `total_commands_processed`, the busiest commands from `INFO commandstats`) and
database growth (`pg_database_size`). The background work (heartbeats, ledger maintenance) is
measured over a quiet window of the same cluster first and subtracted; statistics are read
after a quiet pause so that every backend has flushed its counters (PostgreSQL 15+ flushes at
most every second, idle backends within 10 s). Under load it samples what the gateway's
PostgreSQL backends wait on (`pg_stat_activity`, every 0.5 s). Then it projects, on paper,
what 10k and 100k req/s would need (bench/projection.py; the assumptions are printed).

    python -m bench.scaling [--replicas 1,2,3] [--duration 15] [--concurrency 32]
                            [--env NAME=VALUE ...]

Needs HAProxy, PostgreSQL's server binaries and redis-server (as `make cluster`) and wrk.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from redis import Redis

from bench.backends import libpq_url, psql
from bench.procs import family, run_wrk
from bench.projection import Assumptions, PerRequest, project, projection_markdown
from bench.report import cell_from_wrk
from bench.targets import HIGH, MODEL, project_key

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support.cluster import DATABASE, Cluster, ClusterConfig, local_cluster  # noqa: E402

RESULTS = ROOT / "bench" / "results"
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 64}
QUIET_SECONDS = 11.0
#: The full pipeline, as `make bench` runs it (the cluster's own defaults turn limits off).
PIPELINE = {
    "RATE_LIMIT_PER_MINUTE": HIGH,
    "RATE_LIMIT_PER_HOUR": HIGH,
    "RATE_LIMIT_TOKENS_PER_MINUTE": HIGH,
    "LOG_REQUESTS": "true",
    "ENABLE_METRICS": "true",
    "UPSTREAM_MAX_RETRIES": "2",
}


@dataclass
class Snapshot:
    at: float
    xacts: int
    db_bytes: int
    redis_commands: int
    redis_by_command: dict[str, int]
    cpu_seconds: float


@dataclass
class ScalingRow:
    replicas: int
    rps: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    errors: int
    cpu_ms_per_request: float
    xacts_per_request: float
    redis_commands_per_request: float
    db_bytes_per_request: float
    background_xacts_per_second: float
    background_redis_per_second: float
    top_redis_commands: dict[str, float]
    #: Active PostgreSQL backends of the gateway's database by what they wait on (mean of
    #: samples every 0.5 s under load; "CPU" when not waiting).
    pg_waits: dict[str, float] = field(default_factory=dict)


def snapshot(cluster: Cluster) -> Snapshot:
    sql = (
        "SELECT xact_commit, pg_database_size(datname) FROM pg_stat_database "
        f"WHERE datname = '{DATABASE}'"
    )
    xacts, size = psql(libpq_url(cluster.postgres.url, "postgres"), sql).strip().split("|")
    redis = Redis.from_url(cluster.redis.url)
    try:
        total = int(redis.info("stats")["total_commands_processed"])
        by_command = {
            name.removeprefix("cmdstat_"): int(stats["calls"])
            for name, stats in redis.info("commandstats").items()
        }
    finally:
        redis.close()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = 0.0
    for replica in cluster.replicas:
        for pid in family(replica.pid or 0):
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            cpu += (int(fields[11]) + int(fields[12])) / ticks
    return Snapshot(time.monotonic(), int(xacts), int(size), total, by_command, cpu)


WAITS_SQL = (
    "SELECT coalesce(wait_event_type || ':' || wait_event, 'CPU'), count(*) "
    f"FROM pg_stat_activity WHERE datname = '{DATABASE}' AND state = 'active' "
    "AND pid <> pg_backend_pid() GROUP BY 1"
)


class WaitSampler(threading.Thread):
    """Samples what the gateway's active PostgreSQL backends wait on, every 0.5 s."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.stopped = url, threading.Event()
        self.counts: Counter[str] = Counter()
        self.samples = 0

    def run(self) -> None:
        while not self.stopped.wait(0.5):
            for line in psql(self.url, WAITS_SQL).splitlines():
                event, _, n = line.rpartition("|")
                self.counts[event] += int(n)
            self.samples += 1

    def means(self) -> dict[str, float]:
        self.stopped.set()
        self.join(timeout=10)
        n = max(self.samples, 1)
        return {event: round(count / n, 2) for event, count in self.counts.most_common(6)}


def per_request(
    a: Snapshot, b: Snapshot, c: Snapshot, requests: int
) -> tuple[float, float, float, float, float, dict[str, float]]:
    """From a quiet window a→b and a loaded one b→c (which ends quiet too): per request,
    transactions, Redis commands and database bytes, background subtracted; and the
    background's transactions and commands a second. Our own statistics queries (one
    transaction and two INFO commands each) count as background."""
    quiet, loaded = b.at - a.at, c.at - b.at
    xact_rate = (b.xacts - a.xacts) / quiet
    redis_rate = (b.redis_commands - a.redis_commands) / quiet
    n = max(requests, 1)
    xacts = (c.xacts - b.xacts - xact_rate * loaded) / n
    commands = (c.redis_commands - b.redis_commands - redis_rate * loaded) / n
    top = {
        name: round((calls - b.redis_by_command.get(name, 0)) / n, 3)
        for name, calls in c.redis_by_command.items()
        if calls - b.redis_by_command.get(name, 0) >= n * 0.05
    }
    grown = (c.db_bytes - b.db_bytes) / n
    return xacts, commands, grown, xact_rate, redis_rate, top


def measure_replicas(count: int, args: argparse.Namespace, workdir: Path) -> ScalingRow:
    env = {**PIPELINE, **dict(pair.split("=", 1) for pair in args.env)}
    config = ClusterConfig(replicas=count, env=env)
    logs = workdir / f"replicas-{count}"
    logs.mkdir(parents=True, exist_ok=True)
    with local_cluster(logs, config) as cluster:
        key = project_key({**os.environ, **cluster.env}, workdir)
        headers = {"Authorization": f"Bearer {key}"}
        run_wrk(cluster.url + "/v1/chat/completions", CHAT, headers, 8, 3, workdir, None)
        a = snapshot(cluster)
        time.sleep(QUIET_SECONDS)
        b = snapshot(cluster)
        sampler = WaitSampler(libpq_url(cluster.postgres.url, "postgres"))
        sampler.start()
        raw = run_wrk(
            cluster.url + "/v1/chat/completions",
            CHAT,
            headers,
            args.concurrency,
            args.duration,
            workdir,
            None,
        )
        waits = sampler.means()
        time.sleep(QUIET_SECONDS)
        c = snapshot(cluster)
    cell = cell_from_wrk(
        raw, "chat", f"{count} replicas", args.concurrency, c.cpu_seconds - b.cpu_seconds
    )
    xacts, commands, grown, xact_rate, redis_rate, top = per_request(a, b, c, cell.requests)
    return ScalingRow(
        replicas=count,
        rps=cell.rps,
        p50_ms=cell.p50_ms,
        p99_ms=cell.p99_ms,
        non_2xx=cell.non_2xx,
        errors=cell.errors,
        cpu_ms_per_request=cell.cpu_ms_per_request,
        xacts_per_request=round(xacts, 3),
        redis_commands_per_request=round(commands, 3),
        db_bytes_per_request=round(grown, 1),
        background_xacts_per_second=round(xact_rate, 2),
        background_redis_per_second=round(redis_rate, 2),
        top_redis_commands=top,
        pg_waits=waits,
    )


def rows_markdown(rows: list[ScalingRow]) -> str:
    lines = [
        "| replicas | req/s | p50 ms | p99 ms | non-2xx | CPU ms/req | PostgreSQL xact/req "
        "| Redis commands/req | database bytes/req |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.replicas} | {r.rps:,.0f} | {r.p50_ms:.1f} | {r.p99_ms:.1f} "
            f"| {r.non_2xx + r.errors} | {r.cpu_ms_per_request:.2f} | {r.xacts_per_request:.2f} "
            f"| {r.redis_commands_per_request:.2f} | {r.db_bytes_per_request:,.0f} |"
        )
    return "\n".join(lines)


def cost_of(rows: list[ScalingRow]) -> PerRequest:
    """The per-request cost the projection uses: the one-replica row (no contention between
    replicas for the 2 cores), its CPU, transactions, commands and bytes."""
    one = min(rows, key=lambda r: r.replicas)
    return PerRequest(
        cpu_ms=one.cpu_ms_per_request,
        xacts=one.xacts_per_request,
        redis_commands=one.redis_commands_per_request,
        db_bytes=one.db_bytes_per_request,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--replicas", default="1,2,3")
    parser.add_argument("--duration", type=int, default=15)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="oneflow-scaling-"))
    rows = []
    for count in (int(n) for n in args.replicas.split(",")):
        print(f"{count} replica(s)...", flush=True)
        rows.append(measure_replicas(count, args, workdir))
        print(rows_markdown(rows[-1:]).splitlines()[-1], flush=True)
    assume = Assumptions()
    projections = [project(target, cost_of(rows), assume) for target in (10_000, 100_000)]
    print()
    print(rows_markdown(rows))
    for row in rows:
        print(f"  {row.replicas} replicas: Redis commands/req by command {row.top_redis_commands}")
        print(f"  {row.replicas} replicas: PostgreSQL active backends by wait {row.pg_waits}")
    print(f"\nprojection from {cost_of(rows)}; assumptions {assume}:\n")
    print(projection_markdown(projections, assume))
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"scaling-{time.strftime('%Y%m%dT%H%M%S')}.json"
    body = {
        "rows": [asdict(r) for r in rows],
        "assumptions": asdict(assume),
        "projections": [asdict(p) for p in projections],
    }
    out.write_text(json.dumps(body, indent=2))
    print(f"\nJSON: {out.relative_to(ROOT)} (logs: {workdir})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
