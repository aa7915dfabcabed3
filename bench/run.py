"""`make bench`: the gateway's overhead, measured against the upstream alone in the same run.

Starts the fake providers (zero added latency) and the gateway as real processes, pins them
(the gateway on one core; the fakes and the load generator on the other), and drives both with
`wrk` (a load generator not written in Python) at concurrency 1, 10 and 100:

    direct   POST the fake OpenAI upstream itself                 (the baseline)
    gateway  POST the gateway's /v1/chat/completions in front of it (full pipeline on)

for non-streaming chat, streaming chat, and `/api/v1/estimate`; then time to first byte of a
stream (curl, sequential), idle RSS, and RSS with 1,000 concurrent open streams. Prints a table
and writes JSON to bench/results/.

Options: --duration SECONDS (per cell, default 8), --quick (concurrency 1 and 10, 4 s),
--workers N (gateway workers, default 1), --skip-streams-1000.
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
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
LUA = ROOT / "bench" / "wrk" / "post.lua"
RESULTS = ROOT / "bench" / "results"
BIN = Path(sys.executable).parent
MODEL = "gpt-4o"
PROMPT = "Write one sentence about the sea."


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


@dataclass
class Report:
    machine: dict[str, object]
    cells: list[Cell] = field(default_factory=list)
    added: list[dict[str, object]] = field(default_factory=list)
    ttfb: dict[str, float] = field(default_factory=dict)
    rss_mib: dict[str, float] = field(default_factory=dict)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pinned(core: int, argv: list[str]) -> list[str]:
    if shutil.which("taskset") and (os.cpu_count() or 1) > 1:
        return ["taskset", "-c", str(core), *argv]
    return argv


def wait_http(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


def rss_mib(pid: int, peak: bool = False) -> float:
    """RSS of a process and its children (uvicorn workers), in MiB."""
    total = 0
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    for one in pids:
        status = Path(f"/proc/{one}/status")
        if not status.exists():
            continue
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:" if peak else "VmRSS:"):
                total += int(line.split()[1])
    return round(total / 1024, 1)


def run_wrk(
    url: str,
    body: dict[str, object],
    headers: dict[str, str],
    concurrency: int,
    duration: int,
    workdir: Path,
) -> dict[str, object]:
    body_file = workdir / "body.json"
    body_file.write_text(json.dumps(body))
    env = {
        **os.environ,
        "BENCH_BODY_FILE": str(body_file),
        "BENCH_HEADERS": "|".join(f"{k}: {v}" for k, v in headers.items()),
    }
    argv = pinned(
        0,
        [
            "wrk",
            "-t1",
            f"-c{concurrency}",
            f"-d{duration}s",
            "--timeout",
            "10s",
            "-s",
            str(LUA),
            url,
        ],
    )
    out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=duration + 60)
    for line in out.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            result: dict[str, object] = json.loads(line.removeprefix("BENCH_JSON "))
            return result
    raise RuntimeError(f"wrk printed no summary:\n{out.stdout}\n{out.stderr}")


def cell(scenario: str, target: str, concurrency: int, raw: dict[str, object]) -> Cell:
    latency = raw["latency_us"]
    errors = raw["errors"]
    assert isinstance(latency, dict) and isinstance(errors, dict)
    statuses = raw.get("statuses") or {}
    assert isinstance(statuses, dict)
    non_2xx = sum(int(n) for code, n in statuses.items() if not str(code).startswith("2"))
    duration_s = int(raw["duration_us"]) / 1e6  # type: ignore[call-overload]
    return Cell(
        scenario=scenario,
        target=target,
        concurrency=concurrency,
        rps=round(int(raw["requests"]) / duration_s, 1),  # type: ignore[call-overload]
        p50_ms=round(latency["p50"] / 1000, 3),
        p90_ms=round(latency["p90"] / 1000, 3),
        p99_ms=round(latency["p99"] / 1000, 3),
        errors=sum(int(v) for k, v in errors.items() if k != "status"),
        non_2xx=non_2xx,
        requests=int(raw["requests"]),  # type: ignore[call-overload]
    )


def ttfb_ms(url: str, body: dict[str, object], headers: dict[str, str], n: int) -> float:
    """Median time to first byte of a stream, measured by curl, sequentially."""
    argv = [
        "curl",
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{time_starttransfer}",
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "--data",
        json.dumps(body),
        url,
    ]
    for name, value in headers.items():
        argv[1:1] = ["-H", f"{name}: {value}"]
    samples = []
    for _ in range(n):
        out = subprocess.run(pinned(0, argv), capture_output=True, text=True, timeout=30)
        samples.append(float(out.stdout) * 1000)
    return round(statistics.median(samples), 3)


def print_table(report: Report) -> None:
    print()
    print(
        f"{'scenario':<16}{'target':<9}{'conc':>5}{'req/s':>10}{'p50 ms':>9}{'p90 ms':>9}"
        f"{'p99 ms':>9}{'errors':>8}{'non-2xx':>8}"
    )
    for c in report.cells:
        print(
            f"{c.scenario:<16}{c.target:<9}{c.concurrency:>5}{c.rps:>10.0f}{c.p50_ms:>9.3f}"
            f"{c.p90_ms:>9.3f}{c.p99_ms:>9.3f}{c.errors:>8}{c.non_2xx:>8}"
        )
    print()
    print("gateway added latency (gateway minus direct, same scenario and concurrency):")
    for a in report.added:
        print(
            f"  {a['scenario']:<14} c={a['concurrency']:<4} p50 +{a['added_p50_ms']:.3f} ms"
            f"  p99 +{a['added_p99_ms']:.3f} ms  throughput {a['rps_ratio']:.2f}x of direct"
        )
    if report.ttfb:
        print(f"stream time to first byte (median): {report.ttfb}")
    print(f"gateway RSS (MiB): {report.rss_mib}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--skip-streams-1000", action="store_true")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("bench needs wrk: sudo apt-get install -y wrk", file=sys.stderr)
        return 2
    duration = 4 if args.quick else args.duration
    levels = [1, 10] if args.quick else [1, 10, 100]

    processes: list[subprocess.Popen[bytes]] = []
    workdir = Path(tempfile.mkdtemp(prefix="oneflow-bench-"))
    try:
        fake_port, gw_port = free_port(), free_port()
        fakes = subprocess.Popen(
            pinned(0, [str(BIN / "oneflow"), "fake-providers", "--port", str(fake_port)]),
            stdout=(workdir / "fakes.log").open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        processes.append(fakes)
        fake = f"http://127.0.0.1:{fake_port}"
        wait_http(f"{fake}/_fake/calls")

        master = "sk-bench-master-key-0123456789abcdef"
        env = {
            **os.environ,
            "ENVIRONMENT": "development",
            "LOG_FORMAT": "json",
            "DATABASE_URL": f"sqlite+aiosqlite:///{workdir / 'oneflow.db'}",
            "ONEFLOW_MASTER_KEY": master,
            "FAKE_PROVIDERS": "off",
            "RATE_LIMIT_PER_MINUTE": "100000000",
            "RATE_LIMIT_PER_HOUR": "1000000000",
        }
        for provider, suffix in (
            ("openai", "/openai/v1"),
            ("anthropic", "/anthropic"),
            ("stability", "/stability"),
            ("elevenlabs", "/elevenlabs"),
        ):
            env[f"{provider.upper()}_API_KEY"] = f"sk-bench-{provider}-key"
            env[f"{provider.upper()}_BASE_URL"] = fake + suffix
        subprocess.run(
            [str(BIN / "oneflow"), "db", "upgrade"],
            env=env,
            check=True,
            capture_output=True,
            cwd=workdir,
        )
        key = create_key(env, workdir) or master
        gateway = subprocess.Popen(
            pinned(
                1,
                [
                    str(BIN / "oneflow"),
                    "serve",
                    "--port",
                    str(gw_port),
                    "--workers",
                    str(args.workers),
                    "--no-migrate",
                ],
            ),
            env=env,
            cwd=workdir,
            stdout=(workdir / "gateway.log").open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        processes.append(gateway)
        gw = f"http://127.0.0.1:{gw_port}"
        wait_http(f"{gw}/health")
        time.sleep(1.0)

        report = Report(
            machine={
                "cpus": os.cpu_count(),
                "python": sys.version.split()[0],
                "workers": args.workers,
                "duration_s": duration,
                "key": "api key" if key != master else "master key",
            }
        )
        report.rss_mib["idle"] = rss_mib(gateway.pid)

        chat = {"model": MODEL, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 64}
        stream = {**chat, "stream": True, "stream_options": {"include_usage": True}}
        auth = {"Authorization": f"Bearer {key}"}
        upstream_auth = {"Authorization": "Bearer sk-bench-openai-key"}
        scenarios = [
            ("chat", f"{fake}/openai/v1/chat/completions", f"{gw}/v1/chat/completions", chat),
            (
                "chat_stream",
                f"{fake}/openai/v1/chat/completions",
                f"{gw}/v1/chat/completions",
                stream,
            ),
        ]
        # warm up both paths
        for _, direct_url, gateway_url, body in scenarios:
            run_wrk(direct_url, body, upstream_auth, 4, 2, workdir)
            run_wrk(gateway_url, body, auth, 4, 2, workdir)

        for name, direct_url, gateway_url, body in scenarios:
            for concurrency in levels:
                direct = cell(
                    name,
                    "direct",
                    concurrency,
                    run_wrk(direct_url, body, upstream_auth, concurrency, duration, workdir),
                )
                through = cell(
                    name,
                    "gateway",
                    concurrency,
                    run_wrk(gateway_url, body, auth, concurrency, duration, workdir),
                )
                report.cells += [direct, through]
                report.added.append(
                    {
                        "scenario": name,
                        "concurrency": concurrency,
                        "added_p50_ms": round(through.p50_ms - direct.p50_ms, 3),
                        "added_p99_ms": round(through.p99_ms - direct.p99_ms, 3),
                        "rps_ratio": round(through.rps / direct.rps, 3) if direct.rps else 0.0,
                    }
                )
        estimate = {
            "model": MODEL,
            "input_tokens": 1500,
            "output_tokens": 500,
            "strategy": "cost_optimized",
        }
        for concurrency in levels:
            report.cells.append(
                cell(
                    "estimate",
                    "gateway",
                    concurrency,
                    run_wrk(
                        f"{gw}/api/v1/estimate", estimate, auth, concurrency, duration, workdir
                    ),
                )
            )
        report.rss_mib["after_load"] = rss_mib(gateway.pid)

        report.ttfb["direct_ms"] = ttfb_ms(
            f"{fake}/openai/v1/chat/completions", stream, upstream_auth, 200
        )
        report.ttfb["gateway_ms"] = ttfb_ms(f"{gw}/v1/chat/completions", stream, auth, 200)
        report.ttfb["added_ms"] = round(report.ttfb["gateway_ms"] - report.ttfb["direct_ms"], 3)

        if not args.skip_streams_1000:
            report.rss_mib["streams_1000_peak"] = open_streams(
                fake, gw, auth, stream, workdir, gateway.pid
            )
        report.rss_mib["peak"] = rss_mib(gateway.pid, peak=True)

        print_table(report)
        RESULTS.mkdir(parents=True, exist_ok=True)
        out = RESULTS / f"bench-{time.strftime('%Y%m%dT%H%M%S')}.json"
        out.write_text(json.dumps(asdict(report), indent=2))
        print(f"\nJSON: {out.relative_to(ROOT)}")
        return 0
    finally:
        for process in reversed(processes):
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=15)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(process.pid, signal.SIGKILL)
        shutil.rmtree(workdir, ignore_errors=True)


def create_key(env: dict[str, str], workdir: Path) -> str | None:
    """A regular project API key (so auth, limits and billing run as for any caller)."""
    out = subprocess.run(
        [str(BIN / "oneflow"), "keys", "create", "--name", "bench", "--json"],
        env=env,
        cwd=workdir,
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        return None
    try:
        key: str = json.loads(out.stdout)["key"]
    except (ValueError, KeyError):
        return None
    return key


def open_streams(
    fake: str,
    gw: str,
    auth: dict[str, str],
    stream: dict[str, object],
    workdir: Path,
    gateway_pid: int,
) -> float:
    """RSS while 1,000 streams are open at once (slow upstream chunks keep them open)."""
    httpx.post(
        f"{fake}/_fake/faults",
        json={"rules": [{"provider": "openai", "chunk_delay_ms": 200}]},
        timeout=5,
    )
    try:
        body = {**stream, "max_tokens": 40}
        proc = subprocess.Popen(
            pinned(
                0,
                [
                    "wrk",
                    "-t1",
                    "-c1000",
                    "-d12s",
                    "--timeout",
                    "30s",
                    "-s",
                    str(LUA),
                    f"{gw}/v1/chat/completions",
                ],
            ),
            env={
                **os.environ,
                "BENCH_BODY_FILE": str(_write(workdir, body)),
                "BENCH_HEADERS": "|".join(f"{k}: {v}" for k, v in auth.items()),
            },
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        peak = 0.0
        while proc.poll() is None:
            peak = max(peak, rss_mib(gateway_pid))
            time.sleep(0.25)
        return peak
    finally:
        httpx.delete(f"{fake}/_fake/faults", timeout=5)


def _write(workdir: Path, body: dict[str, object]) -> Path:
    path = workdir / "stream-body.json"
    path.write_text(json.dumps(body))
    return path


if __name__ == "__main__":
    sys.exit(main())
