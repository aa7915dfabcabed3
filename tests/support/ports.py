"""Ports without races: a child binds port 0 itself and reports the port it got.

Binding a free port here, closing it and handing the number to a child is a race: any other
process may take the port in between. Instead `oneflow serve` and `oneflow fake-providers` take
`--port 0 --port-file PATH` and write the port they listen on to PATH once they listen:
`start_on_port_0` runs such a command and reads the port back (`reported_port`), and
`first_answer` waits for an address to answer. For a port where nothing listens (a refused
connection), `refusing_port` keeps a socket bound, not listening, while the test uses it.

Servers that are not ours and cannot report a port they chose (PostgreSQL, Redis, HAProxy) get
`guessed_free_port`: the one place where a port is found free and closed again, named for what
it is.
"""

from __future__ import annotations

import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import httpx

__all__ = [
    "first_answer",
    "guessed_free_port",
    "refusing_port",
    "reported_port",
    "start_on_port_0",
]


def start_on_port_0(
    command: Sequence[str],
    *,
    timeout: float = 90,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    stdout: int | IO[str] | None = None,
    stderr: int | IO[str] | None = None,
) -> tuple[subprocess.Popen[str], int]:
    """Start `command --port 0 --port-file F` and wait until it has written its port to F;
    the process and its port. A process that exits first, or says nothing within `timeout`,
    is stopped and reported with its exit status."""
    with tempfile.TemporaryDirectory(prefix="oneflow-port-") as scratch:
        port_file = Path(scratch) / "port"
        process = subprocess.Popen(
            [*command, "--port", "0", "--port-file", str(port_file)],
            cwd=cwd,
            env=env,
            stdout=stdout,
            stderr=stderr,
            text=True,
        )
        return process, reported_port(process, port_file, timeout)


def reported_port(
    process: subprocess.Popen[str] | subprocess.Popen[bytes], port_file: Path, timeout: float = 90
) -> int:
    """The port `process` wrote to `port_file` once listening. A process that exits first, or
    writes nothing within `timeout` (it is then killed), raises RuntimeError."""
    deadline = time.monotonic() + timeout
    while not port_file.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            code = process.wait(timeout=30)
            raise RuntimeError(f"{' '.join(map(str, process.args))} reported no port (exit {code})")
        time.sleep(0.05)
    return int(port_file.read_text())


def first_answer(
    process: subprocess.Popen[str], url: str, *, timeout: float = 60, log_path: Path | None = None
) -> httpx.Response:
    """GET `url` until it answers (any status), while `process` runs; the answer. A process
    that stops first, or no answer within `timeout` (the process is then killed), fails the
    test with its output (its stdout if piped, and `log_path`)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return httpx.get(url, timeout=5)
        except httpx.TransportError:
            if process.poll() is not None or time.monotonic() > deadline:
                if process.poll() is None:  # stopped first, so that its output can end
                    process.kill()
                    process.wait(timeout=30)
                output = process.stdout.read() if process.stdout else ""
                if log_path is not None:
                    output += log_path.read_text()
                raise AssertionError(f"no answer from {url}:\n{output[-3000:]}") from None
            time.sleep(0.2)


@contextmanager
def refusing_port() -> Iterator[int]:
    """A loopback port that refuses connections for as long as the block runs: bound by this
    process and never listening, so no other process can take it meanwhile."""
    with socket.socket() as sock:  # no SO_REUSEADDR: nobody else can bind it meanwhile
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


def guessed_free_port() -> int:
    """A loopback port that was free a moment ago, for a server that cannot bind port 0 and
    report it (PostgreSQL, Redis, HAProxy). Another process may take it first: never use it
    for `oneflow serve` or `oneflow fake-providers`, which report the port they bind."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
