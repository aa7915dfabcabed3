"""A local cluster as in production: gateway replicas (`oneflow serve`, each a process of its
own) behind HAProxy, on one PostgreSQL and one Redis, in front of the fake providers.

PostgreSQL and Redis are servers of the cluster's own (tests/support/pg_server.py,
tests/support/redis_server.py), so that faults may stop them; the database is migrated once
before the replicas start, as the Kubernetes migration Job does. Each replica listens on a
port fixed for the cluster's life, so that a restarted replica takes its place behind the
load balancer: the one its first start bound (port 0, read back: tests/support/ports.py). Used
by `make cluster` (scripts/cluster.py) and the cluster test.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.gateway_load import HANG_GUARD, FakeProcess, gateway_env
from tests.support.gateway_process import stop_process
from tests.support.load_balancer import HAProxy, http_status
from tests.support.pg_server import PrivatePostgres
from tests.support.ports import reported_port
from tests.support.redis_server import PrivateRedis

__all__ = ["Cluster", "ClusterConfig", "Replica", "local_cluster"]

ROOT = Path(__file__).resolve().parents[2]
DATABASE = "oneflow"


@dataclass(frozen=True)
class ClusterConfig:
    replicas: int = 3
    #: Gateway settings over the cluster's own (e.g. a setting a branch adds).
    env: dict[str, str] = field(default_factory=dict)
    #: `oneflow fake-providers` options (e.g. a delay between stream chunks).
    fake_options: tuple[str, ...] = ()
    #: The load balancer's port (0: a free one).
    port: int = 0
    #: How often the load balancer checks each replica's `/ready` (milliseconds).
    check_ms: int = 1000


class Replica:
    """`oneflow serve` on 127.0.0.1:`port` (0: the one its first start binds, kept for its
    restarts); its output appended to `log_path` across restarts."""

    def __init__(self, name: str, port: int, env: dict[str, str], log_path: Path) -> None:
        self.name, self.port, self.env, self.log_path = name, port, env, log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        """As the load balancer names it."""
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def start(self) -> None:
        """Start the process and wait until it serves (`/health` answers 200)."""
        assert self.process is None or self.process.poll() is not None, "already running"
        command = ["-m", "oneflow_ai", "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        port_file = self.log_path.with_suffix(".port")
        port_file.unlink(missing_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, *command, "--port-file", str(port_file)],
                cwd=ROOT,
                env={**os.environ, **self.env},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.starts += 1
        try:
            self.port = reported_port(self.process, port_file, HANG_GUARD)
        except RuntimeError:
            raise RuntimeError(f"{self.name}: {self.log_path.read_text()[-3000:]}") from None
        deadline = time.monotonic() + HANG_GUARD
        while not self._healthy():
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log_path.read_text()[-3000:]}")
            assert time.monotonic() < deadline, f"{self.name} did not start"
            time.sleep(0.1)

    def _healthy(self) -> bool:
        return http_status(f"{self.url}/health") == 200

    def signal(self, how: signal.Signals) -> int:
        """Send `how` and wait for the process to exit; its exit code."""
        assert self.process is not None
        self.process.send_signal(how)
        return self.process.wait(timeout=HANG_GUARD)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)


class Cluster:
    """Build it with `local_cluster()`; `url` is the load balancer's."""

    def __init__(self, stack: ExitStack, workdir: Path, config: ClusterConfig) -> None:
        self.workdir, self.config = workdir, config
        self.postgres = PrivatePostgres()
        stack.callback(self.postgres.remove)
        self.redis = PrivateRedis()
        stack.callback(self.redis.remove)
        self.fakes = FakeProcess(workdir / "fakes.log", *config.fake_options)
        stack.callback(self.fakes.stop)
        self.database_url = self.postgres.database_url(DATABASE)
        self.env = {
            **gateway_env(self.database_url, self.fakes, REDIS_URL=self.redis.url),
            "LOG_LEVEL": "INFO",
            "LOG_FORMAT": "json",
            "LOG_REQUESTS": "false",
            **config.env,
        }
        self._migrate()
        self.replicas = [
            Replica(f"replica-{i}", 0, self.env, workdir / f"replica-{i}.log")
            for i in range(config.replicas)
        ]
        for replica in self.replicas:
            stack.callback(replica.stop)
            replica.start()
        ports = [r.port for r in self.replicas]
        self.balancer = HAProxy(
            ports, config.port or None, directory=workdir / "haproxy", check_ms=config.check_ms
        )
        stack.callback(self.balancer.remove)

    @property
    def url(self) -> str:
        return self.balancer.url

    def _migrate(self) -> None:
        self.postgres.create_database(DATABASE)
        self.oneflow("db", "upgrade")

    def oneflow(self, *argv: str, env: dict[str, str] | None = None) -> str:
        """Run the `oneflow` command on the cluster's settings; its output."""
        done = subprocess.run(
            [sys.executable, "-m", "oneflow_ai", *argv],
            cwd=ROOT,
            env={**os.environ, **self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=HANG_GUARD,
        )
        assert done.returncode == 0, f"oneflow {' '.join(argv)}: {done.stdout}{done.stderr}"
        return done.stdout

    def replica_at(self, address: str) -> Replica | None:
        """The replica the load balancer names `address` (host:port)."""
        return next((r for r in self.replicas if r.address == address), None)


@contextmanager
def local_cluster(workdir: Path, config: ClusterConfig | None = None) -> Iterator[Cluster]:
    """Start everything; stop everything (in reverse order) on the way out."""
    with ExitStack() as stack:
        yield Cluster(stack, workdir, config or ClusterConfig())
