"""The servers `make bench` measures: the fake upstream, the bare forwarder, OneFlow in each
configuration (SQLite; PostgreSQL + Redis) and the peer gateways, each started as a process of
its own and described as a `Server` (its chat URL and the headers a caller sends)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import httpx

from bench import peers
from bench.procs import (
    BIN,
    LOAD_CORE,
    LUA,
    ROOT,
    Server,
    Start,
    guessed_free_port,
    pinned,
    rss_mib,
    serve_on_port_0,
    wait_http,
    wrk_env,
)
from bench.report import parse_wrk

MODEL = "gpt-4o"
MASTER_KEY = "sk-bench-master-key-0123456789abcdef"
UPSTREAM_KEY = "sk-bench-openai-key"
#: What can serve OneFlow: `oneflow serve` (uvicorn), or granian on the same app factory.
SERVERS = ("uvicorn", "granian")
#: What `oneflow serve` serves, and how granian serves it in its place (`--servers granian`).
APP_FACTORY = "oneflow_ai.app:create_app"
GRANIAN = [
    "--interface=asgi",
    "--factory",
    "--loop=uvloop",
    "--http=1",
    "--no-ws",
    "--no-access-log",
    "--host=127.0.0.1",
]
#: Limits high enough never to refuse, so that every window is still checked and charged.
HIGH = "1000000000"


def gateway_env(fake: str, extra: dict[str, str], pairs: list[str]) -> dict[str, str]:
    """OneFlow's settings: the full pipeline in front of the fakes at `fake`; `extra` (the
    database and Redis) and `--env NAME=VALUE` pairs over them."""
    env = {
        **os.environ,
        "ENVIRONMENT": "development",
        "LOG_FORMAT": "json",
        "LOG_REQUESTS": "true",
        "ENABLE_METRICS": "true",
        "ONEFLOW_MASTER_KEY": MASTER_KEY,
        "FAKE_PROVIDERS": "off",
        "RATE_LIMIT_PER_MINUTE": HIGH,
        "RATE_LIMIT_PER_HOUR": HIGH,
        "RATE_LIMIT_TOKENS_PER_MINUTE": HIGH,
        # --workers N without Redis: the limits are out of the way anyway (HIGH, per worker).
        "ALLOW_PER_WORKER_LIMITS": "true",
        **extra,
    }
    for provider, suffix in (
        ("openai", "/openai/v1"),
        ("anthropic", "/anthropic"),
        ("stability", "/stability"),
        ("elevenlabs", "/elevenlabs"),
    ):
        env[f"{provider.upper()}_API_KEY"] = f"sk-bench-{provider}-key"
        env[f"{provider.upper()}_BASE_URL"] = fake + suffix
    for pair in pairs:
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


def start_gateway(
    start: Start,
    name: str,
    env: dict[str, str],
    key: str,
    workdir: Path,
    *,
    workers: int = 1,
    core: int | None,
    server: str = "uvicorn",
) -> Server:
    """`oneflow serve` (uvicorn) with `workers` workers on `core` (None: the whole machine),
    serving; with `server="granian"` the same application served by granian instead."""
    if server == "granian":
        process, port = _start_granian(start, name, env, workdir, workers, core)
    else:
        serve = [str(BIN / "oneflow"), "serve", "--no-migrate", "--workers", str(workers)]
        process, port = serve_on_port_0(
            start, pinned(core, serve), workdir / f"{name}.log", env=env, cwd=workdir
        )
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/health")
    return Server(name, process, f"{url}/v1/chat/completions", {"Authorization": f"Bearer {key}"})


def _start_granian(
    start: Start, name: str, env: dict[str, str], workdir: Path, workers: int, core: int | None
) -> tuple[subprocess.Popen[bytes], int]:
    """granian serving the app factory `oneflow serve` gives uvicorn (cli.py `_uvicorn_config`):
    ASGI, uvloop, HTTP/1.1, no WebSockets, no access log. Several workers share their metrics
    through a directory, as `oneflow serve` arranges for uvicorn's."""
    port = guessed_free_port()  # granian cannot report a port it chose
    argv = [str(BIN / "granian"), *GRANIAN, "--workers", str(workers), "--port", str(port)]
    if workers > 1:
        metrics = workdir / f"{name}-metrics"
        metrics.mkdir(exist_ok=True)
        env = {**env, "PROMETHEUS_MULTIPROC_DIR": str(metrics)}
    process = start(
        pinned(core, [*argv, APP_FACTORY]), workdir / f"{name}.log", env=env, cwd=workdir
    )
    return process, port


