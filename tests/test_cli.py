"""The `oneflow` command as an operator runs it: a real process, real exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from oneflow_ai import __version__
from tests.support.oneflow_serve import started


def oneflow(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "oneflow_ai", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        timeout=timeout,
    )


def test_version() -> None:
    result = oneflow("version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"oneflow-ai {__version__}"


@pytest.mark.parametrize("command", [["serve"], ["db", "upgrade"]])
def test_bad_setting_stops_with_one_line(command: list[str], tmp_path: Path) -> None:
    result = oneflow(*command, env={"DATABASE_URL": "nonsense"}, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert lines == [
        "oneflow: invalid setting DATABASE_URL: unsupported database URL 'nonsense': "
        "use postgresql+asyncpg://... or sqlite+aiosqlite:///path"
    ]
    assert "Traceback" not in result.stderr


def test_production_refuses_to_serve_with_default_secrets(tmp_path: Path) -> None:
    result = oneflow("serve", env={"ENVIRONMENT": "production"}, cwd=tmp_path)
    assert result.returncode == 2
    assert "invalid setting JWT_SECRET" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_unreachable_database_is_one_line_too(tmp_path: Path) -> None:
    result = oneflow(
        "db",
        "upgrade",
        env={"DATABASE_URL": "postgresql+asyncpg://x@127.0.0.1:1/none"},
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("oneflow: database error:")
    assert "Traceback" not in result.stderr


def test_db_upgrade_downgrade_reset(fresh_database_url: str, tmp_path: Path) -> None:
    env = {"DATABASE_URL": fresh_database_url, "LOG_LEVEL": "WARNING"}
    up = oneflow("db", "upgrade", env=env, cwd=tmp_path)
    assert up.returncode == 0, up.stderr
    assert up.stdout.strip().startswith("database at revision ")
    head = up.stdout.strip().rsplit(" ", 1)[1]
    assert oneflow("db", "current", env=env, cwd=tmp_path).stdout.strip() == head

    down = oneflow("db", "downgrade", "base", env=env, cwd=tmp_path)
    assert down.returncode == 0, down.stderr
    assert down.stdout.strip() == "database at revision base"

    refused = oneflow("db", "reset", env=env, cwd=tmp_path)
    assert refused.returncode == 2
    reset = oneflow("db", "reset", "--yes", env=env, cwd=tmp_path)
    assert reset.returncode == 0, reset.stderr
    assert reset.stdout.strip() == f"database reset to revision {head}"


def test_serve_migrates_the_embedded_database_and_answers(tmp_path: Path) -> None:
    """The embedded database is `$ONEFLOW_HOME/oneflow.db` (the user's data folder when unset),
    whichever folder the gateway starts from: nothing is created there."""
    home, elsewhere = tmp_path / "home", tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {"ONEFLOW_HOME": str(home), "LOG_FORMAT": "json"}
    with started(elsewhere, env) as gateway:
        ready = gateway.get("/ready")
        assert ready.status_code == 200
        assert (home / "oneflow.db").exists()
        assert (home / "oneflow.db-wal").exists()
    assert list(elsewhere.iterdir()) == [elsewhere / "serve.log"]
    # uvicorn shuts down gracefully, then re-raises SIGTERM so the exit status tells why.
    assert gateway.process.returncode in (0, -15)
    output = gateway.output()
    assert '"event":"startup"' in output
    assert f'"database":"{home / "oneflow.db"}"' in output
    assert '"event":"shutdown"' in output


def test_serve_lifts_the_open_files_limit_to_the_hard_one() -> None:
    """A thousand open streams hold two thousand sockets: more than a default soft limit."""
    script = (
        "import resource\n"
        "from oneflow_ai.cli import _raise_open_files_limit\n"
        "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))\n"
        "_raise_open_files_limit()\n"
        "print(*resource.getrlimit(resource.RLIMIT_NOFILE))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    soft, hard = (int(v) for v in out.stdout.split())
    assert soft == hard or (hard == -1 and soft > 256)
