"""Building blocks of the benchmarks: server processes, the wrk load generator, and reports.

- :class:`ServerProcess` starts a command on a free port, waits until a URL answers, samples its
  resident memory (the process and its children, e.g. uvicorn workers) and stops it.
- :func:`run_wrk` drives ``wrk`` (a load generator not written in Python, so the client does not
  compete with the server for the interpreter) with a Lua script that reports the summary as
  JSON: requests/s, latency percentiles, errors. A request body (POST) is given as bytes.
- :func:`print_table` and JSON output for the results.

With two cores, ``pin`` puts the server on one core and wrk on the other (``taskset``).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

__all__ = ["ServerProcess", "WrkResult", "free_port", "print_table", "run_wrk"]

_WRK_SCRIPT = r"""
wrk.method = os.getenv("BENCH_METHOD") or "GET"
local body_file = os.getenv("BENCH_BODY_FILE")
if body_file and body_file ~= "" then
  local f = assert(io.open(body_file, "rb"))
  wrk.body = f:read("*a")
  f:close()
  wrk.headers["Content-Type"] = os.getenv("BENCH_CONTENT_TYPE") or "application/json"
end
local auth = os.getenv("BENCH_AUTHORIZATION")
if auth and auth ~= "" then wrk.headers["Authorization"] = auth end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "bytes": %d, "errors": %d, ' ..
    '"non_2xx": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, "mean_us": %.1f}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tree_rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` and its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    total, stack = 0, [pid]
    page = os.sysconf("SC_PAGE_SIZE")
    while stack:
        current = stack.pop()
        try:
            total += int((Path("/proc") / str(current) / "statm").read_text().split()[1]) * page
        except OSError:
            continue
        stack.extend(children.get(current, []))
    return total


@dataclass
class ServerProcess:
    """A server started from ``command`` (``{port}`` is replaced by a free port)."""

    name: str
    command: Sequence[str]
    ready_path: str = "/health"
    env: Mapping[str, str] = field(default_factory=dict)
    cpu: int | None = None
    cwd: Path | None = None
    port: int = 0
    peak_rss_bytes: int = 0
    idle_rss_bytes: int = 0
    _process: subprocess.Popen[bytes] | None = None
    _sampler: threading.Thread | None = None
    _sampling: bool = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> ServerProcess:
        self.port = free_port()
        command = [part.replace("{port}", str(self.port)) for part in self.command]
        if self.cpu is not None and shutil.which("taskset"):
            command = ["taskset", "-c", str(self.cpu), *command]
        self._process = subprocess.Popen(
            command,
            env={**os.environ, **self.env},
            cwd=self.cwd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(f"{self.name} exited during start-up ({command})")
            try:
                with urllib.request.urlopen(self.url + self.ready_path, timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise TimeoutError(f"{self.name} did not answer {self.ready_path}") from None
                time.sleep(0.1)
        time.sleep(0.5)  # let start-up allocations settle before reading idle memory
        self.idle_rss_bytes = _tree_rss_bytes(self._process.pid)
        self.peak_rss_bytes = self.idle_rss_bytes
        self._sampling = True
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()
        return self

    def _sample(self) -> None:
        while self._sampling and self._process is not None:
            self.peak_rss_bytes = max(self.peak_rss_bytes, _tree_rss_bytes(self._process.pid))
            time.sleep(0.1)

    def stop(self) -> None:
        self._sampling = False
        if self._sampler is not None:
            self._sampler.join(timeout=2)
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


@dataclass
class WrkResult:
    scenario: str
    target: str
    connections: int
    requests_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    errors: int
    non_2xx: int
    peak_rss_mib: float = 0.0

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def run_wrk(
    url: str,
    *,
    scenario: str,
    target: str,
    connections: int,
    duration_s: float = 5.0,
    method: str = "GET",
    body: bytes | None = None,
    authorization: str | None = None,
    cpu: int | None = None,
) -> WrkResult:
    """One wrk run (one thread) against ``url``; the summary comes from the Lua ``done``."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError("wrk is not installed (apt-get install wrk)")
    with tempfile.TemporaryDirectory(prefix="oneflow-bench-") as scratch:
        script = Path(scratch) / "bench.lua"
        script.write_text(_WRK_SCRIPT)
        env = {**os.environ, "BENCH_METHOD": method, "BENCH_AUTHORIZATION": authorization or ""}
        if body is not None:
            body_file = Path(scratch) / "body"
            body_file.write_bytes(body)
            env["BENCH_BODY_FILE"] = str(body_file)
        command = [
            wrk, "-t1", f"-c{connections}", f"-d{duration_s:g}s", "--timeout", "10s",
            "-s", str(script), url,
        ]  # fmt: skip
        if cpu is not None and shutil.which("taskset"):
            command = ["taskset", "-c", str(cpu), *command]
        output = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=duration_s + 60, check=True
        ).stdout
    line = next(line for line in output.splitlines() if line.startswith("BENCH_JSON "))
    summary = json.loads(line.removeprefix("BENCH_JSON "))
    seconds = summary["duration_us"] / 1e6
    return WrkResult(
        scenario=scenario,
        target=target,
        connections=connections,
        requests_per_s=round(summary["requests"] / seconds, 1) if seconds else 0.0,
        p50_ms=summary["p50_us"] / 1000,
        p90_ms=summary["p90_us"] / 1000,
        p99_ms=summary["p99_us"] / 1000,
        errors=summary["errors"],
        non_2xx=summary["non_2xx"],
    )


def print_table(results: Sequence[WrkResult], baseline_target: str) -> None:
    """Rows per scenario and concurrency; "added" is the p50/p99 difference from the baseline
    target measured in the same run."""
    base = {(r.scenario, r.connections): r for r in results if r.target == baseline_target}
    header = (
        f"{'scenario':<14} {'target':<28} {'conc':>4} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}"
        f" {'+p50 ms':>8} {'+p99 ms':>8} {'errors':>6} {'RSS MiB':>8}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        b = base.get((r.scenario, r.connections))
        added_p50 = f"{r.p50_ms - b.p50_ms:+.3f}" if b is not None and b is not r else ""
        added_p99 = f"{r.p99_ms - b.p99_ms:+.3f}" if b is not None and b is not r else ""
        print(
            f"{r.scenario:<14} {r.target:<28} {r.connections:>4} {r.requests_per_s:>9.0f}"
            f" {r.p50_ms:>8.3f} {r.p99_ms:>8.3f} {added_p50:>8} {added_p99:>8}"
            f" {r.errors + r.non_2xx:>6} {r.peak_rss_mib:>8.1f}"
        )
