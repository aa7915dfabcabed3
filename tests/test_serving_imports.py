"""What the serving process imports: the app and its lifespan load neither what only the CLI's
migrations need (Alembic, Mako), nor what only JWT sessions need (PyJWT), nor redis-py without
REDIS_URL, nor OpenTelemetry's SDK with tracing off (with REDIS_URL either), nor rich (which
structlog would import), nor a tokenizer encoding (nor tiktoken) before the first count, nor
argon2 before the first password; and the migration chain read without Alembic is Alembic's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from oneflow_ai.storage import migrate
from tests.conftest import REDIS, redis_server_url
from tests.support.databases import migrated_sqlite_url

_PROBE = """
import asyncio, json, os, sys
from oneflow_ai.app import create_app

app = create_app(configure_logs=False)

async def main() -> None:
    async with app.router.lifespan_context(app):
        from oneflow_ai.billing import encoding
        top = ("alembic", "mako", "jwt", "tiktoken", "argon2", "rich")
        top += () if os.environ.get("REDIS_URL") else ("redis",)
        loaded = [m for m in sys.modules if m.split(".")[0] in top]
        # FastAPI loads OpenTelemetry's API (redis-py would load its SDK's metrics): not its SDK.
        loaded += [m for m in sys.modules if m.startswith("opentelemetry.sdk")]
        loaded += [m for m in sys.modules if m.startswith("opentelemetry.exporter")]
        loaded += [m for m in sys.modules if m.startswith("oneflow_ai.observability.otel")]
        loaded += [f"encoding:{name}" for name in encoding._cache]
        print("LOADED", json.dumps(sorted(loaded)))
    import opentelemetry.sdk.metrics, rich  # hidden only from structlog's and redis-py's imports

asyncio.run(main())
"""


@pytest.mark.parametrize("shared", ["embedded", REDIS])
def test_the_serving_process_loads_only_what_serving_needs(tmp_path: Path, shared: str) -> None:
    redis_url = redis_server_url() if shared == "redis" else None
    env = {
        **{name: value for name, value in os.environ.items() if name != "REDIS_URL"},
        **({"REDIS_URL": redis_url} if redis_url else {}),
        "DATABASE_URL": migrated_sqlite_url(tmp_path / "serving.db"),
        "ONEFLOW_DATA_DIR": str(tmp_path / "data"),
        "ENABLE_TRACING": "false",
        "OPENAI_API_KEY": "sk-test-serving-imports",
    }
    out = subprocess.run(
        [sys.executable, "-c", _PROBE],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    [line] = [line for line in out.stdout.splitlines() if line.startswith("LOADED ")]
    assert json.loads(line.removeprefix("LOADED ")) == []


def test_the_migration_chain_read_without_alembic_is_alembics() -> None:
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory.from_config(migrate._config())
    assert migrate.head_revision() == scripts.get_current_head()
    known = {script.revision for script in scripts.walk_revisions()}
    assert known == set(migrate._revisions())
    assert all(migrate.known_revision(revision) for revision in known)
    assert not migrate.known_revision("9999")
