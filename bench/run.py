"""`make bench`: what the gateway adds, measured against the upstream alone in the same run.

Starts three kinds of server as real processes and drives them with `wrk` (a load generator
not written in Python, Lua script `bench/wrk/post.lua`):

    direct   the fake OpenAI upstream itself (zero added latency)          the floor
    bare     `bench/bare_forwarder.py`: uvicorn + one pooled aiohttp        what Python + the
             session, no features at all                                    HTTP client cost
    gateway  `oneflow serve`, one worker, the FULL pipeline: a project API key (auth), rate
             limits on the key and the project (requests and tokens, high enough never to
             refuse), routing, a prepaid project (ledger reservation and settlement, SQLite
             unless --database-url), Prometheus metrics, JSON logs with one access line per
             request

The bare forwarder and the gateway share one core, the fakes and wrk the other (`taskset`).
For non-streaming chat, streaming chat (direct, bare, gateway) and `/api/v1/estimate` (gateway)
at concurrency 1, 10 and 100, each cell runs the targets one after the other (interleaved),
and the whole sweep is repeated `--rounds` times; the table shows the median of the rounds,
so a neighbour's burst on a shared machine moves one sample, not the result. Then: time to
first byte of a stream (curl, the three targets interleaved), idle and peak RSS, RSS with
1,000 concurrent open streams, and CPU time per request (the server process's own CPU seconds
over the requests it answered, a figure waiting for a busy core does not inflate).

Prints a table and writes JSON (every round's raw figures too) to bench/results/.

Options: --duration SECONDS per cell (default 6), --rounds N (default 2), --quick (concurrency
1 and 10, 3 s, one round, no 1,000 streams), --workers N, --database-url URL,
--env NAME=VALUE (extra gateway settings, e.g. ENABLE_TRACING=true, to compare variants),
--profile FILE (py-spy flame graph of the gateway during chat at concurrency 10; needs py-spy),
--keep-logs (copy the servers' logs, access lines included, to bench/results/logs-<time>/).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
LUA = ROOT / "bench" / "wrk" / "post.lua"
RESULTS = ROOT / "bench" / "results"
BIN = Path(sys.executable).parent
MODEL = "gpt-4o"
PROMPT = "Write one sentence about the sea."
MASTER_KEY = "sk-bench-master-key-0123456789abcdef"
UPSTREAM_KEY = "sk-bench-openai-key"
#: Limits high enough never to refuse, so that every window is still checked and charged.
HIGH = "1000000000"
LOAD_CORE, SERVER_CORE = 0, 1
TARGETS = ("direct", "bare", "gateway")


@dataclass
class Cell:
    scenario: str
    target: str
    concurrency: int
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    errors: int
    non_2xx: int
    requests: int
    cpu_ms_per_request: float


@dataclass
class Report:
    machine: dict[str, object]
    cells: list[Cell] = field(default_factory=list)
    rounds: list[list[Cell]] = field(default_factory=list)
    added: list[dict[str, object]] = field(default_factory=list)
    ttfb_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    rss_mib: dict[str, float] = field(default_factory=dict)
    streams_1000: dict[str, float] = field(default_factory=dict)


@dataclass
class Server:
    """A server process and the URLs wrk drives on it."""

    name: str
    process: subprocess.Popen[bytes]
    chat_url: str

    def cpu_seconds(self) -> float:
        """User + system CPU time of the process and its children (uvicorn workers)."""
        ticks = os.sysconf("SC_CLK_TCK")
        total = 0.0
        for pid in _family(self.process.pid):
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / ticks
        return total


# ---- processes ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pinned(core: int, argv: list[str]) -> list[str]:
    if shutil.which("taskset") and (os.cpu_count() or 1) > 1:
        return ["taskset", "-c", str(core), *argv]
    return argv


def wait_http(url: str, timeout: float = 60.0, method: str = "GET") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.request(method, url, timeout=1.0)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


def _family(pid: int) -> list[int]:
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    return pids


def rss_mib(pid: int, peak: bool = False) -> float:
    """RSS (or its high-water mark) of a process and its children, in MiB."""
    total = 0
    for one in _family(pid):
        status = Path(f"/proc/{one}/status")
        if not status.exists():
            continue
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:" if peak else "VmRSS:"):
                total += int(line.split()[1])
    return round(total / 1024, 1)


@contextmanager
def processes() -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start processes in their own sessions; all are stopped on the way out."""
    started: list[subprocess.Popen[bytes]] = []

    def start(argv: list[str], log: Path, **kwargs: object) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(  # type: ignore[call-overload]
            argv,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **kwargs,
        )
        started.append(process)
        return process  # type: ignore[no-any-return]

    try:
        yield start
    finally:
        for process in reversed(started):
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=15)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                with suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)


