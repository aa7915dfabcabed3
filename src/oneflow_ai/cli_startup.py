"""What `oneflow serve` says and checks around uvicorn: the port, and what a new user needs.

A port already taken ends the command with one line saying how to pick another. Once the
gateway listens it prints where (the URL), on which database, whether the built-in fake
providers answer, and in development the master key to call it with, as a line to copy
(`export ONEFLOW_MASTER_KEY=...`, as the docs' examples use it). With JSON logs (outside
development) the same facts, without any key, are one `serving` log event instead.

`--port 0` lets the system choose a free port (the one announced); `--port-file PATH` also
writes it to PATH (whole, in one step), so that a script or a test reads it back instead of
guessing a free port that another process may take before the gateway binds it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
import typer
import uvicorn
from uvicorn.supervisors import ChangeReload, Multiprocess

from oneflow_ai import __version__
from oneflow_ai.settings import DEFAULT_MASTER_KEY, PROVIDERS, Environment, Settings
from oneflow_ai.storage.database import describe_database
from oneflow_ai.storage.schema import SchemaStatus

__all__ = ["Banner", "port_in_use", "port_taken_message", "run_server", "write_port_file"]

log = structlog.get_logger("oneflow")

#: What uvicorn exits with when the application did not start.
_STARTUP_FAILURE = 3


def port_in_use(host: str, port: int) -> bool:
    """Whether something already listens on `host:port` (binding as uvicorn will)."""
    if port == 0:
        return False
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror:
        return False  # an unknown host: uvicorn says so itself
    for family, kind, proto, _, address in addresses:
        with socket.socket(family, kind, proto) as probe:
            if os.name != "nt":  # as uvicorn does; on Windows it would let two bind
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    return True
    return False


def port_taken_message(host: str, port: int) -> str:
    other = 8100 if port != 8100 else 8200
    return (
        f"port {port} on {host} is already in use (another gateway running?): pick another "
        f"with `oneflow serve --port {other}` (`make run PORT={other}`)"
    )


@dataclass(frozen=True, slots=True)
class Banner:
    """The facts a person needs once the gateway listens."""

    settings: Settings
    host: str
    schema: SchemaStatus
    #: Workers that each count rate limits on their own (no REDIS_URL); 0: shared or one.
    per_worker: int = 0

    def url(self, port: int) -> str:
        host = self.host
        # Every interface: show one a browser can open.
        if host in ("0.0.0.0", "::", ""):  # noqa: S104  # nosec B104
            host = "127.0.0.1"
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def providers(self) -> str:
        if self.settings.use_fake_providers:
            return (
                "built-in fakes answer (made up, nothing leaves this machine; "
                "set OPENAI_API_KEY, ANTHROPIC_API_KEY, ... for real providers)"
            )
        configured = [name for name in PROVIDERS if self.settings.provider(name).configured]
        if configured:
            return ", ".join(configured)
        return "none configured: set OPENAI_API_KEY, ANTHROPIC_API_KEY, ... (no fake providers)"

    def database(self) -> str:
        description = describe_database(self.settings.effective_database_url)
        if self.schema.current:
            return f"{description} (schema {self.schema.head})"
        return f"{description} ({self.schema.reason}; /ready answers 503 until then)"

    def master_key(self) -> str | None:
        """Development only: the line that sets the key a user calls the gateway with."""
        if self.settings.environment is not Environment.DEVELOPMENT:
            return None
        if self.settings.oneflow_master_key.get_secret_value() == DEFAULT_MASTER_KEY:
            return f"export ONEFLOW_MASTER_KEY={DEFAULT_MASTER_KEY}"
        return "the ONEFLOW_MASTER_KEY you configured (Authorization: Bearer <key>)"

    def lines(self, port: int) -> list[str]:
        url = self.url(port)
        settings = self.settings
        lines = [
            f"OneFlow AI {__version__} ({settings.environment.value}) at {url}  "
            f"(API docs: {url}/docs)",
            f"  database:    {self.database()}",
            f"  providers:   {self.providers()}",
        ]
        key = self.master_key()
        if key is not None:
            lines.append(f"  master key:  {key}")
        if self.per_worker:
            lines.append(
                f"  rate limits: per worker ({self.per_worker} workers without REDIS_URL: every "
                f"limit applies {self.per_worker} times over; idempotency keys and caches too)"
            )
        return lines

    def announce(self, port: int) -> None:
        if not self.settings.json_logs:
            typer.echo("\n".join(self.lines(port)), err=True)
            return
        log.info(
            "serving",
            url=self.url(port),
            database=describe_database(self.settings.effective_database_url),
            schema=self.schema.state.value,
            fake_providers=self.settings.use_fake_providers,
            **({"limits": "per_worker", "workers": self.per_worker} if self.per_worker else {}),
        )


class _AnnouncingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, on_started: Callable[[int], None]) -> None:
        super().__init__(config)
        self._on_started = on_started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and self.servers and self.servers[0].sockets:
            self._on_started(int(self.servers[0].sockets[0].getsockname()[1]))


def run_server(
    options: dict[str, Any], on_started: Callable[[int], None], port_file: Path | None = None
) -> None:
    """`uvicorn.run(**options)`, calling `on_started(port)` with the port the gateway listens
    on (the one the system chose for port 0), then writing it to `port_file` if given: once it
    serves (one process), or once its socket listens, before the workers start (several
    workers, or `reload`: connections wait in the socket's backlog until a worker takes them).
    """

    def started(port: int) -> None:
        on_started(port)
        if port_file is not None:
            write_port_file(port_file, port)

    config = uvicorn.Config(**options)
    if config.should_reload or config.workers > 1:
        sock = config.bind_socket()  # bound once here, shared by the workers
        sock.listen(config.backlog)
        started(int(sock.getsockname()[1]))
        with contextlib.suppress(KeyboardInterrupt):  # as uvicorn.run
            if config.should_reload:
                ChangeReload(config, target=uvicorn.Server(config).run, sockets=[sock]).run()
            else:
                Multiprocess(config, sockets=[sock]).run()
        return
    config.load_app()
    server = _AnnouncingServer(config, started)
    with contextlib.suppress(KeyboardInterrupt):  # as uvicorn.run
        server.run()
    if not server.started:
        raise SystemExit(_STARTUP_FAILURE)


def write_port_file(path: Path, port: int) -> None:
    """`port` into `path`, replacing the file in one step (a reader never sees part of it)."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(f"{port}\n")
    os.replace(partial, path)
