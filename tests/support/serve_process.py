"""`oneflow serve` as a user starts it: a real process, its output, its exit status."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.support.gateway_process import stop_process

__all__ = ["ServeProcess", "free_port", "oneflow_serve", "serve_refusal"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServeProcess:
    """`python -m oneflow_ai serve --port <free> ARGS` with `env` over the test's environment;
    stdout and stderr go to `log_path`."""

    def __init__(
        self, args: list[str], env: dict[str, str], log_path: Path, cwd: Path, port: int = 0
    ) -> None:
        self.port = port or free_port()
        self.log_path = log_path
        self._log = log_path.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "oneflow_ai", "serve", "--port", str(self.port), *args],
            cwd=cwd,
            env={**os.environ, **env},
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

    def wait_listening(self, timeout: float = 60) -> None:
        """Until the gateway answers /health (it has started), or fail with its output."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                httpx.get(f"{self.url}/health", timeout=2)
                return
            except httpx.TransportError:
                assert self.process.poll() is None, self.output()
                assert time.monotonic() < deadline, f"oneflow serve did not start: {self.output()}"
                time.sleep(0.2)

    def get(self, path: str, **headers: str) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", headers=headers, timeout=10)

    def stop(self) -> None:
        stop_process(self.process)
        self._log.close()


@contextmanager
def oneflow_serve(
    tmp_path: Path, env: dict[str, str], *args: str, name: str = "serve"
) -> Iterator[ServeProcess]:
    """A started (listening) `oneflow serve`, stopped afterwards."""
    process = ServeProcess(list(args), env, tmp_path / f"{name}.log", cwd=tmp_path)
    try:
        process.wait_listening()
        yield process
    finally:
        process.stop()


def serve_refusal(
    tmp_path: Path, env: dict[str, str], *args: str, port: int = 0
) -> tuple[int, list[str]]:
    """Start `oneflow serve` expecting it to refuse: its exit status and its output's lines
    (a gateway that starts instead fails the test after 60 s, stopped)."""
    process = ServeProcess(list(args), env, tmp_path / "refused.log", cwd=tmp_path, port=port)
    try:
        code = process.process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.stop()
        raise AssertionError(f"oneflow serve started instead: {process.output()}") from None
    process.stop()
    return code, process.output().strip().splitlines()