def start_bare(start: Start, direct_url: str, workdir: Path, core: int | None) -> Server:
    port = guessed_free_port()  # uvicorn cannot report a port it chose
    uvicorn = [str(BIN / "uvicorn"), "bench.bare_forwarder:app", "--port", str(port)]
    process = start(
        pinned(core, [*uvicorn, "--loop", "uvloop", "--http", "httptools", "--no-access-log"]),
        workdir / "bare.log",
        env={**os.environ, "BARE_UPSTREAM_URL": direct_url, "BARE_UPSTREAM_KEY": UPSTREAM_KEY},
        cwd=ROOT,
    )
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    wait_http(url, method="POST")
    return Server("bare", process, url, {})


def start_peer(start: Start, name: str, fake: str, workdir: Path, core: int | None) -> Server:
    """A peer gateway (installed on first use) in front of the fake OpenAI upstream."""
    port = guessed_free_port()  # the peers cannot report a port they chose
    how = peers.launch(name, port, f"{fake}/openai/v1", UPSTREAM_KEY, MODEL, workdir)
    process = start(
        pinned(core, how.argv), workdir / f"{name}.log", env={**os.environ, **how.env}, cwd=workdir
    )
    url = f"http://127.0.0.1:{port}{how.path}"
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
    deadline = time.monotonic() + 180
    while True:  # serving means answering a chat completion, not just listening
        try:
            answer = httpx.post(url, json=body, headers=how.headers, timeout=10)
            if answer.status_code == 200:
                break
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            log = (workdir / f"{name}.log").read_text()[-2000:]
            raise RuntimeError(f"{name} did not serve a chat completion:\n{log}")
        time.sleep(0.5)
    return Server(name, process, url, how.headers)


def open_streams(
    fake: str, gateway: Server, stream: dict[str, object], workdir: Path
) -> dict[str, float]:
    """Peak RSS while 1,000 streams are open at once (slow upstream chunks keep them open),
    and how many of those streams completed, failed or were refused."""
    httpx.post(
        f"{fake}/_fake/faults",
        json={"rules": [{"provider": "openai", "chunk_delay_ms": 200}]},
        timeout=5,
    )
    try:
        argv = ["wrk", "-t1", "-c1000", "-d12s", "--timeout", "30s", "-s", str(LUA)]
        proc = subprocess.Popen(
            pinned(LOAD_CORE, [*argv, gateway.chat_url]),
            env=wrk_env({**stream, "max_tokens": 40}, gateway.headers, workdir),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        peak = 0.0
        while proc.poll() is None:
            peak = max(peak, rss_mib(gateway.process.pid))
            time.sleep(0.25)
        stdout = proc.stdout.read() if proc.stdout is not None else ""
        try:
            raw = parse_wrk(stdout)
        except ValueError:
            raw = {}
        statuses = raw.get("statuses") or {}
        errors = raw.get("errors") or {}
        assert isinstance(statuses, dict) and isinstance(errors, dict)
        return {
            "peak_rss_mib": peak,
            "completed": float(str(raw.get("requests", 0))),
            "non_2xx": float(sum(n for code, n in statuses.items() if not code.startswith("2"))),
            "socket_errors": float(sum(n for kind, n in errors.items() if kind != "status")),
        }
    finally:
        httpx.delete(f"{fake}/_fake/faults", timeout=5)
