"""The database an `oneflow` command opens: the same one from any folder, named, never created
by accident (only `oneflow db upgrade`/`reset` and `oneflow serve` create one)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from oneflow_ai.storage.database import describe_database
from tests.support.databases import put_schema
from tests.test_cli import oneflow

QUIET = {"LOG_LEVEL": "WARNING"}


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A data folder (ONEFLOW_HOME) and two unrelated folders to run commands from."""
    home, first, second = tmp_path / "home", tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    return home, first, second


@pytest.mark.parametrize(
    "command",
    [
        ["projects", "list"],
        ["keys", "list"],
        ["usage"],
        ["credits", "balance", "acme"],
        ["db", "current"],
        ["db", "downgrade"],
    ],
)
def test_a_command_never_creates_the_embedded_database(
    folders: tuple[Path, Path, Path], command: list[str]
) -> None:
    home, folder, _ = folders
    result = oneflow(*command, env={"ONEFLOW_HOME": str(home), **QUIET}, cwd=folder)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"oneflow: no database at {home / 'oneflow.db'}: create it with `oneflow db upgrade` "
        "(or start the gateway with `oneflow serve`)"
    ]
    assert list(folder.iterdir()) == []  # no var/oneflow.db where it ran
    assert not home.exists()


def test_every_folder_uses_the_one_embedded_database_and_says_which(
    folders: tuple[Path, Path, Path],
) -> None:
    home, first, second = folders
    env = {"ONEFLOW_HOME": str(home)}
    created = oneflow("db", "upgrade", env=env, cwd=first)
    assert created.returncode == 0, created.stderr
    assert oneflow("projects", "create", "acme", "--id", "acme", env=env, cwd=first).returncode == 0

    listed = oneflow("projects", "list", "--json", env=env, cwd=second)
    assert listed.returncode == 0, listed.stderr
    assert "acme" in {project["id"] for project in orjson.loads(listed.stdout)}
    assert listed.stderr.splitlines() == [
        f"oneflow: database {home / 'oneflow.db'} (embedded; DATABASE_URL unset)"
    ]
    assert list(first.iterdir()) == [] and list(second.iterdir()) == []


@pytest.mark.parametrize("state", ["empty", "behind"])
async def test_a_database_that_is_not_migrated_is_refused_in_one_line(
    fresh_database_url: str, tmp_path: Path, state: str
) -> None:
    """On PostgreSQL, or an SQLite file that exists without OneFlow's schema."""
    if state == "empty" and fresh_database_url.startswith("sqlite"):
        Path(fresh_database_url.split("///", 1)[1]).touch()
    await put_schema(fresh_database_url, state)
    env = {"DATABASE_URL": fresh_database_url}
    for command in (["keys", "list"], ["usage"]):
        result = oneflow(*command, env=env, cwd=tmp_path)
        assert result.returncode == 1
        [line] = result.stderr.splitlines()
        assert line.startswith(f"oneflow: database {describe_database(fresh_database_url)} ")
        assert "run `oneflow db upgrade`" in line or "create it with `oneflow db upgrade`" in line


def test_an_unreachable_database_is_named_in_its_one_line(tmp_path: Path) -> None:
    url = "postgresql+asyncpg://x:secret-pw@127.0.0.1:1/none"
    result = oneflow("keys", "list", env={"DATABASE_URL": url}, cwd=tmp_path)
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("oneflow: database error: ")
    assert line.endswith("(postgresql://x:***@127.0.0.1:1/none)")


def test_an_earlier_releases_database_in_var_is_pointed_at_not_lost(
    folders: tuple[Path, Path, Path],
) -> None:
    """Earlier releases kept the embedded database in ./var of the folder a command ran from."""
    home, folder, _ = folders
    earlier = folder / "var" / "oneflow.db"
    earlier.parent.mkdir()
    made = oneflow("db", "upgrade", env={"DATABASE_URL": f"sqlite:///{earlier}"}, cwd=folder)
    assert made.returncode == 0, made.stderr

    result = oneflow("projects", "list", env={"ONEFLOW_HOME": str(home), **QUIET}, cwd=folder)
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.endswith(
        f"; an earlier release's embedded database is at {earlier}: set "
        f"DATABASE_URL=sqlite:///{earlier} to keep using it, or move it to {home / 'oneflow.db'}"
    )
    assert not home.exists()
