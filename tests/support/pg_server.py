"""A PostgreSQL server of a test's own: `initdb` into a temporary directory, `pg_ctl` on a
free port, so that a test may stop it and start it again (never the shared server of
TEST_DATABASE_URL, which other tests use).

The server binaries come from `pg_config --bindir` or `/usr/lib/postgresql/<version>/bin`
(Debian's `postgresql` package). PostgreSQL refuses to run as root: under root the server
runs as the `postgres` system user, which owns its directory.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.support.ports import guessed_free_port

__all__ = ["PrivatePostgres", "postgres_bindir"]

_TIMEOUT = 120


def postgres_bindir() -> Path | None:
    """The directory of `initdb` and `pg_ctl`, or None when they are not installed."""
    candidates: list[str] = []
    if shutil.which("pg_config"):
        found = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
        candidates.append(found.stdout.strip())
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for folder in candidates:
        if folder and (Path(folder) / "initdb").exists() and (Path(folder) / "pg_ctl").exists():
            return Path(folder)
    return None


class PrivatePostgres:
    """One PostgreSQL cluster in a directory of its own, listening on 127.0.0.1:`port`
    (trust authentication, user `postgres`). `stop()` and `start()` as often as needed;
    `remove()` stops it and deletes its files."""

    def __init__(self, port: int | None = None) -> None:
        bindir = postgres_bindir()
        if bindir is None:
            raise RuntimeError("PostgreSQL's initdb/pg_ctl are not installed")
        self._bin = bindir
        self._user = "postgres" if os.geteuid() == 0 else None
        self.directory = Path(tempfile.mkdtemp(prefix="oneflow-pg-"))
        if self._user is not None:
            shutil.chown(self.directory, self._user, self._user)
        self.data = self.directory / "data"
        self.log_path = self.directory / "server.log"
        self.port = port or guessed_free_port()
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        self.start()

    def _run(self, tool: str, *args: str) -> None:
        done = subprocess.run(
            [str(self._bin / tool), *args],
            user=self._user,
            cwd=self.directory,
            capture_output=True,
            text=True,
            timeout=_TIMEOUT,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{tool} failed: {done.stdout[-1000:]} {done.stderr[-1000:]}")

    @property
    def url(self) -> str:
        """The server's maintenance database (`postgres`), as the gateway spells URLs."""
        return self.database_url("postgres")

    def database_url(self, database: str) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create database `name`; its URL."""
        host = ("-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres")
        self._run("psql", *host, "-d", "postgres", "-c", f'CREATE DATABASE "{name}"')
        return self.database_url(name)

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.directory} "
            "-c max_connections=300 -c fsync=off -c full_page_writes=off"
        )
        where = ("-D", str(self.data), "-l", str(self.log_path))
        self._run("pg_ctl", *where, "-o", options, "-w", "-t", str(_TIMEOUT), "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (`fast`: sessions are ended, as in an outage; `immediate`: as a
        crash)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", str(_TIMEOUT), "stop")

    def running(self) -> bool:
        done = subprocess.run(
            [str(self._bin / "pg_ctl"), "-D", str(self.data), "status"],
            user=self._user,
            capture_output=True,
        )
        return done.returncode == 0

    def remove(self) -> None:
        if self.data.exists() and self.running():
            self.stop("immediate")
        shutil.rmtree(self.directory, ignore_errors=True)
