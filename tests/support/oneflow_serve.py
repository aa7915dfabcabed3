"""`oneflow serve` as a user starts it: a real process, its output, its exit status.

`oneflow_serve` starts a gateway the way `make run` starts one: development settings, the
built-in fake providers (no provider key), and a SQLite database of its own in `directory`
(migrated by `--migrate`), on the loopback port the system chooses (`--port 0`, read back from
`--port-file`: tests/support/ports.py); `env` adds to or overrides the environment. The
process's output goes to `directory/oneflow-serve.log`. `ServeProcess` and `serve_refusal`
start it with any arguments, for tests of start-up itself.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.gateway_process import stop_process
from tests.support.ports import reported_port

__all__ = [
    "ServeProcess",
    "ServedGateway",
    "oneflow_serve",
    "serve_environment",
    "serve_refusal",
    "started",
]

#: Variables of the caller's environment a served gateway must not inherit.
_PROVIDER_VARIABLES = tuple(
    f"{provider}_{kind}"
    for provider in ("OPENAI", "ANTHROPIC", "STABILITY", "ELEVENLABS")
    for kind in ("API_KEY", "BASE_URL")
)


class ServeProcess:
    """`python -m oneflow_ai serve --port PORT ARGS` in `cwd`, with exactly the environment
    `env`; stdout and stderr go to `log_path`. Unless a port is given it listens on the one the
    system chooses, known once `wait` has read it back."""

    def __init__(
        self, args: list[str], env: dict[str, str], log_path: Path, cwd: Path, port: int = 0
    ) -> None:
        self.port = port
        self.log_path = log_path
        self._log = log_path.open("w")
        self._scratch = tempfile.TemporaryDirectory(prefix="oneflow-serve-")  # not in cwd
        self._port_file = Path(self._scratch.name) / "port"
        command = [sys.executable, "-m", "oneflow_ai", "serve", "--port", str(port)]
        self.process = subprocess.Popen(
            [*command, "--port-file", str(self._port_file), *args],
            cwd=cwd,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            text=True,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text()

    def wait(self, path: str = "/health", timeout: float = 90) -> None:
        """Until GET `path` answers 200 (`/health`: it listens; `/ready`: it is ready)."""
        deadline = time.monotonic() + timeout
        if not self.port:
            try:
                self.port = reported_port(self.process, self._port_file, timeout)
            except RuntimeError as exc:
                raise RuntimeError(f"{exc}:\n{self.output()[-3000:]}") from None
        while True:
            try:
                if httpx.get(f"{self.url}{path}", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"oneflow serve did not start:\n{self.output()[-3000:]}")
            time.sleep(0.2)

    def get(self, path: str, **headers: str) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", headers=headers, timeout=10)

    def stop(self) -> None:
        stop_process(self.process)
        self._log.close()
        self._scratch.cleanup()


@dataclass(frozen=True)
class ServedGateway:
    url: str
    env: dict[str, str]  # the environment it runs with: give it to a CLI sharing its database
    log_path: Path


def serve_environment(directory: Path, env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a development gateway on a database file in `directory`."""
    base = {k: v for k, v in os.environ.items() if k not in _PROVIDER_VARIABLES}
    return {
        **base,
        "ENVIRONMENT": "development",
        "DATABASE_URL": f"sqlite+aiosqlite:///{directory / 'oneflow.db'}",
        "FAKE_PROVIDERS": "auto",
        "LOG_LEVEL": "WARNING",
        **(env or {}),
    }


@contextmanager
def oneflow_serve(
    directory: Path, env: dict[str, str] | None = None, timeout: float = 90
) -> Iterator[ServedGateway]:
    """A ready gateway as `make run` starts one (see the module's docstring)."""
    environment = serve_environment(directory, env)
    process = ServeProcess(["--migrate"], environment, directory / "oneflow-serve.log", directory)
    try:
        process.wait("/ready", timeout)
        yield ServedGateway(process.url, environment, process.log_path)
    finally:
        process.stop()


@contextmanager
def started(directory: Path, env: dict[str, str], *args: str) -> Iterator[ServeProcess]:
    """`oneflow serve ARGS` in `directory`, with `env` over the test's environment, once it
    listens (ready or not); stopped afterwards."""
    process = ServeProcess(list(args), {**os.environ, **env}, directory / "serve.log", directory)
    try:
        process.wait("/health")
        yield process
    finally:
        process.stop()


def serve_refusal(
    directory: Path, env: dict[str, str], *args: str, port: int = 0
) -> tuple[int, list[str]]:
    """Start `oneflow serve ARGS` expecting it to refuse: its exit status and its output's
    lines (a gateway that starts instead fails the test after 60 s, stopped)."""
    environment = {**os.environ, **env}
    process = ServeProcess(list(args), environment, directory / "refused.log", directory, port)
    try:
        code = process.process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"oneflow serve started instead: {process.output()}") from None
    finally:
        process.stop()
    return code, process.output().strip().splitlines()
