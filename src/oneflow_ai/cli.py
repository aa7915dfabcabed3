"""The `oneflow` command: serve the gateway, manage the database, and operate it.

Invalid settings stop every command with one line naming the variable and exit code 2.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import sys
from collections.abc import Coroutine
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from oneflow_ai import __version__
from oneflow_ai.settings import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from oneflow_ai.storage.schema import SchemaStatus

__all__ = ["app", "main"]

T = TypeVar("T")

app = typer.Typer(
    name="oneflow",
    help="OneFlow AI: an AI model gateway.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(
    help="Database schema: upgrade, downgrade, reset, shell.", no_args_is_help=True
)
app.add_typer(db_app, name="db")


def _add_identity_commands() -> None:
    from oneflow_ai.cli_identity import projects_app, users_app
    from oneflow_ai.cli_keys import keys_app

    app.add_typer(keys_app, name="keys")
    app.add_typer(users_app, name="users")
    app.add_typer(projects_app, name="projects")


_add_identity_commands()


def _add_billing_commands() -> None:
    from oneflow_ai.cli_billing import budgets_app, credits_app
    from oneflow_ai.cli_usage import usage

    app.command("usage")(usage)
    app.add_typer(credits_app, name="credits")
    app.add_typer(budgets_app, name="budgets")
    from oneflow_ai.cli_ledger import ledger_app

    app.add_typer(ledger_app, name="ledger")


_add_billing_commands()


def _add_estimate_command() -> None:
    from oneflow_ai.cli_estimate import estimate

    app.command("estimate")(estimate)


_add_estimate_command()


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"oneflow: {message}", err=True)
    return typer.Exit(code)


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        raise _fail(str(exc)) from None


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


def _configure_cli_logging(settings: Settings) -> None:
    from oneflow_ai.observability.logging import configure_logging

    configure_logging(
        level=settings.log_level, json=settings.json_logs, secret_values=settings.secret_values
    )
    # Alembic announces each of its plugins at INFO; the migrations it runs are worth a line.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)


async def _migrate(settings: Settings, action: str, revision: str) -> str | None:
    from oneflow_ai.storage import migrate
    from oneflow_ai.storage.database import create_engine

    engine = create_engine(settings.effective_database_url, pool_size=1)
    try:
        if action == "upgrade":
            await migrate.upgrade(engine, revision)
        elif action == "downgrade":
            await migrate.downgrade(engine, revision)
        return await migrate.current_revision(engine)
    finally:
        await engine.dispose()


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(f"oneflow-ai {__version__}")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
    reload: Annotated[bool, typer.Option(help="Restart on code changes (development).")] = False,
    migrate: Annotated[
        bool | None,
        typer.Option(
            "--migrate/--no-migrate",
            help="Apply pending migrations first (default: on for an SQLite file, "
            "off for PostgreSQL). Without them a database behind the code is refused.",
        ),
    ] = None,
    wait_for_schema: Annotated[
        bool,
        typer.Option(
            "--wait-for-schema",
            help="Start even if the database is behind the code and answer /ready with 503 "
            "until a migration job (oneflow db upgrade) has brought it to head.",
        ),
    ] = False,
    allow_per_worker_limits: Annotated[
        bool,
        typer.Option(
            "--allow-per-worker-limits",
            envvar="ALLOW_PER_WORKER_LIMITS",
            help="Serve several workers without REDIS_URL: each keeps its own rate limits "
            "(every limit applies once per worker), idempotency keys and caches.",
        ),
    ] = False,
    port_file: Annotated[
        Path | None,
        typer.Option(help="Once listening, write the port to this file (for --port 0)."),
    ] = None,
) -> None:
    """Serve the gateway with uvicorn (uvloop + httptools)."""
    from oneflow_ai.cli_startup import Banner, port_in_use, port_taken_message, run_server

    settings = _settings()
    _configure_cli_logging(settings)
    processes = workers if not reload else 1
    per_worker = _per_worker(settings, processes, allowed=allow_per_worker_limits)
    if port_in_use(host, port):
        raise _fail(port_taken_message(host, port), code=1)
    schema = _prepare_database(settings, migrate, wait_for_schema)
    from oneflow_ai.observability.multiprocess import multiprocess_metrics_dir

    # Several workers share their metrics through files: the directory is chosen here, before
    # any worker starts, and cleaned up after the last one stops.
    _raise_open_files_limit()
    with multiprocess_metrics_dir(workers=processes, enabled=settings.enable_metrics):
        run_server(
            _uvicorn_config(settings, host, port, workers if not reload else None, reload),
            on_started=Banner(settings, host, schema, per_worker).announce,
            port_file=port_file,
        )


def _uvicorn_config(
    settings: Settings, host: str, port: int, workers: int | None, reload: bool
) -> dict[str, Any]:
    """What uvicorn is started with: the app factory, the fast loop and parser, no access log."""
    from oneflow_ai.api.graceful import END_MARGIN

    return {
        "app": "oneflow_ai.app:create_app",
        "factory": True,
        "host": host,
        "port": port,
        "workers": workers,
        "reload": reload,
        "loop": "uvloop" if sys.platform != "win32" else "asyncio",
        "http": "httptools",
        "ws": "none",  # no WebSocket routes: the websockets library stays unloaded
        "log_config": None,
        "access_log": False,
        "server_header": False,
        # What the gateway's graceful stop needs (api/graceful.py sets it again).
        "timeout_graceful_shutdown": int(settings.shutdown_grace_seconds + END_MARGIN),
    }


def _prepare_database(settings: Settings, migrate: bool | None, wait: bool) -> SchemaStatus:
    """The schema at head (migrated if asked), or one line and exit 1."""
    from oneflow_ai.cli_database import (
        DatabaseNotReady,
        database_error,
        earlier_database_notice,
        prepare_for_serving,
    )

    notice = earlier_database_notice(settings)
    if notice is not None:
        typer.echo(f"oneflow: {notice}", err=True)
    try:
        return _run(prepare_for_serving(settings, migrate_schema=migrate, wait=wait))
    except DatabaseNotReady as exc:
        raise _fail(str(exc), code=1) from None
    except Exception as exc:
        raise _fail(database_error(exc, settings), code=1) from None


def _per_worker(settings: Settings, workers: int, *, allowed: bool) -> int:
    """How many workers will count rate limits on their own (0: shared through Redis, or one
    process). Without Redis, several workers are refused unless explicitly allowed."""
    if workers <= 1 or settings.redis_url:
        return 0
    if not allowed:
        raise _fail(
            f"--workers {workers} without REDIS_URL would give each worker its own rate-limit "
            f"counters (every limit {workers} times over), idempotency keys and caches: set "
            "REDIS_URL, or pass --allow-per-worker-limits to accept that"
        )
    return workers


def _raise_open_files_limit() -> None:
    """Every open stream holds two sockets (the caller's and the provider's): lift the soft
    limit on open files (1,024 on many systems) to the hard one, as long-lived servers do."""
    try:
        import resource
    except ImportError:  # not on Windows
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1_048_576)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def _schema_command(*actions: tuple[str, str], create: bool = False) -> str | None:
    """Run schema actions on the configured database (named on stderr); the revision after.
    Without `create`, a missing SQLite file is refused, never created."""
    from oneflow_ai.cli_database import (
        DatabaseNotReady,
        announce_database,
        database_error,
        require_file,
    )

    settings = _settings()
    try:
        if not create:
            require_file(settings)
        current = None
        for action, revision in actions:
            current = _run(_migrate(settings, action, revision))
    except DatabaseNotReady as exc:
        raise _fail(str(exc), code=1) from None
    except Exception as exc:
        raise _fail(database_error(exc, settings), code=1) from None
    announce_database(settings)
    return current


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument()] = "head") -> None:
    """Apply migrations up to REVISION (default: head); creates the database's schema."""
    current = _schema_command(("upgrade", revision), create=True)
    typer.echo(f"database at revision {current}")


