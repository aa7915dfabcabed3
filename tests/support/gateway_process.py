"""Gateway replicas as real processes: each its own interpreter, sharing only database and Redis."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["GatewayProcess", "gateway_process", "instance_base", "peak_rss_kib", "rss_kib"]

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
                # The gateways of one test share an instance base and a data directory, as the
                # workers of one host do (each claims a slot of its own: a restart takes over
                # the slot of the one it replaces), and no other test's.
                "ONEFLOW_INSTANCE_ID": instance_base(log_path),
                "ONEFLOW_DATA_DIR": str(log_path.parent / "oneflow-data"),
                # A stop does not wait for load balancers here; streams get 5 s to end.
                "SHUTDOWN_DELAY_SECONDS": "0",
                "SHUTDOWN_GRACE_SECONDS": "5",
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


def instance_base(log_path: Path) -> str:
    """The instance base of the gateways whose logs are beside `log_path` (unless set)."""
    return f"test-{zlib.crc32(str(log_path.parent).encode()):08x}"


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