def gateway_env(fake: str, workdir: Path, args: argparse.Namespace) -> dict[str, str]:
    env = {
        **os.environ,
        "ENVIRONMENT": "development",
        "LOG_FORMAT": "json",
        "LOG_REQUESTS": "true",
        "ENABLE_METRICS": "true",
        "DATABASE_URL": args.database_url or f"sqlite+aiosqlite:///{workdir / 'oneflow.db'}",
        "ONEFLOW_MASTER_KEY": MASTER_KEY,
        "FAKE_PROVIDERS": "off",
        "RATE_LIMIT_PER_MINUTE": HIGH,
        "RATE_LIMIT_PER_HOUR": HIGH,
        "RATE_LIMIT_TOKENS_PER_MINUTE": HIGH,
        # --workers N without Redis: the limits are out of the way anyway (HIGH, per worker).
        "ALLOW_PER_WORKER_LIMITS": "true",
    }
    for provider, suffix in (
        ("openai", "/openai/v1"),
        ("anthropic", "/anthropic"),
        ("stability", "/stability"),
        ("elevenlabs", "/elevenlabs"),
    ):
        env[f"{provider.upper()}_API_KEY"] = f"sk-bench-{provider}-key"
        env[f"{provider.upper()}_BASE_URL"] = fake + suffix
    for pair in args.env:
        name, _, value = pair.partition("=")
        env[name] = value
    return env


def cli(env: dict[str, str], workdir: Path, *argv: str) -> str:
    out = subprocess.run(
        [str(BIN / "oneflow"), *argv], env=env, cwd=workdir, capture_output=True, text=True
    )
    if out.returncode != 0:
        raise RuntimeError(f"oneflow {' '.join(argv)} failed:\n{out.stdout}\n{out.stderr}")
    return out.stdout


def project_key(env: dict[str, str], workdir: Path) -> str:
    """A member key of a prepaid project with request and token limits on both, so that auth,
    every rate-limit window and the ledger's reservation run as for any paying caller."""
    limits = ["--rpm", HIGH, "--rph", HIGH, "--tpm", HIGH]
    cli(env, workdir, "db", "upgrade")
    cli(env, workdir, "projects", "create", "bench", "--id", "bench", *limits)
    cli(env, workdir, "credits", "topup", "bench", "1000000000")
    created = cli(env, workdir, "keys", "create", "--project", "bench", "--name", "bench", "--json")
    key: str = json.loads(created)["key"]
    return key


# ---- measuring ------------------------------------------------------------------------------


