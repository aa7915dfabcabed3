"""`make cluster`: three OneFlow replicas behind HAProxy on one PostgreSQL and one Redis of
their own, in front of the fake providers, until Ctrl-C.

    python scripts/cluster.py [run] [--replicas N] [--port P] [--env NAME=VALUE ...]
    python scripts/cluster.py prove [--env NAME=VALUE ...] [--rates A,LIMITED,B]
                              [--postgres-down S] [--redis-down S] [--no-kill] ...

`run` prints the load balancer's URL, a prepaid project's API key, the master key and the
process ids (stop a replica, PostgreSQL or Redis by hand to see what happens). `prove` runs the
cluster test's scenario (tests/support/cluster_scenario.py) once and prints its table and
problems: `--env` passes gateway settings, e.g. those a branch under test adds.

Needs HAProxy (Debian: `apt-get install haproxy`), PostgreSQL's server binaries (`initdb`,
`pg_ctl`: `apt-get install postgresql`) and `redis-server` (`apt-get install redis-server`).
Nothing system-wide is started or stopped: every server runs from a temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import tempfile
import threading
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.cluster import ClusterConfig, local_cluster  # noqa: E402
from tests.support.cluster_faults import Timeline  # noqa: E402
from tests.support.cluster_scenario import FAKE_OPTIONS, Scenario, prove  # noqa: E402
from tests.support.gateway_load import MASTER, new_prepaid_project  # noqa: E402


def _env(pairs: list[str]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--env wants NAME=VALUE, not {pair!r}")
        env[name] = value
    return env


def run(args: argparse.Namespace) -> None:
    config = ClusterConfig(
        replicas=args.replicas, env=_env(args.env), fake_options=FAKE_OPTIONS, port=args.port
    )
    workdir = Path(tempfile.mkdtemp(prefix="oneflow-cluster-"))
    print(f"starting {args.replicas} replicas, HAProxy, PostgreSQL and Redis (logs: {workdir})")
    with local_cluster(workdir, config) as cluster:
        key = new_prepaid_project(cluster.url, "demo", "1000")
        print(f"\nOneFlow cluster at {cluster.url}")
        print(f"  master key            {MASTER}")
        print(f"  project demo (prepaid, 1000 credits) key  {key}")
        for replica in cluster.replicas:
            print(f"  {replica.name:<21} {replica.url}  pid {replica.pid}")
        balancer = cluster.balancer
        print(f"  HAProxy               pid {balancer.process.pid}  ({balancer.directory})")
        print(f"  PostgreSQL            {cluster.database_url}  ({cluster.postgres.directory})")
        print(f"  Redis                 {cluster.redis.url}")
        print(f"  fake providers        {cluster.fakes.url}")
        print("\ntry:")
        print(f"  curl {cluster.url}/v1/chat/completions -H 'Authorization: Bearer {key}' \\")
        print("    -H 'Content-Type: application/json' \\")
        print('    -d \'{"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}]}\'')
        print("\nCtrl-C stops everything.")
        stopped = threading.Event()
        # Both set by hand: a shell may start a background job with SIGINT ignored.
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stopped.set())
        while not stopped.wait(0.5):
            pass
        print("stopping")


def prove_once(args: argparse.Namespace) -> int:
    timeline = replace(
        Timeline(),
        postgres_down=args.postgres_down,
        redis_down=args.redis_down,
        kill=not args.no_kill,
        rolling_update=not args.no_rolling_update,
    )
    rates = tuple(float(r) for r in args.rates.split(","))
    assert len(rates) == 3, "--rates A,LIMITED,B"
    scenario = Scenario(timeline=timeline, rates=rates)
    workdir = Path(tempfile.mkdtemp(prefix="oneflow-cluster-"))
    print(f"logs: {workdir}")
    with local_cluster(workdir, scenario.cluster_config(_env(args.env))) as cluster:
        report = asyncio.run(prove(cluster, scenario))
    print(report.table)
    for problem in report.problems:
        print(f"PROBLEM: {problem}")
    return 1 if report.problems else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", nargs="?", default="run", choices=("run", "prove"))
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--port", type=int, default=8080, help="the load balancer's port")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--rates", default="8,2,6", help="requests/s of callers a, limited, b")
    parser.add_argument("--postgres-down", type=float, default=20.0)
    parser.add_argument("--redis-down", type=float, default=10.0)
    parser.add_argument("--no-kill", action="store_true")
    parser.add_argument("--no-rolling-update", action="store_true")
    args = parser.parse_args()
    if args.command == "prove":
        raise SystemExit(prove_once(args))
    run(args)


if __name__ == "__main__":
    main()
