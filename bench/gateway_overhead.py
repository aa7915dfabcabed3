"""What the gateway adds to a non-streamed chat completion, next to the upstream alone.

Starts the fake providers (zero added latency), one gateway worker (`oneflow serve`, uvloop +
httptools) and, as the floor, a bare aiohttp forwarder under the same uvicorn settings
(`bench/bare_forwarder.py`), as separate processes, then drives each with `wrk` in one run:

- req/s at `--connections` connections (default 10);
- latency percentiles at 1 connection, and what the gateway adds to the upstream alone.

`--pin` pins the gateway (and the forwarder) to core 0 and the fakes and wrk to the other
cores (`taskset`), as in FINDINGS.md; only worth it on an otherwise idle machine. Not a test:
the numbers depend on the machine and its load; compare the rows of one run.
Usage: `python -m bench.gateway_overhead [--seconds 10] [--connections 10] [--pin]`.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path

KEY = "sk-bench-master-key-0123456789"
BODY = '{"model":"gpt-4o","messages":[{"role":"user","content":"Say hello to the benchmark"}]}'


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not come up")


PIN = False


def _pin(cores: str) -> list[str]:
    if PIN and shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        return ["taskset", "-c", cores]
    return []


def _wrk(url: str, connections: int, seconds: int, script: Path) -> dict[str, float]:
    command = [
        *_pin("1-" + str((os.cpu_count() or 2) - 1)),
        "wrk",
        "--latency",
        "-t1",
        f"-c{connections}",
        f"-d{seconds}s",
        "-s",
        str(script),
        url,
    ]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}  # type: ignore[union-attr]
    for label, value, unit in re.findall(r"^\s*(\d+)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M):
        scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
        result[f"p{label}"] = float(value) * scale
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    result["non_2xx"] = float(errors.group(1)) if errors else 0.0
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--pin", action="store_true", help="pin processes to cores")
    args = parser.parse_args()
    global PIN
    PIN = args.pin
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed (apt-get install wrk)")
    oneflow = str(Path(sys.executable).with_name("oneflow"))
    fake_port, gateway_port, bare_port = _free_port(), _free_port(), _free_port()
    fake_url = f"http://127.0.0.1:{fake_port}"
    gateway_url = f"http://127.0.0.1:{gateway_port}"
    with ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "post.lua"
        script.write_text(
            'wrk.method = "POST"\n'
            f"wrk.body = '{BODY}'\n"
            'wrk.headers["Content-Type"] = "application/json"\n'
            f'wrk.headers["Authorization"] = "Bearer {KEY}"\n'
        )
        cores = "1-" + str((os.cpu_count() or 2) - 1)
        fakes = subprocess.Popen(
            [*_pin(cores), oneflow, "fake-providers", "--port", str(fake_port), "--workers", "1"],
            stdout=subprocess.DEVNULL,
        )
        stack.callback(fakes.terminate)
        env = {
            **os.environ,
            "ENVIRONMENT": "development",
            "ONEFLOW_MASTER_KEY": KEY,
            "DATABASE_URL": f"sqlite+aiosqlite:///{tmp}/bench.db",
            "FAKE_PROVIDERS": "off",
            "OPENAI_API_KEY": "sk-fake",
            "OPENAI_BASE_URL": f"{fake_url}/openai/v1",
            "LOG_LEVEL": "WARNING",
            "LOG_REQUESTS": os.environ.get("LOG_REQUESTS", "true"),
        }
        gateway = subprocess.Popen(
            [*_pin("0"), oneflow, "serve", "--port", str(gateway_port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        stack.callback(gateway.terminate)
        direct = f"{fake_url}/openai/v1/chat/completions"
        uvicorn = str(Path(sys.executable).with_name("uvicorn"))
        bare = subprocess.Popen(
            [
                *_pin("0"),
                uvicorn,
                "bench.bare_forwarder:app",
                "--port",
                str(bare_port),
                "--loop",
                "uvloop",
                "--http",
                "httptools",
                "--no-access-log",
                "--log-level",
                "warning",
            ],
            env={**os.environ, "BARE_UPSTREAM_URL": direct},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        stack.callback(bare.terminate)
        _wait(f"{fake_url}/_fake/calls")
        _wait(f"{gateway_url}/health")
        time.sleep(1)  # the forwarder has no health route: give it a moment
        through = f"{gateway_url}/v1/chat/completions"
        forwarded = f"http://127.0.0.1:{bare_port}/"
        targets = (
            ("upstream alone", direct),
            ("bare forwarder", forwarded),
            ("through gateway", through),
        )
        for _, url in targets:  # warm up connections and caches
            _wrk(url, args.connections, 2, script)
        rows = []
        for name, url in targets:
            busy = _wrk(url, args.connections, args.seconds, script)
            single = _wrk(url, 1, args.seconds, script)
            rows.append((name, busy, single))
    print(f"non-streamed chat, {args.seconds}s per run, wrk -t1")
    busy_label = f"req/s @{args.connections}"
    print(f"{'':18}{busy_label:>12}{'p50 @1':>10}{'p99 @1':>10}{'req/s @1':>10}")
    for name, busy, single in rows:
        print(
            f"{name:18}{busy['rps']:>12.0f}{single['p50']:>9.2f}ms{single['p99']:>8.2f}ms"
            f"{single['rps']:>10.0f}"
            + (f"  ({busy['non_2xx']:.0f} non-2xx!)" if busy["non_2xx"] else "")
        )
    (_, d_busy, d_single), _, (_, g_busy, g_single) = rows
    print(
        f"added by the gateway at 1 connection: p50 +{g_single['p50'] - d_single['p50']:.2f} ms,"
        f" p99 +{g_single['p99'] - d_single['p99']:.2f} ms;"
        f" throughput {g_busy['rps'] / d_busy['rps']:.0%} of the upstream alone"
    )


if __name__ == "__main__":
    main()