def run_wrk(
    url: str,
    body: dict[str, object],
    headers: dict[str, str],
    concurrency: int,
    duration: int,
    workdir: Path,
) -> dict[str, object]:
    body_file = workdir / f"body-{abs(hash(json.dumps(body)))}.json"
    body_file.write_text(json.dumps(body))
    env = {
        **os.environ,
        "BENCH_BODY_FILE": str(body_file),
        "BENCH_HEADERS": "|".join(f"{k}: {v}" for k, v in headers.items()),
    }
    wrk = ["wrk", "-t1", f"-c{concurrency}", f"-d{duration}s", "--timeout", "10s"]
    argv = pinned(LOAD_CORE, [*wrk, "-s", str(LUA), url])
    out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=duration + 60)
    for line in out.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            result: dict[str, object] = json.loads(line.removeprefix("BENCH_JSON "))
            return result
    raise RuntimeError(f"wrk printed no summary:\n{out.stdout}\n{out.stderr}")


def measure(
    server: Server,
    scenario: str,
    url: str,
    body: dict[str, object],
    headers: dict[str, str],
    concurrency: int,
    duration: int,
    workdir: Path,
) -> Cell:
    cpu_before = server.cpu_seconds()
    raw = run_wrk(url, body, headers, concurrency, duration, workdir)
    cpu = server.cpu_seconds() - cpu_before
    latency, errors, statuses = raw["latency_us"], raw["errors"], raw.get("statuses") or {}
    assert isinstance(latency, dict) and isinstance(errors, dict) and isinstance(statuses, dict)
    requests = int(str(raw["requests"]))
    return Cell(
        scenario=scenario,
        target=server.name,
        concurrency=concurrency,
        rps=round(requests / (int(str(raw["duration_us"])) / 1e6), 1),
        p50_ms=round(latency["p50"] / 1000, 3),
        p90_ms=round(latency["p90"] / 1000, 3),
        p99_ms=round(latency["p99"] / 1000, 3),
        errors=sum(int(v) for k, v in errors.items() if k != "status"),
        non_2xx=sum(int(n) for code, n in statuses.items() if not str(code).startswith("2")),
        requests=requests,
        cpu_ms_per_request=round(cpu * 1000 / requests, 3) if requests else 0.0,
    )


def median_cell(samples: list[Cell]) -> Cell:
    """The median of each figure over the rounds (errors are summed)."""
    first = samples[0]

    def med(name: str) -> float:
        return round(float(statistics.median(getattr(s, name) for s in samples)), 3)

    return Cell(
        scenario=first.scenario,
        target=first.target,
        concurrency=first.concurrency,
        rps=med("rps"),
        p50_ms=med("p50_ms"),
        p90_ms=med("p90_ms"),
        p99_ms=med("p99_ms"),
        errors=sum(s.errors for s in samples),
        non_2xx=sum(s.non_2xx for s in samples),
        requests=sum(s.requests for s in samples),
        cpu_ms_per_request=med("cpu_ms_per_request"),
    )


def ttfb(
    urls: dict[str, str], body: dict[str, object], headers: dict[str, dict[str, str]], n: int
) -> dict[str, dict[str, float]]:
    """Time to first byte of a stream, measured by curl, the targets interleaved."""
    samples: dict[str, list[float]] = {name: [] for name in urls}
    for _ in range(n):
        for name, url in urls.items():
            argv = ["curl", "-s", "-o", "/dev/null", "-w", "%{time_starttransfer}", "-X", "POST"]
            for header, value in {"Content-Type": "application/json", **headers[name]}.items():
                argv += ["-H", f"{header}: {value}"]
            argv += ["--data", json.dumps(body), url]
            out = subprocess.run(
                pinned(LOAD_CORE, argv), capture_output=True, text=True, timeout=30
            )
            samples[name].append(float(out.stdout) * 1000)
    result = {}
    for name, values in samples.items():
        ordered = sorted(values)
        result[name] = {
            "p50": round(statistics.median(ordered), 3),
            "p90": round(ordered[int(len(ordered) * 0.9)], 3),
        }
    return result