@db_app.command("downgrade")
def db_downgrade(revision: Annotated[str, typer.Argument()] = "-1") -> None:
    """Roll back to REVISION (default: one step back; 'base' removes everything)."""
    current = _schema_command(("downgrade", revision))
    typer.echo(f"database at revision {current or 'base'}")


@db_app.command("current")
def db_current() -> None:
    """Print the database's current revision."""
    current = _schema_command(("current", ""))
    typer.echo(current or "base")


@db_app.command("reset")
def db_reset(
    yes: Annotated[bool, typer.Option("--yes", help="Confirm: every row is lost.")] = False,
) -> None:
    """Downgrade to nothing and upgrade again. Every row is lost."""
    if not yes:
        raise _fail("db reset drops every table; run it again with --yes to confirm")
    current = _schema_command(("downgrade", "base"), ("upgrade", "head"), create=True)
    typer.echo(f"database reset to revision {current}")


@db_app.command("shell")
def db_shell() -> None:
    """Open sqlite3 or psql on the configured database."""
    from sqlalchemy.engine import make_url

    from oneflow_ai.cli_database import DatabaseNotReady, announce_database, require_file

    settings = _settings()
    try:
        require_file(settings)  # sqlite3 would create an empty one
    except DatabaseNotReady as exc:
        raise _fail(str(exc), code=1) from None
    announce_database(settings)
    url = make_url(settings.effective_database_url)
    if url.get_backend_name() == "sqlite":
        tool, args = "sqlite3", [str(url.database)]
    else:
        tool = "psql"
        args = [url.set(drivername="postgresql").render_as_string(hide_password=False)]
    if shutil.which(tool) is None:
        raise _fail(f"{tool} is not installed", code=1)
    # Hands the terminal over to the database shell (no shell involved: argv is a list).
    os.execvp(tool, [tool, *args])  # noqa: S606  # nosec B606


