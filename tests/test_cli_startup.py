"""`oneflow serve`'s start-up as a user meets it: real processes on SQLite and PostgreSQL.

The database's schema is compared with the code's head before the gateway starts: behind, it is
migrated (an SQLite file by default, PostgreSQL with `--migrate`) or refused in one line; ahead of
the code it is always refused; with `--wait-for-schema` the gateway starts and becomes ready once
a migration job has run. Then the start-up output says what a new user needs.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from oneflow_ai.cli_startup import Banner
from oneflow_ai.settings import DEFAULT_MASTER_KEY, Settings
from oneflow_ai.storage import migrate
from oneflow_ai.storage.database import describe_database, sqlite_path
from oneflow_ai.storage.schema import classify
from tests.support.databases import FUTURE_REVISION, put_schema
from tests.support.oneflow_serve import serve_refusal, started

ADMIN = {"Authorization": f"Bearer {DEFAULT_MASTER_KEY}"}
#: PostgreSQL here trusts every local connection: a password in the URL is only there to be
#: hidden from every line the gateway prints.
PASSWORD = "pw-never-printed-7g2"


def _with_password(url: str) -> str:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return url
    return parsed.set(password=PASSWORD).render_as_string(hide_password=False)


def _is_sqlite(url: str) -> bool:
    return sqlite_path(url) is not None


@pytest.mark.parametrize("state", ["empty", "behind"])
async def test_a_database_behind_the_code_is_refused_in_one_line(
    fresh_database_url: str, tmp_path: Path, state: str
) -> None:
    """PostgreSQL is not migrated unless asked; an SQLite file is, unless --no-migrate."""
    await put_schema(fresh_database_url, state)
    url = _with_password(fresh_database_url)
    args = ["--no-migrate"] if _is_sqlite(url) else []
    code, lines = serve_refusal(tmp_path, {"DATABASE_URL": url, "LOG_FORMAT": "json"}, *args)
    assert code == 1
    assert len(lines) == 1, lines
    assert lines[0].startswith("oneflow: ")
    assert describe_database(url) in lines[0]
    assert "`oneflow db upgrade`" in lines[0]
    assert PASSWORD not in lines[0]
    path = sqlite_path(url)
    if path is not None and state == "empty":
        assert not path.exists()  # refused, not created


async def test_a_database_ahead_of_the_code_is_refused_even_with_migrate(
    fresh_database_url: str, tmp_path: Path
) -> None:
    await put_schema(fresh_database_url, "ahead")
    env = {"DATABASE_URL": _with_password(fresh_database_url), "LOG_FORMAT": "json"}
    code, lines = serve_refusal(tmp_path, env, "--migrate")
    assert code == 1
    assert len(lines) == 1, lines
    assert FUTURE_REVISION in lines[0] and "newer than this release knows" in lines[0]
    assert PASSWORD not in lines[0]


async def test_serve_migrates_then_says_what_a_new_user_needs(
    fresh_database_url: str, tmp_path: Path
) -> None:
    """An SQLite file anywhere (not only the default path) is migrated by default, PostgreSQL
    with --migrate; the start-up output names the URL, that database, the fake providers and
    the development master key, as a line to copy."""
    sqlite = _is_sqlite(fresh_database_url)
    await put_schema(fresh_database_url, "empty" if sqlite else "behind")
    url = _with_password(fresh_database_url)
    env = {"DATABASE_URL": url, "LOG_FORMAT": "console"}
    with started(tmp_path, env, *([] if sqlite else ["--migrate"])) as gateway:
        projects = gateway.get("/api/v1/projects", **ADMIN)
        ready = gateway.get("/ready")
        output = gateway.output()
    assert projects.status_code == 200, projects.text
    assert ready.status_code == 200, ready.text
    head = migrate.head_revision()
    assert ready.json()["checks"]["schema"] == {"status": "ok", "revision": head}
    banner = output[output.index("OneFlow AI ") :].splitlines()[:4]
    assert f"at {gateway.url}" in banner[0] and f"{gateway.url}/docs" in banner[0]
    assert banner[1].split(":", 1)[1].strip() == f"{describe_database(url)} (schema {head})"
    assert "built-in fakes answer" in banner[2]
    assert banner[3].split(":", 1)[1].strip() == f"export ONEFLOW_MASTER_KEY={DEFAULT_MASTER_KEY}"
    assert PASSWORD not in output


async def test_wait_for_schema_starts_unready_and_becomes_ready_after_the_migration_job(
    fresh_database_url: str, tmp_path: Path
) -> None:
    """A replica started beside its release's migration job (Kubernetes applies both at once)
    answers /ready 503 until the job has run, then 200: the same process, never restarted."""
    await put_schema(fresh_database_url, "behind")
    env = {"DATABASE_URL": fresh_database_url, "LOG_FORMAT": "json"}
    with started(tmp_path, env, "--no-migrate", "--wait-for-schema") as gateway:
        behind = gateway.get("/ready")
        job = subprocess.run(
            [sys.executable, "-m", "oneflow_ai", "db", "upgrade"],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
        )
        assert job.returncode == 0, job.stderr
        deadline = time.monotonic() + 60
        while (ready := gateway.get("/ready")).status_code != 200:
            assert time.monotonic() < deadline, ready.text
            time.sleep(0.2)
        projects = gateway.get("/api/v1/projects", **ADMIN)
        assert gateway.process.poll() is None
        output = gateway.output()
    assert behind.status_code == 503
    assert behind.json()["checks"]["schema"]["error"] == "schema behind: run oneflow db upgrade"
    assert projects.status_code == 200, projects.text
    events = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    serving = next(e for e in events if e["event"] == "serving")
    assert serving["url"] == gateway.url
    assert serving["database"] == describe_database(fresh_database_url)
    assert serving["schema"] == "behind"
    assert serving["fake_providers"] is True
    assert DEFAULT_MASTER_KEY not in output  # JSON logs never carry the key


def test_a_port_in_use_ends_with_one_line_saying_how_to_pick_another(tmp_path: Path) -> None:
    with socket.socket() as taken:  # listening for the whole test: nobody else gets the port
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, lines = serve_refusal(tmp_path, {"LOG_FORMAT": "console"}, port=port)
    assert code == 1
    assert lines == [
        f"oneflow: port {port} on 127.0.0.1 is already in use (another gateway running?): "
        "pick another with `oneflow serve --port 8100` (`make run PORT=8100`)"
    ]


def test_the_banner_shows_a_usable_url_and_the_key_only_in_development(
    make_settings: Callable[..., Settings],
) -> None:
    schema = classify(migrate.head_revision())
    banner = Banner(make_settings(), "0.0.0.0", schema)
    assert banner.url(8000) == "http://127.0.0.1:8000"
    assert banner.master_key() == f"export ONEFLOW_MASTER_KEY={DEFAULT_MASTER_KEY}"

    own = Banner(make_settings(oneflow_master_key="sk-my-own-development-key"), "::1", schema)
    assert own.url(8100) == "http://[::1]:8100"
    assert "sk-my-own" not in (own.master_key() or "")
    assert "the ONEFLOW_MASTER_KEY you configured" in "\n".join(own.lines(8100))

    staging = make_settings(environment="staging", openai_api_key="sk-real-provider-key")
    lines = Banner(staging, "127.0.0.1", schema).lines(8000)
    assert not any("master key" in line for line in lines)
    assert lines[2].split(":", 1)[1].strip() == "openai"
