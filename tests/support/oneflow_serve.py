"""A gateway started the way `make run` starts one: a real `oneflow serve` process.

Development settings, the built-in fake providers (no provider key), and a SQLite database of
its own in `directory` (migrated by `--migrate`), on the loopback port the system chooses
(`--port 0`, read back from `--port-file`); `env` adds to or overrides the environment. The
process's output goes to `directory/oneflow-serve.log`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.gateway_process import stop_process
from tests.support.ports import start_on_port_0

__all__ = ["ServedGateway", "oneflow_serve", "serve_environment"]

#: Variables of the caller's environment a served gateway must not inherit.
_PROVIDER_VARIABLES = tuple(
    f"{provider}_{kind}"
    for provider in ("OPENAI", "ANTHROPIC", "STABILITY", "ELEVENLABS")
    for kind in ("API_KEY", "BASE_URL")
)


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
    environment = serve_environment(directory, env)
    log_path = directory / "oneflow-serve.log"
    with log_path.open("w") as log:
        try:
            process, port = start_on_port_0(
                [sys.executable, "-m", "oneflow_ai", "serve", "--migrate"],
                timeout=timeout,
                cwd=directory,
                env=environment,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}:\n{log_path.read_text()[-3000:]}") from None
        try:
            url = f"http://127.0.0.1:{port}"
            _wait_until_ready(process, url, log_path, timeout)
            yield ServedGateway(url, environment, log_path)
        finally:
            stop_process(process)


def _wait_until_ready(
    process: subprocess.Popen[str], url: str, log_path: Path, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"oneflow serve did not start:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.2)
