"""`make bench`: what the gateway adds, measured against the upstream alone in the same run.

Starts every server as a real process and drives it with `wrk` (a load generator not written
in Python, Lua script `bench/wrk/post.lua`):

    direct    the fake OpenAI upstream itself (zero added latency)         the floor
    bare      `bench/bare_forwarder.py`: uvicorn + one pooled aiohttp       what Python + the
              session, no features at all                                   HTTP client cost
    sqlite    `oneflow serve`, one worker, the FULL pipeline on SQLite: a project API key
              (auth), rate limits on the key and the project (requests and tokens, high enough
              never to refuse), routing, a prepaid project (ledger reservation and
              settlement), Prometheus metrics, JSON logs with one access line per request
    postgres  the same in production configuration: DATABASE_URL on a PostgreSQL database the
              run creates and drops itself, REDIS_URL for limits and shared state
    postgres-wb  the same with LEDGER_WRITE_BEHIND=true (settlements through the local spool)
    *-granian  with `--servers uvicorn,granian`: each configuration also served by granian
              (`bench/targets.py` `GRANIAN`) in place of `oneflow serve`'s uvicorn, on a
              database of its own (granian's own settings can come as `--env GRANIAN_...`)
    portkey,  peer gateways (`--peers`, `make bench-peers`), installed into a cache folder by
    litellm   `bench/peers.py`, forwarding to the same fake upstream

The servers under test share one core, the fakes and wrk the other (`taskset`). For
non-streaming chat, streaming chat and `/api/v1/estimate` (OneFlow) at concurrency 1, 10 and
100, each cell runs the targets one after the other (interleaved), and the whole sweep is
repeated `--rounds` times; the table shows the median of the rounds. Then: time to first byte
of a stream (curl, targets interleaved), idle and peak RSS, RSS with 1,000 concurrent open
streams, CPU time per request (the server process's own CPU seconds over the requests it
answered), and two opt-in cells (on by default without --quick):

    --two-workers  the whole machine (nothing pinned), c=50: the bare forwarder, OneFlow with
                   one worker and with two (the scaling ratio two workers / one)
    --faults       10 % of upstream chat calls fail (503, seeded), retries on (OneFlow's
                   defaults): req/s, the error rate the client sees, p50/p99

Prints every cell, then the summary in the layout of docs/benchmarks.md (ratios to the bare
forwarder), and writes JSON (every round's raw figures too) to bench/results/.

Options: --configs sqlite,postgres,postgres-wb (default all three; the PostgreSQL ones are
skipped with a message when the server does not answer), --servers uvicorn,granian (default
uvicorn; granian is skipped with a message when not installed), --postgres-url URL (the server the
fresh database is created on; default postgresql+asyncpg://postgres@127.0.0.1:5432/),
--redis-url URL (default: a redis-server of the run's own; on a given one the run's keys have a
prefix of their own and are deleted at the end), --peers portkey,litellm, --duration SECONDS per
cell (default 6), --rounds N (default 2), --quick (concurrency 1 and 10, 3 s, one round, no
1,000 streams, no two-worker or fault cell), --workers N, --env NAME=VALUE (extra gateway
settings), --profile FILE (py-spy of the first OneFlow target during chat at c=10), --keep-logs.
The replica scaling run is `bench/scaling.py` (`make bench-scaling`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import asdict
from pathlib import Path

import httpx

from bench.backends import (
    DEFAULT_POSTGRES,
    Unreachable,
    forget_keys,
    fresh_database,
    redis_for_bench,
)
from bench.peers import PEERS, InstallFailed
from bench.procs import (
    BIN,
    LOAD_CORE,
    ROOT,
    SERVER_CORE,
    Server,
    Start,
    measure,
    pinned,
    processes,
    profiled,
    repin,
    rss_mib,
    serve_on_port_0,
    ttfb,
    wait_http,
)
from bench.report import FLOORS, GRANIAN, Cell, Report, added_latency, cells_text, median_cell
from bench.targets import (
    MODEL,
    SERVERS,
    UPSTREAM_KEY,
    gateway_env,
    open_streams,
    project_key,
    start_bare,
    start_gateway,
    start_peer,
)

RESULTS = ROOT / "bench" / "results"
PROMPT = "Write one sentence about the sea."
CONFIGS = ("sqlite", "postgres", "postgres-wb")
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 64}
STREAM = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
ESTIMATE = {
    "model": MODEL,
    "input_tokens": 1500,
    "output_tokens": 500,
    "strategy": "cost_optimized",
}
FAULT_RULE = {
    "provider": "openai",
    "endpoint": "chat",
    "probability": 0.1,
    "seed": 7,
    "status": 503,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES)
    parser.add_argument("--redis-url", default=None)
    parser.add_argument("--servers", default="uvicorn", help=", ".join(SERVERS))
    parser.add_argument("--peers", default="", help=f"comma-separated: {','.join(PEERS)}")
    parser.add_argument("--duration", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--two-workers", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--faults", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--profile", default=None, metavar="FILE.svg")
    parser.add_argument("--skip-streams-1000", action="store_true")
    parser.add_argument("--keep-logs", action="store_true", help="copy the servers' logs")
    args = parser.parse_args(argv)
    args.configs = [c for c in args.configs.split(",") if c]
    args.peers = [p for p in args.peers.split(",") if p]
    args.servers = [s for s in args.servers.split(",") if s]
    for name in args.configs:
        if name not in CONFIGS:
            parser.error(f"--configs: unknown {name!r} (known: {', '.join(CONFIGS)})")
    for name in args.peers:
        if name not in PEERS:
            parser.error(f"--peers: unknown {name!r} (known: {', '.join(PEERS)})")
    for name in args.servers:
        if name not in SERVERS:
            parser.error(f"--servers: unknown {name!r} (known: {', '.join(SERVERS)})")
    # Every configuration under every server, one after the other: `sqlite`, `sqlite-granian`.
    args.targets = [
        (config if server == "uvicorn" else f"{config}{GRANIAN}", config, server)
        for config in args.configs
        for server in args.servers
    ]
    for flag in ("two_workers", "faults"):
        if getattr(args, flag) is None:
            setattr(args, flag, not args.quick)
    args.duration = 3 if args.quick else args.duration
    args.rounds = 1 if args.quick else args.rounds
    args.levels = [1, 10] if args.quick else [1, 10, 100]
    return args


def main() -> int:
    args = parse_args()
    if shutil.which("wrk") is None:
        print("bench needs wrk: sudo apt-get install -y wrk", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="oneflow-bench-"))
    try:
        # The servers stop before the services they use (the database is dropped last).
        with ExitStack() as services, processes() as start:
            report = run(services, start, workdir, args)
    except InstallFailed as exc:
        print(exc, file=sys.stderr)
        return 2
    finally:
        if args.keep_logs:
            kept = RESULTS / f"logs-{time.strftime('%Y%m%dT%H%M%S')}"
            kept.mkdir(parents=True, exist_ok=True)
            for log in workdir.glob("*.log"):
                shutil.copy(log, kept / log.name)
            print(f"server logs: {kept.relative_to(ROOT)}")
        shutil.rmtree(workdir, ignore_errors=True)
    print()
    print(cells_text(report))
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"bench-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(json.dumps(asdict(report), indent=2))
    print(f"\nJSON: {out.relative_to(ROOT)}")
    return 0


def config_env(
    stack: ExitStack, name: str, target: str, workdir: Path, args: argparse.Namespace
) -> dict[str, str]:
    """The database (and Redis) settings of configuration `name`, of `target`'s own;
    raises Unreachable."""
    if name == "sqlite":
        return {"DATABASE_URL": f"sqlite+aiosqlite:///{workdir / f'{target}.db'}"}
    database = stack.enter_context(fresh_database(args.postgres_url))
    redis = stack.enter_context(redis_for_bench(args.redis_url))
    # Keys of this run's own on a shared Redis (the database name is random and unique).
    prefix = database.rsplit("/", 1)[1]
    if args.redis_url is not None:
        stack.callback(forget_keys, redis, f"{prefix}:")
    env = {"DATABASE_URL": database, "REDIS_URL": redis, "REDIS_KEY_PREFIX": f"{prefix}:"}
    if name == "postgres-wb":
        env |= {"LEDGER_WRITE_BEHIND": "true", "ONEFLOW_DATA_DIR": str(workdir / target)}
    return env


def start_targets(
    stack: ExitStack, start: Start, workdir: Path, args: argparse.Namespace, report: Report
) -> tuple[str, dict[str, Server], dict[str, dict[str, str]]]:
    """The fakes and every target; the fakes' URL, the servers and each OneFlow's settings."""
    argv = [str(BIN / "oneflow"), "fake-providers"]
    fakes, fake_port = serve_on_port_0(start, pinned(LOAD_CORE, argv), workdir / "fakes.log")
    fake = f"http://127.0.0.1:{fake_port}"
    wait_http(f"{fake}/_fake/calls")
    direct_url = f"{fake}/openai/v1/chat/completions"
    servers = {
        "direct": Server("direct", fakes, direct_url, {"Authorization": f"Bearer {UPSTREAM_KEY}"})
    }
    servers["bare"] = start_bare(start, direct_url, workdir, SERVER_CORE)
    envs: dict[str, dict[str, str]] = {}
    for name, config, server in args.targets:
        try:
            if server == "granian" and not (BIN / "granian").exists():
                raise Unreachable("granian is not installed (pip install 'granian[uvloop]')")
            env = gateway_env(fake, config_env(stack, config, name, workdir, args), args.env)
        except Unreachable as exc:
            report.skipped[name] = str(exc)
            print(f"skipping {name}: {exc}", file=sys.stderr)
            continue
        key = project_key(env, workdir)
        envs[name] = {**env, "BENCH_KEY": key}
        servers[name] = start_gateway(
            start, name, env, key, workdir, workers=args.workers, core=SERVER_CORE, server=server
        )
    for name in args.peers:
        servers[name] = start_peer(start, name, fake, workdir, SERVER_CORE)
    time.sleep(1.0)
    return fake, servers, envs


def run(stack: ExitStack, start: Start, workdir: Path, args: argparse.Namespace) -> Report:
    report = Report(
        machine={
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "workers": args.workers,
            "duration_s": args.duration,
            "rounds": args.rounds,
            "configs": args.configs,
            "servers": args.servers,
            "peers": args.peers,
            "env": args.env,
        }
    )
    fake, servers, envs = start_targets(stack, start, workdir, args, report)
    for name, server in servers.items():
        report.rss_mib[f"{name}_idle"] = rss_mib(server.process.pid)
    oneflow = [name for name, _, _ in args.targets if name in servers]
    report.rounds = sweep_rounds(servers, oneflow, workdir, args)
    for i in range(len(report.rounds[0])):
        report.cells.append(median_cell([sweep[i] for sweep in report.rounds]))
    report.added = added_latency(report.cells)
    for name, server in servers.items():
        report.rss_mib[f"{name}_after_load"] = rss_mib(server.process.pid)
    report.ttfb_ms = ttfb(list(servers.values()), STREAM, 60 if args.quick else 200)
    if oneflow and not (args.quick or args.skip_streams_1000):
        report.streams_1000 = open_streams(fake, servers[oneflow[0]], STREAM, workdir)
        report.rss_mib[f"{oneflow[0]}_1000_streams"] = report.streams_1000["peak_rss_mib"]
    if args.faults:
        report.faults = faults_cells(fake, servers, [*FLOORS[1:], *oneflow], workdir, args)
    if args.two_workers and oneflow:
        report.workers = workers_cells(start, servers, oneflow[0], envs, workdir, args, report)
    for name, server in servers.items():
        report.rss_mib[f"{name}_peak"] = rss_mib(server.process.pid, peak=True)
    return report


Plan = list[tuple[str, dict[str, object], list[str]]]


def _url_of(scenario: str, server: Server) -> str | None:
    if scenario == "estimate":
        return server.chat_url.replace("/v1/chat/completions", "/api/v1/estimate")
    return None


def sweep_rounds(
    servers: dict[str, Server], oneflow: list[str], workdir: Path, args: argparse.Namespace
) -> list[list[Cell]]:
    """Every scenario, concurrency and target, interleaved, `args.rounds` times."""
    plan: Plan = [
        ("chat", CHAT, list(servers)),
        ("chat_stream", STREAM, list(servers)),
        ("estimate", ESTIMATE, oneflow),
    ]
    for scenario, body, names in plan:  # warm up every path
        for name in names:
            server = servers[name]
            measure(server, scenario, body, 4, 1, workdir, url=_url_of(scenario, server))
    profile_target = oneflow[0] if oneflow else None
    rounds = []
    for _ in range(args.rounds):
        sweep = []
        for scenario, body, names in plan:
            for concurrency in args.levels:
                for name in names:
                    server = servers[name]
                    wanted = (scenario, name, concurrency) == ("chat", profile_target, 10)
                    with profiled(server.process.pid, args.profile if wanted else None):
                        url = _url_of(scenario, server)
                        cell = measure(
                            server, scenario, body, concurrency, args.duration, workdir, url=url
                        )
                        sweep.append(cell)
        rounds.append(sweep)
        args.profile = None  # one profile is enough
    return rounds


def faults_cells(
    fake: str, servers: dict[str, Server], names: list[str], workdir: Path, args: argparse.Namespace
) -> list[Cell]:
    """Chat at c=10 while 10 % of upstream chat calls fail with 503 (seeded)."""
    httpx.post(f"{fake}/_fake/faults", json={"rules": [FAULT_RULE]}, timeout=5)
    try:
        return [
            measure(servers[name], "chat_faults", CHAT, 10, args.duration, workdir)
            for name in names
        ]
    finally:
        httpx.delete(f"{fake}/_fake/faults", timeout=5)


def workers_cells(
    start: Start,
    servers: dict[str, Server],
    first: str,
    envs: dict[str, dict[str, str]],
    workdir: Path,
    args: argparse.Namespace,
    report: Report,
) -> list[Cell]:
    """The whole machine at c=50: the bare forwarder, one worker of OneFlow target `first`,
    two workers (on the same server and database)."""
    env, how = envs[first], next(s for n, _, s in args.targets if n == first)
    key = env["BENCH_KEY"]
    two = start_gateway(start, "2-workers", env, key, workdir, workers=2, core=None, server=how)
    time.sleep(1.0)
    report.rss_mib["2_workers_idle"] = rss_mib(two.process.pid)
    two.name = "2 workers"
    one = Server(
        "1 worker", servers[first].process, servers[first].chat_url, servers[first].headers
    )
    moved = [servers["direct"], servers["bare"], one]
    for server in moved:
        repin(server.process.pid, "0-1")
    scenario = f"chat_{first}"
    try:
        measure(two, scenario, CHAT, 8, 1, workdir, core=None)  # warm up both workers
        return [
            measure(server, scenario, CHAT, 50, args.duration, workdir, core=None)
            for server in (servers["bare"], one, two)
        ]
    finally:
        repin(servers["direct"].process.pid, str(LOAD_CORE))
        for server in moved[1:]:
            repin(server.process.pid, str(SERVER_CORE))


if __name__ == "__main__":
    sys.exit(main())