@app.command("fake-providers")
def fake_providers(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 9100,
    latency_ms: Annotated[float, typer.Option(min=0, help="Added before every answer.")] = 0,
    ttft_ms: Annotated[float, typer.Option(min=0, help="Time to the first token.")] = 0,
    chunk_delay_ms: Annotated[float, typer.Option(min=0, help="Between stream chunks.")] = 0,
    reply_words: Annotated[int, typer.Option(min=1, help="Words in each chat answer.")] = 16,
    api_key: Annotated[
        str | None, typer.Option(help="Accept only this key (default: any non-empty key).")
    ] = None,
    any_model: Annotated[bool, typer.Option(help="Serve unknown model names too.")] = False,
    hang_seconds: Annotated[
        float, typer.Option(min=0, help="How long a timeout fault keeps a request waiting.")
    ] = 600,
    workers: Annotated[
        int, typer.Option(min=1, help="Processes sharing the port (faults are per process).")
    ] = 1,
    port_file: Annotated[
        Path | None,
        typer.Option(help="Once listening, write the port to this file (for --port 0)."),
    ] = None,
) -> None:
    """Serve fake OpenAI, Anthropic, Stability AI and ElevenLabs APIs for tests and demos."""
    from oneflow_ai.cli_startup import write_port_file
    from oneflow_fakes.demo import FakeConfig, serve

    config = FakeConfig(
        api_key=api_key,
        latency_ms=latency_ms,
        ttft_ms=ttft_ms,
        chunk_delay_ms=chunk_delay_ms,
        reply_words=reply_words,
        any_model=any_model,
        hang_seconds=hang_seconds,
    )
    serve(
        config,
        host=host,
        port=port,
        workers=workers,
        announce=typer.echo,
        on_listening=None if port_file is None else partial(write_port_file, port_file),
    )


def main() -> None:
    app()
