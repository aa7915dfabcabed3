"""Processes and measurements for the bench harness: starting servers in their own sessions,
pinning them to a core, their CPU time and RSS, and one wrk run read into a `Cell`."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import httpx
from tests.support.ports import reported_port

from bench.report import Cell, cell_from_wrk, parse_wrk

ROOT = Path(__file__).resolve().parents[1]
LUA = ROOT / "bench" / "wrk" / "post.lua"
BIN = Path(sys.executable).parent
LOAD_CORE, SERVER_CORE = 0, 1
Start = Callable[..., subprocess.Popen[bytes]]


@dataclass
class Server:
    """A server process, the URL wrk drives on it and the headers it wants."""

    name: str
    process: subprocess.Popen[bytes]
    chat_url: str
    headers: dict[str, str]

    def cpu_seconds(self) -> float:
        """User + system CPU time of the process and its children (uvicorn workers)."""
        ticks = os.sysconf("SC_CLK_TCK")
        total = 0.0
        for pid in family(self.process.pid):
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / ticks
        return total


def guessed_free_port() -> int:
    """A port found free and closed again: a race (another process may take it first), so
    only for servers that cannot report a port of their own choosing (uvicorn running the
    bare forwarder, the peer gateways). OneFlow's servers bind port 0 themselves:
    `serve_on_port_0`."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve_on_port_0(
    start: Start, argv: list[str], log: Path, **kwargs: object
) -> tuple[subprocess.Popen[bytes], int]:
    """Start a OneFlow server (`oneflow serve`, `oneflow fake-providers`) on port 0 with
    `--port-file`, and read back the port it listens on (no race for a port)."""
    port_file = log.with_suffix(".port")
    port_file.unlink(missing_ok=True)
    process = start([*argv, "--port", "0", "--port-file", str(port_file)], log, **kwargs)
    return process, reported_port(process, port_file)


def pinned(core: int | None, argv: list[str]) -> list[str]:
    """`argv` on one core (None: the whole machine)."""
    if core is not None and shutil.which("taskset") and (os.cpu_count() or 1) > 1:
        return ["taskset", "-c", str(core), *argv]
    return argv


def repin(pid: int, cores: str) -> None:
    """Move a running process, its threads and children to `cores` (e.g. "0-1")."""
    if not shutil.which("taskset"):
        return
    for one in family(pid):
        subprocess.run(["taskset", "-a", "-p", "-c", cores, str(one)], capture_output=True)


def wait_http(url: str, timeout: float = 60.0, method: str = "GET") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.request(method, url, timeout=1.0)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


def family(pid: int) -> list[int]:
    """The process and its children (then their children: a supervisor's workers)."""
    pids, queue = [], [pid]
    while queue:
        one = queue.pop()
        pids.append(one)
        children = Path(f"/proc/{one}/task/{one}/children")
        with suppress(OSError):
            queue += [int(p) for p in children.read_text().split()]
    return pids


def rss_mib(pid: int, peak: bool = False) -> float:
    """RSS (or its high-water mark) of a process and its children, in MiB."""
    total = 0
    for one in family(pid):
        status = Path(f"/proc/{one}/status")
        with suppress(OSError):
            for line in status.read_text().splitlines():
                if line.startswith("VmHWM:" if peak else "VmRSS:"):
                    total += int(line.split()[1])
    return round(total / 1024, 1)


@contextmanager
def processes() -> Iterator[Start]:
    """Start processes in their own sessions; all are stopped on the way out."""
    started: list[subprocess.Popen[bytes]] = []

    def start(argv: list[str], log: Path, **kwargs: object) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(  # type: ignore[call-overload]
            argv,
            stdout=log.open("ab"),
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
            stop(process)


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the process's session, SIGKILL if it has not gone within 15 s."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=15)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


def wrk_env(body: dict[str, object], headers: dict[str, str], workdir: Path) -> dict[str, str]:
    body_file = workdir / f"body-{abs(hash(json.dumps(body)))}.json"
    body_file.write_text(json.dumps(body))
    return {
        **os.environ,
        "BENCH_BODY_FILE": str(body_file),
        "BENCH_HEADERS": "|".join(f"{k}: {v}" for k, v in headers.items()),
    }


def run_wrk(
    url: str,
    body: dict[str, object],
    headers: dict[str, str],
    concurrency: int,
    duration: int,
    workdir: Path,
    core: int | None = LOAD_CORE,
) -> dict[str, object]:
    wrk = ["wrk", "-t1", f"-c{concurrency}", f"-d{duration}s", "--timeout", "10s"]
    argv = pinned(core, [*wrk, "-s", str(LUA), url])
    env = wrk_env(body, headers, workdir)
    out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=duration + 60)
    try:
        return parse_wrk(out.stdout)
    except ValueError:
        raise RuntimeError(f"wrk printed no summary:\n{out.stdout}\n{out.stderr}") from None


def measure(
    server: Server,
    scenario: str,
    body: dict[str, object],
    concurrency: int,
    duration: int,
    workdir: Path,
    *,
    url: str | None = None,
    core: int | None = LOAD_CORE,
) -> Cell:
    cpu_before = server.cpu_seconds()
    raw = run_wrk(
        url or server.chat_url, body, server.headers, concurrency, duration, workdir, core
    )
    cpu = server.cpu_seconds() - cpu_before
    return cell_from_wrk(raw, scenario, server.name, concurrency, cpu)


def ttfb(servers: list[Server], body: dict[str, object], n: int) -> dict[str, dict[str, float]]:
    """Time to first byte of a stream, measured by curl, the targets interleaved."""
    samples: dict[str, list[float]] = {server.name: [] for server in servers}
    for _ in range(n):
        for server in servers:
            argv = ["curl", "-s", "-o", "/dev/null", "-w", "%{time_starttransfer}", "-X", "POST"]
            for header, value in {"Content-Type": "application/json", **server.headers}.items():
                argv += ["-H", f"{header}: {value}"]
            argv += ["--data", json.dumps(body), server.chat_url]
            out = subprocess.run(
                pinned(LOAD_CORE, argv), capture_output=True, text=True, timeout=30
            )
            with suppress(ValueError):
                samples[server.name].append(float(out.stdout) * 1000)
    result = {}
    for name, values in samples.items():
        ordered = sorted(values) or [0.0]
        result[name] = {
            "p50": round(statistics.median(ordered), 3),
            "p90": round(ordered[int(len(ordered) * 0.9)], 3),
        }
    return result


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
