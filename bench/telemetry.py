"""``python -m bench.telemetry``: the cost of metrics and tracing, measured with wrk.

What it measures today is the cost of observability at the HTTP level: the same gateway (one
worker, uvloop + httptools) with metrics and tracing off (the baseline of the run), metrics on,
and metrics plus tracing on (every request sampled, spans exported in batches to a collector
that is not there, as a worst case), on ``GET /health``, at concurrency 1, 10 and 100. The
chat, stream and estimate scenarios against the fake providers join these rows once the
gateway's endpoints are in place; the processes, the load generator and the report are the
same.

    .venv/bin/python -m bench.telemetry [--duration 5] [--rounds 3] [--connections 1 10 100]
                                  [--json bench/results/run.json] [--no-pin]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

from bench.harness import ServerProcess, WrkResult, print_table, run_wrk

_TWO_CORES = (os.cpu_count() or 1) >= 2

GATEWAY_TARGETS: dict[str, dict[str, str]] = {
    "gateway, telemetry off": {"ENABLE_METRICS": "false", "ENABLE_TRACING": "false"},
    "gateway, metrics": {"ENABLE_METRICS": "true", "ENABLE_TRACING": "false"},
    "gateway, metrics + tracing": {
        "ENABLE_METRICS": "true",
        "ENABLE_TRACING": "true",
        "OTEL_TRACES_SAMPLER": "always_on",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "1",
    },
}
BASELINE = "gateway, telemetry off"


def gateway(name: str, env: dict[str, str], workdir: Path, cpu: int | None) -> ServerProcess:
    return ServerProcess(
        name=name,
        command=[sys.executable, "-m", "oneflow_ai", "serve", "--port", "{port}"],
        env={"LOG_LEVEL": "WARNING", "LOG_REQUESTS": "true", **env},
        cpu=cpu,
        cwd=workdir,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="runs per target, best kept")
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument(
        "--no-pin",
        action="store_true",
        help="do not pin the server and wrk to separate cores (a machine shared with other work)",
    )
    args = parser.parse_args()
    server_cpu, load_cpu = (1, 0) if _TWO_CORES and not args.no_pin else (None, None)

    results: list[WrkResult] = []
    with tempfile.TemporaryDirectory(prefix="oneflow-bench-") as scratch, ExitStack() as stack:
        servers: dict[str, ServerProcess] = {}
        for name, env in GATEWAY_TARGETS.items():
            workdir = Path(scratch) / f"target{len(servers)}"
            workdir.mkdir()
            servers[name] = stack.enter_context(gateway(name, env, workdir, server_cpu))
        for connections in args.connections:
            best: dict[str, WrkResult] = {}
            # Rounds interleave the targets, so that a noisy moment of a shared machine hits
            # them alike; each target keeps its best round.
            for round_number in range(args.rounds + 1):
                for name, server in servers.items():
                    result = run_wrk(
                        f"{server.url}/health",
                        scenario="health",
                        target=name,
                        connections=connections,
                        duration_s=args.duration if round_number else 1,
                        cpu=load_cpu,
                    )
                    if round_number == 0:
                        continue  # warm-up
                    if name not in best or result.requests_per_s > best[name].requests_per_s:
                        best[name] = result
            for name, result in best.items():
                result.peak_rss_mib = round(servers[name].peak_rss_bytes / 2**20, 1)
                results.append(result)
        for name, server in servers.items():
            print(f"{name}: idle RSS {server.idle_rss_bytes / 2**20:.1f} MiB", file=sys.stderr)
    results.sort(key=lambda r: (r.scenario, r.connections, r.target != BASELINE, r.target))
    print_table(results, BASELINE)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([r.as_dict() for r in results], indent=2))


if __name__ == "__main__":
    main()
