"""`oneflow keys|users|projects` as an operator runs them: real processes on a real database."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest
from sqlalchemy import text
from typer.testing import CliRunner, Result

from oneflow_ai.auth.identity import Identity
from oneflow_ai.auth.invalidation import InvalidationBus
from oneflow_ai.cli import app
from oneflow_ai.errors import AuthenticationError
from oneflow_ai.settings import Settings
from oneflow_ai.storage import migrate
from oneflow_ai.storage.database import create_engine, create_sessionmaker
from tests.test_cli import oneflow

MASTER = "sk-master-for-cli-tests-0123456789"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'oneflow.db'}"

    async def prepare() -> None:
        engine = create_engine(url, pool_size=1)
        await migrate.upgrade(engine)
        await engine.dispose()

    asyncio.run(prepare())
    return {"DATABASE_URL": url, "ONEFLOW_MASTER_KEY": MASTER, "LOG_LEVEL": "WARNING"}


def run(env: dict[str, str], *args: str, stdin: str | None = None) -> Result:
    """The command in this process (Typer's runner: same code and exit codes, no interpreter
    start-up per call); `test_a_real_process` covers the installed entry point."""
    return CliRunner().invoke(app, list(args), input=stdin, env=env)


def _authenticate(env: dict[str, str], key: str) -> str:
    """The key's id as a gateway on the same database resolves it, or the refusal's code."""

    async def resolve() -> str:
        settings = Settings(
            _env_file=None, database_url=env["DATABASE_URL"], oneflow_master_key=MASTER
        )  # type: ignore[call-arg]
        engine = create_engine(env["DATABASE_URL"], pool_size=1)
        try:
            identity = Identity(settings, create_sessionmaker(engine), InvalidationBus())
            try:
                return (await identity.authenticate(key)).key_id or ""
            except AuthenticationError as exc:
                return exc.code or "refused"
        finally:
            await engine.dispose()

    return asyncio.run(resolve())


def _age_keys(env: dict[str, str], days: int) -> None:
    async def age() -> None:
        engine = create_engine(env["DATABASE_URL"], pool_size=1)
        async with engine.begin() as conn:
            rows = (await conn.execute(text("SELECT id, created_at FROM api_keys"))).all()
            for key_id, created in rows:
                from datetime import datetime, timedelta

                moved = (datetime.fromisoformat(str(created)) - timedelta(days=days)).isoformat(" ")
                await conn.execute(
                    text("UPDATE api_keys SET created_at = :c WHERE id = :i"),
                    {"c": moved, "i": key_id},
                )
        await engine.dispose()

    asyncio.run(age())


def test_projects_and_keys(env: dict[str, str]) -> None:
    made = run(env, "projects", "create", "Acme Corp", "--id", "acme", "--rpm", "500")
    assert made.exit_code == 0, made.stderr
    assert made.stdout.strip() == "acme Acme Corp"
    listed = run(env, "projects", "list")
    assert 'acme  Acme Corp  {"requests_per_minute":500}' in listed.stdout

    created = run(
        env, "keys", "create", "--project", "acme", "--name", "ci", "--model", "gpt-3.5-turbo"
    )
    assert created.exit_code == 0, created.stderr
    key_id, key = created.stdout.split()
    assert key.startswith("sk-of-") and "not shown again" in created.stderr
    assert _authenticate(env, key) == key_id

    shown = orjson.loads(run(env, "keys", "list", "--json").stdout)
    assert [(k["id"], k["status"], k["allowed_models"]) for k in shown] == [
        (key_id, "active", ["gpt-3.5-turbo"])
    ]
    assert key not in run(env, "keys", "list").stdout

    rotated = run(env, "keys", "rotate", key_id, "--grace-hours", "0", "--json")
    assert rotated.exit_code == 0, rotated.stderr
    successor = orjson.loads(rotated.stdout)
    assert successor["rotated_from"] == key_id
    assert _authenticate(env, key) == "key_rotated"  # no grace asked for
    assert _authenticate(env, successor["key"]) == successor["id"]

    revoked = run(env, "keys", "revoke", successor["id"])
    assert revoked.exit_code == 0 and revoked.stdout.strip() == f"revoked {successor['id']}"
    assert _authenticate(env, successor["key"]) == "key_revoked"

    missing = run(env, "keys", "revoke", "key_nope")
    assert missing.exit_code == 1
    assert missing.stderr.strip() == "oneflow: No API key 'key_nope'"
    bad_role = run(env, "keys", "create", "--project", "acme", "--name", "x", "--role", "root")
    assert bad_role.exit_code == 2


def test_scheduled_rotation(env: dict[str, str]) -> None:
    run(env, "projects", "create", "Acme", "--id", "acme")
    old_id, old_key = run(
        env, "keys", "create", "--project", "acme", "--name", "old"
    ).stdout.split()
    _age_keys(env, 100)
    young_id, _ = run(env, "keys", "create", "--project", "acme", "--name", "young").stdout.split()

    due = run(env, "keys", "rotate-due", "--max-age-days", "90", "--grace-hours", "2")
    assert due.exit_code == 0, due.stderr
    lines = [orjson.loads(line) for line in due.stdout.splitlines()]
    assert [(line["rotated"], line["name"]) for line in lines] == [(old_id, "old")]
    assert lines[0]["key"].startswith("sk-of-") and lines[0]["old_key_valid_until"]
    assert "rotated 1 key(s)" in due.stderr
    assert _authenticate(env, old_key) == old_id  # in its grace period
    assert _authenticate(env, lines[0]["key"]) == lines[0]["id"]
    again = run(env, "keys", "rotate-due", "--max-age-days", "90")
    assert again.stdout == "" and young_id not in again.stdout
    disabled = run({**env, "API_KEY_MAX_AGE_DAYS": "0"}, "keys", "rotate-due")
    assert disabled.exit_code == 2 and "scheduled rotation is off" in disabled.stderr


def test_users(env: dict[str, str]) -> None:
    run(env, "projects", "create", "Acme", "--id", "acme")
    made = run(
        env,
        "users",
        "create",
        "--email",
        "ana@example.com",
        "--project",
        "acme",
        "--role",
        "admin",
        "--password-stdin",
        stdin="a strong password\n",
    )
    assert made.exit_code == 0, made.stderr
    user_id, email = made.stdout.split()
    assert email == "ana@example.com"
    assert "a strong password" not in made.stdout + made.stderr
    listed = run(env, "users", "list")
    assert f"{user_id}  ana@example.com  active  acme:admin" in listed.stdout
    run(env, "projects", "create", "Beta", "--id", "beta")
    added = run(env, "projects", "add-member", "beta", user_id, "--role", "viewer")
    assert added.stdout.strip() == f"{user_id} beta viewer"
    assert run(env, "users", "deactivate", user_id).stdout.strip() == f"{user_id} inactive"
    users = orjson.loads(run(env, "users", "list", "--json").stdout)
    assert users[0]["active"] is False
    assert {m["project_id"] for m in users[0]["memberships"]} == {"acme", "beta"}
    short = run(
        env,
        "users",
        "create",
        "--email",
        "b@example.com",
        "--project",
        "acme",
        "--password-stdin",
        stdin="short\n",
    )
    assert short.exit_code == 1 and "at least 8 characters" in short.stderr
    limits = run(env, "projects", "set-limits", "acme", "--tpm", "1000")
    assert limits.stdout.strip() == 'acme {"tokens_per_minute":1000}'


def test_set_limits_changes_only_the_limits_named(env: dict[str, str]) -> None:
    run(env, "projects", "create", "Acme", "--id", "acme", "--rpm", "500", "--tpm", "1000")

    def set_limits(*options: str) -> object:
        result = run(env, "projects", "set-limits", "acme", *options)
        assert result.exit_code == 0, result.stderr
        project_id, _, limits = result.stdout.strip().partition(" ")
        assert project_id == "acme"
        return orjson.loads(limits)

    assert set_limits("--rpm", "100") == {"requests_per_minute": 100, "tokens_per_minute": 1000}
    assert set_limits("--rph", "2000", "--clear-tpm") == {
        "requests_per_minute": 100,
        "requests_per_hour": 2000,
    }
    nothing = run(env, "projects", "set-limits", "acme")
    assert nothing.exit_code == 2 and "nothing to change" in nothing.stderr
    contradiction = run(env, "projects", "set-limits", "acme", "--rpm", "5", "--clear-rpm")
    assert contradiction.exit_code == 2 and "contradict" in contradiction.stderr
    (project,) = orjson.loads(run(env, "projects", "list", "--json").stdout)[1:]
    assert project["limits"] == {"requests_per_minute": 100, "requests_per_hour": 2000}
    assert set_limits("--clear-all", "--tpm", "7") == {"tokens_per_minute": 7}
    assert set_limits("--clear-all") is None


def test_a_keys_models_are_catalog_ids_and_must_exist(env: dict[str, str]) -> None:
    run(env, "projects", "create", "Acme", "--id", "acme")
    models = ("--model", "gpt-4o", "--model", "claude-3-haiku")
    made = run(env, "keys", "create", "--project", "acme", "--name", "b", *models, "--json")
    assert made.exit_code == 0, made.stderr
    assert orjson.loads(made.stdout)["allowed_models"] == ["claude-3-haiku-20240307", "gpt-4o"]
    unknown = run(
        env, "keys", "create", "--project", "acme", "--name", "c", "--model", "gpt-4o-maxi"
    )
    assert unknown.exit_code == 1 and unknown.stdout == ""
    assert unknown.stderr.splitlines() == [
        "oneflow: Unknown model 'gpt-4o-maxi': not in this gateway's model catalog "
        "(closest catalog ids: gpt-4o-mini, gpt-4o, gpt-5.4-mini)"
    ]
    assert [k["name"] for k in orjson.loads(run(env, "keys", "list", "--json").stdout)] == ["b"]


def test_a_real_process(env: dict[str, str]) -> None:
    assert oneflow("projects", "create", "Acme", "--id", "acme", env=env).returncode == 0
    created = oneflow("keys", "create", "--project", "acme", "--name", "ci", env=env)
    assert created.returncode == 0, created.stderr
    key_id, key = created.stdout.split()
    assert _authenticate(env, key) == key_id
    missing = oneflow("keys", "revoke", "key_nope", env=env)
    assert missing.returncode == 1
    assert missing.stderr.strip() == "oneflow: No API key 'key_nope'"


def test_keys_update_changes_only_what_is_named(env: dict[str, str]) -> None:
    assert run(env, "projects", "create", "Acme", "--id", "acme").exit_code == 0
    made = run(env, "keys", "create", "--project", "acme", "--name", "svc", "--rpm", "10")
    key_id, _ = made.stdout.split()

    def update(*args: str) -> dict[str, object]:
        result = run(env, "keys", "update", key_id, *args, "--json")
        assert result.exit_code == 0, result.stderr
        view: dict[str, object] = orjson.loads(result.stdout)
        return view

    limited = update("--tpm", "5000", "--model", "claude-3-haiku", "--expires-in-days", "7")
    assert limited["limits"] == {"requests_per_minute": 10, "tokens_per_minute": 5000}
    assert limited["allowed_models"] == ["claude-3-haiku-20240307"]
    assert limited["expires_at"] is not None and limited["name"] == "svc"
    cleared = update("--clear-rpm", "--all-models", "--no-expiry", "--name", "renamed")
    assert cleared["limits"] == {"tokens_per_minute": 5000}
    assert (cleared["allowed_models"], cleared["expires_at"], cleared["name"]) == (
        None,
        None,
        "renamed",
    )
    assert update("--clear-limits")["limits"] is None
    text_line = run(env, "keys", "update", key_id, "--rph", "100").stdout
    assert text_line.split()[:3] == [key_id, "renamed", "never"]

    nothing = run(env, "keys", "update", key_id)
    assert nothing.exit_code == 2 and "nothing to change" in nothing.stderr
    both = run(env, "keys", "update", key_id, "--model", "gpt-4o", "--all-models")
    assert both.exit_code == 2
    unknown = run(env, "keys", "update", key_id, "--model", "no-such-model")
    assert unknown.exit_code == 1 and "Unknown model 'no-such-model'" in unknown.stderr
    missing = run(env, "keys", "update", "key_nope", "--name", "x")
    assert missing.exit_code == 1 and "No API key 'key_nope'" in missing.stderr