def open_streams(
    fake: str, gateway: Server, headers: dict[str, str], stream: dict[str, object], workdir: Path
) -> dict[str, float]:
    """Peak RSS while 1,000 streams are open at once (slow upstream chunks keep them open),
    and how many of those streams completed, failed or were refused."""
    httpx.post(
        f"{fake}/_fake/faults",
        json={"rules": [{"provider": "openai", "chunk_delay_ms": 200}]},
        timeout=5,
    )
    body_file = workdir / "stream-1000.json"
    body_file.write_text(json.dumps({**stream, "max_tokens": 40}))
    try:
        argv = ["wrk", "-t1", "-c1000", "-d12s", "--timeout", "30s", "-s", str(LUA)]
        proc = subprocess.Popen(
            pinned(LOAD_CORE, [*argv, gateway.chat_url]),
            env={
                **os.environ,
                "BENCH_BODY_FILE": str(body_file),
                "BENCH_HEADERS": "|".join(f"{k}: {v}" for k, v in headers.items()),
            },
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        peak = 0.0
        while proc.poll() is None:
            peak = max(peak, rss_mib(gateway.process.pid))
            time.sleep(0.25)
        summary = (
            next(
                (
                    line
                    for line in proc.stdout.read().splitlines()
                    if line.startswith("BENCH_JSON ")
                ),
                None,
            )
            if proc.stdout is not None
            else None
        )
        raw = json.loads(summary.removeprefix("BENCH_JSON ")) if summary else {}
        statuses = raw.get("statuses", {})
        return {
            "peak_rss_mib": peak,
            "completed": float(raw.get("requests", 0)),
            "non_2xx": float(sum(n for code, n in statuses.items() if not code.startswith("2"))),
            "socket_errors": float(
                sum(n for kind, n in raw.get("errors", {}).items() if kind != "status")
            ),
        }
    finally:
        httpx.delete(f"{fake}/_fake/faults", timeout=5)


@contextmanager
def profiled(pid: int, out: str | None) -> Iterator[None]:
    """py-spy flame graph of `pid` while the block runs (when asked and installed)."""
    spy = shutil.which("py-spy") or str(BIN / "py-spy")
    if out is None or not Path(spy).exists():
        yield
        return
    argv = [spy, "record", "--pid", str(pid), "--output", out, "--rate", "1000", "--nonblocking"]
    if not out.endswith(".svg"):  # collapsed stacks, one line each, for reading as text
        argv += ["--format", "raw"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)


# ---- the report -----------------------------------------------------------------------------


def added_latency(cells: list[Cell]) -> list[dict[str, object]]:
    by_key = {(c.scenario, c.target, c.concurrency): c for c in cells}
    rows = []
    for c in cells:
        if c.target != "gateway" or (c.scenario, "direct", c.concurrency) not in by_key:
            continue
        direct = by_key[(c.scenario, "direct", c.concurrency)]
        bare = by_key.get((c.scenario, "bare", c.concurrency))
        rows.append(
            {
                "scenario": c.scenario,
                "concurrency": c.concurrency,
                "added_p50_ms": round(c.p50_ms - direct.p50_ms, 3),
                "added_p99_ms": round(c.p99_ms - direct.p99_ms, 3),
                "bare_added_p50_ms": round(bare.p50_ms - direct.p50_ms, 3) if bare else None,
                "rps_vs_direct": round(c.rps / direct.rps, 3) if direct.rps else 0.0,
                "rps_vs_bare": round(c.rps / bare.rps, 3) if bare and bare.rps else None,
            }
        )
    return rows


def print_table(report: Report) -> None:
    print()
    print(
        f"{'scenario':<12}{'target':<9}{'conc':>5}{'req/s':>9}{'p50 ms':>9}{'p90 ms':>9}"
        f"{'p99 ms':>9}{'CPU ms/req':>11}{'errors':>8}{'non-2xx':>8}"
    )
    for c in report.cells:
        print(
            f"{c.scenario:<12}{c.target:<9}{c.concurrency:>5}{c.rps:>9.0f}{c.p50_ms:>9.3f}"
            f"{c.p90_ms:>9.3f}{c.p99_ms:>9.3f}{c.cpu_ms_per_request:>11.3f}{c.errors:>8}"
            f"{c.non_2xx:>8}"
        )
    print()
    print("added latency (gateway minus direct; the bare forwarder's for scale):")
    for a in report.added:
        print(
            f"  {a['scenario']:<12} c={a['concurrency']:<4} p50 +{a['added_p50_ms']:.3f} ms"
            f"  p99 +{a['added_p99_ms']:.3f} ms  (bare p50 +{a['bare_added_p50_ms']:.3f} ms)"
            f"  req/s {a['rps_vs_direct']:.2f}x direct, {a['rps_vs_bare']:.2f}x bare"
        )
    if report.ttfb_ms:
        parts = [f"{k} p50 {v['p50']:.3f} / p90 {v['p90']:.3f}" for k, v in report.ttfb_ms.items()]
        print("stream time to first byte (ms): " + "; ".join(parts))
        added = report.ttfb_ms["gateway"]["p50"] - report.ttfb_ms["direct"]["p50"]
        print(f"  gateway adds {added:.3f} ms to the first byte (p50)")
    print(f"RSS (MiB): {report.rss_mib}")
    if report.streams_1000:
        s = report.streams_1000
        print(
            f"1,000 concurrent streams (12 s, slow upstream): {s['completed']:.0f} completed,"
            f" {s['non_2xx']:.0f} non-2xx, {s['socket_errors']:.0f} socket errors,"
            f" peak RSS {s['peak_rss_mib']:.1f} MiB"
        )


# ---- the run --------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--duration", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--profile", default=None, metavar="FILE.svg")
    parser.add_argument("--skip-streams-1000", action="store_true")
    parser.add_argument("--keep-logs", action="store_true", help="copy the servers' logs")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("bench needs wrk: sudo apt-get install -y wrk", file=sys.stderr)
        return 2
    duration = 3 if args.quick else args.duration
    rounds = 1 if args.quick else args.rounds
    levels = [1, 10] if args.quick else [1, 10, 100]

    workdir = Path(tempfile.mkdtemp(prefix="oneflow-bench-"))
    try:
        with processes() as start:
            report = run(start, workdir, args, duration, rounds, levels)
    finally:
        if args.keep_logs:
            kept = RESULTS / f"logs-{time.strftime('%Y%m%dT%H%M%S')}"
            kept.mkdir(parents=True, exist_ok=True)
            for log in workdir.glob("*.log"):
                shutil.copy(log, kept / log.name)
            print(f"server logs: {kept.relative_to(ROOT)}")
        shutil.rmtree(workdir, ignore_errors=True)
    print_table(report)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"bench-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(json.dumps(asdict(report), indent=2))
    print(f"\nJSON: {out.relative_to(ROOT)}")
    return 0


def run(
    start: Callable[..., subprocess.Popen[bytes]],
    workdir: Path,
    args: argparse.Namespace,
    duration: int,
    rounds: int,
    levels: list[int],
) -> Report:
    fake_port, bare_port, gw_port = free_port(), free_port(), free_port()
    fake = f"http://127.0.0.1:{fake_port}"
    direct_url = f"{fake}/openai/v1/chat/completions"
    fakes = start(
        pinned(LOAD_CORE, [str(BIN / "oneflow"), "fake-providers", "--port", str(fake_port)]),
        workdir / "fakes.log",
    )
    wait_http(f"{fake}/_fake/calls")

    env = gateway_env(fake, workdir, args)
    key = project_key(env, workdir)
    serve = [str(BIN / "oneflow"), "serve", "--port", str(gw_port), "--no-migrate"]
    gateway = start(
        pinned(SERVER_CORE, [*serve, "--workers", str(args.workers)]),
        workdir / "gateway.log",
        env=env,
        cwd=workdir,
    )
    uvicorn = [str(BIN / "uvicorn"), "bench.bare_forwarder:app", "--port", str(bare_port)]
    bare = start(
        pinned(
            SERVER_CORE,
            [*uvicorn, "--loop", "uvloop", "--http", "httptools", "--no-access-log"],
        ),
        workdir / "bare.log",
        env={**os.environ, "BARE_UPSTREAM_URL": direct_url, "BARE_UPSTREAM_KEY": UPSTREAM_KEY},
        cwd=ROOT,
    )
    gw = f"http://127.0.0.1:{gw_port}"
    wait_http(f"{gw}/health")
    wait_http(f"http://127.0.0.1:{bare_port}/", method="POST")
    time.sleep(1.0)

    servers = {
        "direct": Server("direct", fakes, direct_url),
        "bare": Server("bare", bare, f"http://127.0.0.1:{bare_port}/v1/chat/completions"),
        "gateway": Server("gateway", gateway, f"{gw}/v1/chat/completions"),
    }
    headers = {
        "direct": {"Authorization": f"Bearer {UPSTREAM_KEY}"},
        "bare": {},
        "gateway": {"Authorization": f"Bearer {key}"},
    }
    report = Report(
        machine={
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "workers": args.workers,
            "duration_s": duration,
            "rounds": rounds,
            "database": "postgresql" if args.database_url else "sqlite",
            "env": args.env,
        }
    )
    report.rss_mib["gateway_idle"] = rss_mib(gateway.pid)
    report.rss_mib["bare_idle"] = rss_mib(bare.pid)

    chat = {"model": MODEL, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 64}
    stream = {**chat, "stream": True, "stream_options": {"include_usage": True}}
    estimate = {
        "model": MODEL,
        "input_tokens": 1500,
        "output_tokens": 500,
        "strategy": "cost_optimized",
    }
    plan: list[tuple[str, dict[str, object], tuple[str, ...]]] = [
        ("chat", chat, TARGETS),
        ("chat_stream", stream, TARGETS),
        ("estimate", estimate, ("gateway",)),
    ]

    def url_of(scenario: str, target: str) -> str:
        return f"{gw}/api/v1/estimate" if scenario == "estimate" else servers[target].chat_url

    for scenario, body, targets in plan:  # warm up every path
        for target in targets:
            run_wrk(url_of(scenario, target), body, headers[target], 4, 1, workdir)

    for _ in range(rounds):
        sweep: list[Cell] = []
        for scenario, body, targets in plan:
            for concurrency in levels:
                for target in targets:
                    profile = (
                        args.profile
                        if (scenario, target, concurrency) == ("chat", "gateway", 10)
                        else None
                    )
                    with profiled(gateway.pid, profile):
                        sweep.append(
                            measure(
                                servers[target],
                                scenario,
                                url_of(scenario, target),
                                body,
                                headers[target],
                                concurrency,
                                duration,
                                workdir,
                            )
                        )
        report.rounds.append(sweep)
        args.profile = None  # one profile is enough
    for i in range(len(report.rounds[0])):
        report.cells.append(median_cell([sweep[i] for sweep in report.rounds]))
    report.added = added_latency(report.cells)
    report.rss_mib["gateway_after_load"] = rss_mib(gateway.pid)

    report.ttfb_ms = ttfb(
        {name: server.chat_url for name, server in servers.items()},
        stream,
        headers,
        60 if args.quick else 200,
    )
    if not (args.quick or args.skip_streams_1000):
        report.streams_1000 = open_streams(
            fake, servers["gateway"], headers["gateway"], stream, workdir
        )
        report.rss_mib["gateway_1000_streams"] = report.streams_1000["peak_rss_mib"]
    report.rss_mib["gateway_peak"] = rss_mib(gateway.pid, peak=True)
    report.rss_mib["bare_peak"] = rss_mib(bare.pid, peak=True)
    return report


if __name__ == "__main__":
    sys.exit(main())
