"""Shared fixtures: settings per test, real databases (SQLite and PostgreSQL), real Redis.

PostgreSQL and Redis tests run when `TEST_DATABASE_URL` / `TEST_REDIS_URL` name servers (CI
sets both; `.ci/run` starts them if they are down). On a laptop without them the suite runs the
embedded half and says in its summary what it did not cover. The console's browser tests
(marker `browser`) run the same way when Debian's Chromium is installed (`.ci/run` installs it).
With `ONEFLOW_REQUIRE_SERVICES=1` (set by `.ci/run`) a missing server or browser is an error,
never a silent skip.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from oneflow_ai.observability.logging import configure_logging
from oneflow_ai.settings import Settings
from oneflow_ai.storage import migrate
from oneflow_ai.storage.database import create_engine
from tests.support.databases import (
    create_pg_database,
    drop_pg_database,
    empty_pg_database,
    migrated_sqlite_url,
    pg_server_url,
)

_LEAKY_VARIABLES = (
    "ENVIRONMENT",
    "DATABASE_URL",
    "ONEFLOW_HOME",
    "DATABASE_POOL_SIZE",
    "REDIS_URL",
    "REDIS_KEY_PREFIX",
    "LOG_LEVEL",
    "LOG_FORMAT",
    "ENABLE_METRICS",
    "ENABLE_TRACING",
    "JWT_SECRET",
    "ONEFLOW_MASTER_KEY",
    "FAKE_PROVIDERS",
    "CATALOG_PATH",
    "CORS_ORIGINS",
    "MAX_REQUEST_SIZE",
    "RATE_LIMIT_PER_MINUTE",
    "RATE_LIMIT_PER_HOUR",
    "UPSTREAM_CONNECT_TIMEOUT",
    "UPSTREAM_READ_TIMEOUT",
    "UPSTREAM_MAX_CONNECTIONS",
    "ELEVENLABS_VOICES",
    "RATE_LIMIT_TOKENS_PER_MINUTE",
    "RATE_LIMIT_PROVIDERS",
    "RATE_LIMIT_FAIL_OPEN",
    "JWT_PREVIOUS_SECRETS",
    "JWT_ISSUER",
    "JWT_AUDIENCE",
    "JWT_ACCESS_TTL_SECONDS",
    "JWT_REFRESH_TTL_SECONDS",
    "API_KEY_PEPPER",
    "API_KEY_CACHE_TTL_SECONDS",
    "API_KEY_CACHE_SIZE",
    "API_KEY_MAX_AGE_DAYS",
    "API_KEY_ROTATION_GRACE_HOURS",
    "LOGIN_ATTEMPTS_PER_MINUTE",
    *(
        f"{p}_{s}"
        for p in ("OPENAI", "ANTHROPIC", "STABILITY", "ELEVENLABS")
        for s in ("API_KEY", "BASE_URL")
    ),
)

POSTGRES = pytest.param("postgresql", marks=pytest.mark.postgres, id="postgresql")
SQLITE = pytest.param("sqlite", id="sqlite")
MEMORY = pytest.param("memory", id="memory")
REDIS = pytest.param("redis", marks=pytest.mark.redis, id="redis")


def pytest_configure(config: pytest.Config) -> None:
    for name in _LEAKY_VARIABLES:
        os.environ.pop(name, None)
    # The embedded database's default home is the user's data folder: never touched by tests
    # (nor by the `oneflow` processes they start, which inherit this).
    os.environ["ONEFLOW_HOME"] = tempfile.mkdtemp(prefix="oneflow-home-")
    config._oneflow_uncovered = {}  # type: ignore[attr-defined]
    # Apps built with configure_logs=False log through this chain (structlog's default console
    # renderer would pretty-print tracebacks, slowly).
    configure_logging(level="INFO", json=True)
    _BASELINE_LOGGING.append(structlog.get_config()["processors"])


_BASELINE_LOGGING: list[object] = []


@pytest.fixture(autouse=True)
def _baseline_logging() -> Iterator[None]:
    """A test that configures logging (create_app's default, the CLI) does not leave its
    configuration (level, console format, a stream) to the tests after it."""
    yield
    if structlog.get_config()["processors"] is not _BASELINE_LOGGING[-1]:
        configure_logging(level="INFO", json=True)
        _BASELINE_LOGGING.append(structlog.get_config()["processors"])


def redis_server_url() -> str | None:
    return os.environ.get("TEST_REDIS_URL", "").strip() or None


# marker -> (what it needs, how to provide it)
NEEDS = {
    "postgres": ("PostgreSQL", "set TEST_DATABASE_URL"),
    "redis": ("Redis", "set TEST_REDIS_URL"),
    "node": ("Node.js and npm", "install Node.js 20+ with npm"),
    "browser": ("Chromium", "apt-get install -y chromium"),
    "cluster": (
        "haproxy, initdb/pg_ctl and redis-server",
        "apt-get install haproxy postgresql redis-server",
    ),
}
#: The browser the console's tests drive: Debian's package unless `ONEFLOW_CHROMIUM` names
#: another Chromium or Chrome (Playwright's own browser download is not used).
CHROMIUM = Path(os.environ.get("ONEFLOW_CHROMIUM") or "/usr/bin/chromium")


def cluster_tools() -> bool:
    """Whether the local cluster's servers can be started here (tests/support/cluster.py)."""
    from tests.support.pg_server import postgres_bindir

    found = shutil.which("haproxy") and shutil.which("redis-server") and postgres_bindir()
    return bool(found)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    missing = {
        "postgres": (*NEEDS["postgres"], pg_server_url()),
        "redis": (*NEEDS["redis"], redis_server_url()),
        "node": (*NEEDS["node"], shutil.which("node") and shutil.which("npm")),
        "browser": (*NEEDS["browser"], CHROMIUM.exists() or None),
        "cluster": (*NEEDS["cluster"], cluster_tools()),
    }
    required = os.environ.get("ONEFLOW_REQUIRE_SERVICES") == "1"
    keep: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    uncovered: dict[str, int] = config._oneflow_uncovered  # type: ignore[attr-defined]
    for item in items:
        absent = [m for m in missing if item.get_closest_marker(m) and not missing[m][2]]
        if absent and required:
            raise pytest.UsageError(
                f"{item.nodeid} needs {missing[absent[0]][0]}: "
                f"{missing[absent[0]][1]} (ONEFLOW_REQUIRE_SERVICES=1)"
            )
        if absent:
            dropped.append(item)
            for marker in absent:
                uncovered[marker] = uncovered.get(marker, 0) + 1
        else:
            keep.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    uncovered: dict[str, int] = terminalreporter.config._oneflow_uncovered  # type: ignore[attr-defined]
    if not uncovered:
        return
    terminalreporter.section("not covered in this run")
    for marker, count in sorted(uncovered.items()):
        label, remedy = NEEDS[marker]
        terminalreporter.write_line(
            f"{count} {label} test(s) deselected: {remedy} to run them (CI does)"
        )


# ---- settings --------------------------------------------------------------------------


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    """Settings for one test: no `.env`, a migrated SQLite file of its own unless overridden."""

    def build(**overrides: object) -> Settings:
        values: dict[str, object] = {
            "log_format": "json",
            "oneflow_data_dir": tmp_path / "oneflow-data",
            **overrides,
        }
        if "database_url" not in values:
            values["database_url"] = migrated_sqlite_url(tmp_path / "settings.db")
        return Settings(_env_file=None, **values)  # type: ignore[arg-type, call-arg]

    return build


# ---- databases -------------------------------------------------------------------------


@pytest.fixture(scope="session")
async def _pg_template() -> AsyncIterator[str | None]:
    """A migrated PostgreSQL database that per-test databases are copied from."""
    server = pg_server_url()
    if server is None:
        yield None
        return
    url = await create_pg_database(server, prefix="oneflow_test_tmpl")
    engine = create_engine(url, pool_size=1)
    try:
        await migrate.upgrade(engine)
    finally:
        await engine.dispose()
    try:
        yield url
    finally:
        await drop_pg_database(url)


async def _pg_copy(template: str) -> str:
    import asyncpg
    from sqlalchemy.engine import make_url

    server = pg_server_url()
    assert server is not None
    name = f"oneflow_test_{uuid.uuid4().hex[:12]}"
    base = make_url(server)
    connection = await asyncpg.connect(
        base.set(drivername="postgresql").render_as_string(hide_password=False)
    )
    try:
        await connection.execute(
            f'CREATE DATABASE "{name}" TEMPLATE "{make_url(template).database}"'
        )
    finally:
        await connection.close()
    return base.set(drivername="postgresql+asyncpg", database=name).render_as_string(
        hide_password=False
    )


@pytest.fixture(params=[SQLITE, POSTGRES])
async def fresh_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """An empty database (no schema) on each backend."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}"
        return
    async with empty_pg_database() as url:
        yield url


@asynccontextmanager
async def _migrated_database(kind: str, tmp_path: Path, template: str | None) -> AsyncIterator[str]:
    if kind == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'oneflow.db'}"
        engine = create_engine(url, pool_size=1)
        try:
            await migrate.upgrade(engine)
        finally:
            await engine.dispose()
        yield url
        return
    assert template is not None, "PostgreSQL tests need TEST_DATABASE_URL"
    url = await _pg_copy(template)
    try:
        yield url
    finally:
        await drop_pg_database(url)


@pytest.fixture(params=[SQLITE, POSTGRES])
async def database_url(
    request: pytest.FixtureRequest, tmp_path: Path, _pg_template: str | None
) -> AsyncIterator[str]:
    """A database migrated to head, of its own for this test, on each backend."""
    async with _migrated_database(request.param, tmp_path, _pg_template) as url:
        yield url


@pytest.fixture(scope="module", params=[SQLITE, POSTGRES])
async def module_database_url(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    _pg_template: str | None,
) -> AsyncIterator[str]:
    """A database migrated to head, shared by the tests of one module, on each backend."""
    folder = tmp_path_factory.mktemp("module-db")
    async with _migrated_database(request.param, folder, _pg_template) as url:
        yield url


@pytest.fixture
async def postgres_url(tmp_path: Path, _pg_template: str | None) -> AsyncIterator[str]:
    """A migrated PostgreSQL database of its own (mark the test `@pytest.mark.postgres`)."""
    async with _migrated_database("postgresql", tmp_path, _pg_template) as url:
        yield url


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    db = create_engine(database_url, pool_size=5)
    try:
        yield db
    finally:
        await db.dispose()


# ---- Redis -----------------------------------------------------------------------------


@pytest.fixture
def redis_prefix() -> str:
    return f"oneflowtest:{uuid.uuid4().hex[:10]}:"
