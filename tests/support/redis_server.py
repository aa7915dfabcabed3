"""Redis for tests: a client of the shared TEST_REDIS_URL server, cleaned up afterwards, or a
`redis-server` process of the test's own that it may stop and start."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from redis.asyncio import Redis

from oneflow_ai.storage.redis import create_redis
from tests.conftest import redis_server_url
from tests.support.gateway_process import stop_process
from tests.support.ports import guessed_free_port

__all__ = ["PrivateRedis", "redis_for_test"]


@asynccontextmanager
async def redis_for_test(prefix: str) -> AsyncIterator[Redis]:
    """A client of TEST_REDIS_URL (mark the test `redis`); keys under `prefix` are deleted
    when it closes."""
    url = redis_server_url()
    assert url is not None, "needs TEST_REDIS_URL (mark the test `redis`)"
    client = create_redis(url)
    try:
        yield client
    finally:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


class PrivateRedis:
    """A `redis-server` of a test's own on a free port, so that a test may stop it and start
    it again (never the shared server of TEST_REDIS_URL). Append-only persistence, as a
    production Redis has: counters survive a restart. `remove()` stops it and deletes its
    files."""

    def __init__(self, port: int | None = None) -> None:
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server is not installed")
        self.directory = Path(tempfile.mkdtemp(prefix="oneflow-redis-"))
        self.port = port or guessed_free_port()
        self.log_path = self.directory / "server.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server and wait until it answers PING."""
        argv = ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port)]
        argv += ["--dir", str(self.directory), "--save", "", "--appendonly", "yes"]
        argv += ["--logfile", str(self.log_path)]
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start: {self.log_path.read_text()}")
            time.sleep(0.05)

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as connection:
                connection.sendall(b"PING\r\n")
                return connection.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        """SIGTERM: Redis flushes its append-only file and exits."""
        if self.process is not None:
            stop_process(self.process)
            self.process = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)
