"""Gateway replicas as real processes: each its own interpreter, sharing only database and Redis."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["GatewayProcess", "gateway_process", "peak_rss_kib", "rss_kib"]

_SCRIPT = Path(__file__).with_name("run_gateway.py")
_ROOT = Path(__file__).resolve().parents[2]


class GatewayProcess:
    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self._log = log_path.open("w")
        self.process = subprocess.Popen(
            [sys.executable, str(_SCRIPT)],
            cwd=_ROOT,
            env={
                **os.environ,
                "LOG_FORMAT": "json",
                "LOG_REQUESTS": "false",
                # The gateways of one test share a data directory, as the workers of one host
                # do (each claims an instance slot of its own), and no other test's.
                "ONEFLOW_DATA_DIR": str(log_path.parent / "oneflow-data"),
                **env,
            },
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        self.log_path = log_path
        self.port = self._read_port(timeout=60)

    def _read_port(self, timeout: float) -> int:
        line = first_line(self.process, timeout)
        if not line.startswith("PORT "):
            self.stop()
            raise RuntimeError(f"gateway did not start: {self.log_path.read_text()[-2000:]}")
        return int(line.split()[1])

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        stop_process(self.process)
        self._log.close()


def first_line(process: subprocess.Popen[str], timeout: float) -> str:
    """The first line the process prints on stdout, or "" if none comes within `timeout`."""
    found: list[str] = []
    reader = threading.Thread(
        target=lambda: found.append(process.stdout.readline() if process.stdout else ""),
        daemon=True,
    )
    reader.start()
    reader.join(timeout)
    return found[0] if found else ""


def stop_process(process: subprocess.Popen[str] | subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it has not exited within 20 s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@contextmanager
def gateway_process(env: dict[str, str], log_path: Path) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess(env, log_path)
    try:
        yield gateway
    finally:
        gateway.stop()


def _status_field(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise KeyError(field)


def rss_kib(pid: int) -> int:
    """Resident memory now (KiB)."""
    return _status_field(pid, "VmRSS")


def peak_rss_kib(pid: int) -> int:
    """The highest resident memory so far (KiB): growth during a request cannot hide from it."""
    return _status_field(pid, "VmHWM")
