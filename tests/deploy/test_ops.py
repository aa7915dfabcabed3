"""The operator's tools: the compose stack is coherent (services, ports, variables, mounts,
Prometheus's target, Grafana's provisioning), the Makefile has every target the product
description names, `scripts/health_check.sh` tells a healthy gateway from a broken one, and the
security scan passes. No Docker engine runs here: the compose files are checked, not run."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
import tomllib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from oneflow_ai.app import create_app
from oneflow_ai.settings import Settings
from oneflow_fakes import base_urls
from tests.conftest import redis_server_url
from tests.deploy.test_manifests import serve_help
from tests.deploy.test_observability_config import JOB
from tests.support.databases import empty_pg_database
from tests.support.ports import first_answer, refusing_port, start_on_port_0
from tests.support.server import live_server

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
COMPOSE_FAKES = ROOT / "docker-compose.fakes.yml"
HEALTH_CHECK = ROOT / "scripts" / "health_check.sh"
GATEWAY = "oneflow-ai"
MAKE = shutil.which("make") or "make"


# ---- the compose stack ------------------------------------------------------------------


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    return data


def services() -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = load(COMPOSE)["services"]
    return result


def interpolate(value: str) -> str:
    """Compose's `${NAME:-default}` with nothing set: the default."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", value)


def environment(service: dict[str, Any]) -> dict[str, str]:
    return {name: interpolate(str(value)) for name, value in service["environment"].items()}


def container_ports(service: dict[str, Any]) -> set[int]:
    return {int(interpolate(mapping).rsplit(":", 1)[1]) for mapping in service.get("ports", [])}


def serve_port(service: dict[str, Any]) -> int:
    command = service["command"]
    return int(command[command.index("--port") + 1])


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> source (a named volume, or a path relative to the repository)."""
    found = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        found[target] = source
    return found


def host_and_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None, url
    return parts.hostname, parts.port


def gateway_settings(env: dict[str, str]) -> Settings:
    values = {name.lower(): value for name, value in env.items() if not name.startswith("OTEL_")}
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def test_every_dependency_volume_and_mount_exists() -> None:
    document = load(COMPOSE)
    stack = services()
    named = set(document["volumes"])
    for name, service in stack.items():
        for dependency, condition in service.get("depends_on", {}).items():
            assert dependency in stack, (name, dependency)
            if condition["condition"] == "service_healthy":
                assert "test" in stack[dependency]["healthcheck"], dependency
        for source in mounts(service).values():
            if source.startswith("./"):
                assert (ROOT / source).exists(), (name, source)
            else:
                assert source in named, (name, source)
    assert {"postgres", "redis", "prometheus", "grafana", "jaeger"} <= set(stack)


def test_every_service_reports_health_or_is_a_job_a_service_waits_for() -> None:
    """`docker compose up --wait` (make docker-up) succeeds only if each service becomes healthy
    or is a one-shot job that a long-running service waits for."""
    stack = services()
    awaited = {
        dependency
        for service in stack.values()
        for dependency, condition in service.get("depends_on", {}).items()
        if condition["condition"] == "service_completed_successfully"
    }
    for name, service in stack.items():
        if service["healthcheck"].get("disable"):
            assert name in awaited and service["restart"] == "no", name
        else:
            assert service["healthcheck"]["test"][0] == "CMD", name


def test_the_gateway_runs_migrated_on_postgresql_and_redis_of_the_stack() -> None:
    stack = services()
    gateway, migrate = stack[GATEWAY], stack["migrate"]
    assert gateway["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    assert migrate["command"] == ["oneflow", "db", "upgrade"]
    assert "Apply migrations" in serve_help("db upgrade")
    assert "--no-migrate" in gateway["command"]
    serve = serve_help("serve")
    assert all(flag in serve for flag in gateway["command"] if flag.startswith("--"))
    assert container_ports(gateway) == {serve_port(gateway)}

    env = environment(gateway)
    assert environment(migrate) == env  # one configuration for the migration and the gateway
    for name in env:
        assert name.startswith("OTEL_") or name.lower() in Settings.model_fields, name
    settings = gateway_settings(env)
    assert settings.environment.value == "development"
    assert settings.use_fake_providers  # no provider key: docker-up answers through the fakes
    assert settings.enable_tracing is False  # until ENABLE_TRACING=true in .env

    postgres = stack["postgres"]
    db = urlsplit(settings.effective_database_url)
    assert (db.hostname, db.port) == ("postgres", 5432)
    assert 5432 in container_ports(postgres)
    assert db.username == postgres["environment"]["POSTGRES_USER"]
    assert db.password == postgres["environment"]["POSTGRES_PASSWORD"]
    assert db.path == "/" + postgres["environment"]["POSTGRES_DB"]
    assert settings.redis_url is not None
    assert host_and_port(settings.redis_url) == ("redis", 6379)
    assert 6379 in container_ports(stack["redis"])

    jaeger = stack["jaeger"]
    assert host_and_port(env["OTEL_EXPORTER_OTLP_ENDPOINT"]) == ("jaeger", 4318)
    assert jaeger["environment"]["COLLECTOR_OTLP_ENABLED"] == "true"
    assert {16686, 4318} <= container_ports(jaeger)


def test_prometheus_scrapes_the_gateway_with_the_rules_loaded() -> None:
    stack = services()
    prometheus = mounts(stack["prometheus"])
    config_path = next(
        arg.split("=", 1)[1]
        for arg in stack["prometheus"]["command"]
        if arg.startswith("--config.file=")
    )
    config = load(ROOT / prometheus[config_path])
    config_dir = str(Path(config_path).parent)
    for rule_file in config["rule_files"]:
        source = prometheus[f"{config_dir}/{rule_file}"]
        assert (ROOT / source).resolve() == ROOT / "deploy" / "prometheus" / "alerts.yml"
    (job,) = config["scrape_configs"]
    assert job["job_name"] == JOB  # the job the alert rules and the dashboard select
    (static,) = job["static_configs"]
    (target,) = static["targets"]
    host, port = target.split(":")
    assert host == GATEWAY and int(port) == serve_port(stack[GATEWAY])
    assert job["metrics_path"] == "/metrics"


def test_grafana_provisions_the_prometheus_datasource_and_the_dashboard() -> None:
    stack = services()
    grafana = stack["grafana"]
    assert grafana["environment"]["GF_SECURITY_ADMIN_USER"] == "admin"
    assert grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD"] == "admin"
    grafana_mounts = mounts(grafana)
    provisioning = ROOT / grafana_mounts["/etc/grafana/provisioning"]

    (datasource,) = load(provisioning / "datasources" / "prometheus.yml")["datasources"]
    assert datasource["type"] == "prometheus" and datasource["isDefault"] is True
    assert host_and_port(datasource["url"]) == ("prometheus", 9090)
    assert 9090 in container_ports(stack["prometheus"])

    (provider,) = load(provisioning / "dashboards" / "oneflow.yml")["providers"]
    folder = provider["options"]["path"]
    dashboards = {
        target: ROOT / source
        for target, source in grafana_mounts.items()
        if str(Path(target).parent) == folder
    }
    assert list(dashboards.values()) == [ROOT / "deploy" / "grafana" / "oneflow-dashboard.json"]
    assert all(path.is_file() for path in dashboards.values())
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home in dashboards


def test_the_fakes_override_points_every_provider_at_the_fake_service() -> None:
    override = load(COMPOSE_FAKES)["services"]
    fakes = override["fake-providers"]
    assert fakes["command"][:2] == ["oneflow", "fake-providers"]
    assert "--host" in serve_help("fake-providers")
    port = serve_port(fakes)
    assert container_ports(fakes) == {port}
    assert f":{port}/_fake" in fakes["healthcheck"]["test"][-1]
    gateway = override[GATEWAY]
    assert gateway["depends_on"]["fake-providers"] == {"condition": "service_healthy"}

    env = {**environment(services()[GATEWAY]), **environment(gateway)}
    settings = gateway_settings(env)
    assert not settings.use_fake_providers  # the gateway calls the service, not its own fakes
    for provider, url in base_urls(f"http://fake-providers:{port}").items():
        assert settings.provider(provider).base_url == url
        assert settings.provider(provider).configured


@pytest.fixture
async def empty_postgres() -> AsyncIterator[str]:
    async with empty_pg_database() as url:
        yield url


@pytest.mark.postgres
@pytest.mark.redis
def test_the_stack_commands_migrate_then_serve_a_ready_gateway(
    empty_postgres: str, redis_prefix: str, tmp_path: Path
) -> None:
    """The migrate and gateway services' own commands and environment, run here: only the
    addresses of PostgreSQL and Redis (and the port) differ from the stack's."""
    stack = services()
    redis_url = redis_server_url()
    assert redis_url is not None
    env = {
        **os.environ,
        **environment(stack[GATEWAY]),
        "DATABASE_URL": empty_postgres,
        "REDIS_URL": redis_url,
        "REDIS_KEY_PREFIX": redis_prefix,
    }
    bin_dir = Path(sys.executable).parent

    def command(service: str) -> list[str]:
        program, *args = stack[service]["command"]
        return [str(bin_dir / program), *args]

    migrate = subprocess.run(
        command("migrate"), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert migrate.returncode == 0, migrate.stderr

    serve = command(GATEWAY)
    serve[serve.index("--host") + 1] = "127.0.0.1"
    at = serve.index("--port")
    del serve[at : at + 2]  # the port the system chooses instead, read back
    log = (tmp_path / "gateway.log").open("w")
    process, port = start_on_port_0(serve, cwd=tmp_path, env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        first_answer(process, f"{url}/health", log_path=tmp_path / "gateway.log")
        result = health_check(url)
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()
    assert result.returncode == 0, result.stdout
    assert "OK   /ready: every dependency answers" in result.stdout
    assert not (tmp_path / "var").exists()  # it ran on PostgreSQL, not the embedded database


# ---- the Makefile -----------------------------------------------------------------------


# Every `make …` target the product description (shared/seeds, the "Makefile" list and its
# examples) names; kept here so the test needs nothing outside the repository.
SEED_TARGETS = frozenset(
    [
        "audit",
        "clean",
        "clean-all",
        "db-migrate",
        "db-reset",
        "db-rollback",
        "db-shell",
        "dev",
        "docker-build",
        "docker-clean",
        "docker-down",
        "docker-logs",
        "docker-restart",
        "docker-shell",
        "docker-up",
        "format",
        "grafana",
        "install",
        "install-dev",
        "jaeger",
        "k8s-delete",
        "k8s-deploy",
        "k8s-logs",
        "k8s-port-forward",
        "k8s-status",
        "lint",
        "prod-build",
        "prod-check",
        "prometheus",
        "security-check",
        "test",
        "test-coverage",
        "test-property",
        "type-check",
    ]
)


def make(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MAKE, "--no-print-directory", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def makefile_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([a-z][a-z0-9-]*):", text, re.MULTILINE))


def test_the_makefile_has_every_target_of_the_product_description() -> None:
    wanted = SEED_TARGETS
    assert wanted <= makefile_targets()
    for target in sorted(wanted):
        result = make("-n", target)
        assert result.returncode == 0, (target, result.stderr)


def test_help_lists_every_target_and_every_target_is_phony() -> None:
    targets, variables = make("help").stdout.split("\n\n", 1)
    listed = {line.split()[0] for line in targets.splitlines() if line.strip()}
    assert "make run PORT=8100" in variables  # how to start on another port
    phony_text = re.search(r"^\.PHONY:(.*?[^\\])$", (ROOT / "Makefile").read_text(), re.M | re.S)
    assert phony_text is not None
    phony = set(phony_text.group(1).replace("\\", " ").split())
    assert makefile_targets() == listed == phony


def test_container_and_cluster_targets_run_the_real_commands() -> None:
    version = re.search(r'^version = "(.+)"', (ROOT / "pyproject.toml").read_text(), re.M)
    assert version is not None
    build = make("-n", "docker-build").stdout
    assert f"-t oneflow-ai:{version.group(1)} -t oneflow-ai:latest ." in build
    prod = make("-n", "prod-build").stdout
    assert f"org.opencontainers.image.version={version.group(1)}" in prod
    up = make("-n", "docker-up").stdout
    assert "docker compose -f docker-compose.yml up --detach --build --wait" in up
    with_fakes = make("-n", "docker-up", "FAKES=1").stdout
    assert "-f docker-compose.yml -f docker-compose.fakes.yml up" in with_fakes
    deploy = make("-n", "k8s-deploy").stdout
    assert deploy.index("apply -f deploy/k8s/namespace.yaml") < deploy.index("apply -k deploy/k8s")
    namespace = load(ROOT / "deploy" / "k8s" / "kustomization.yaml")["namespace"]
    for target in ("k8s-status", "k8s-logs", "k8s-port-forward"):
        assert f"kubectl -n {namespace} " in make("-n", target).stdout, target
    forward = make("-n", "k8s-port-forward").stdout
    assert "port-forward service/oneflow-ai 8000:80" in forward
    assert "pip-audit" not in make("-n", "test").stdout  # the audit needs the network


@pytest.mark.parametrize(
    ("target", "url"),
    [
        ("prometheus", "http://localhost:9090"),
        ("grafana", "http://localhost:3000"),
        ("jaeger", "http://localhost:16686"),
    ],
)
def test_ui_targets_print_the_url_and_never_fail_without_a_browser(
    tmp_path: Path, target: str, url: str
) -> None:
    without = make("-s", target, env={"PATH": str(tmp_path)})  # no browser, no opener at all
    assert without.returncode == 0, without.stderr
    assert without.stdout.strip() == url

    opened = tmp_path / "opened"
    opener = tmp_path / "xdg-open"
    opener.write_text(f'#!/bin/sh\necho "$1" > {opened}\nexit 3\n')  # a failing browser
    opener.chmod(opener.stat().st_mode | stat.S_IEXEC)
    failing = make("-s", target, env={"PATH": f"{tmp_path}:{os.environ['PATH']}"})
    assert failing.returncode == 0, failing.stderr
    assert opened.read_text().strip() == url


# ---- scripts/health_check.sh ------------------------------------------------------------


def health_check(url: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(HEALTH_CHECK)],
        env={**os.environ, "ONEFLOW_URL": url, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_health_check_passes_on_a_live_gateway(make_settings: Callable[..., Settings]) -> None:
    with live_server(create_app(make_settings(), configure_logs=False)) as server:
        result = health_check(server.url + "/")
    assert result.returncode == 0, result.stdout
    assert result.stdout.splitlines() == [
        f"OneFlow AI at {server.url}",
        "OK   /health: the process serves requests",
        "OK   /ready: every dependency answers",
        "OK   /metrics: Prometheus metrics are served",
        "Healthy",
    ]


def test_health_check_names_the_failed_dependency(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(database_url="postgresql+asyncpg://nobody@127.0.0.1:1/none")
    with live_server(create_app(settings, configure_logs=False)) as server:
        result = health_check(server.url)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert "OK   /health: the process serves requests" in lines
    (failed,) = [line for line in lines if line.startswith("FAIL")]
    assert failed.startswith("FAIL /ready: database failed: ")
    assert len(failed) > len("FAIL /ready: database failed: ")  # with the reason
    assert lines[-1] == "Health check failed: 1 problem(s)"


def test_health_check_wants_the_metrics_token_when_one_is_set(
    make_settings: Callable[..., Settings],
) -> None:
    token = "metrics-token-for-the-health-check"
    with live_server(create_app(make_settings(metrics_token=token), configure_logs=False)) as s:
        refused = health_check(s.url)
        passed = health_check(s.url, METRICS_TOKEN=token)
    assert refused.returncode == 1
    assert "FAIL /metrics: HTTP 401: set METRICS_TOKEN to the gateway's token" in refused.stdout
    assert passed.returncode == 0, passed.stdout


def test_health_check_fails_when_nothing_listens() -> None:
    with refusing_port() as port:
        result = health_check(f"http://127.0.0.1:{port}")
    assert result.returncode == 1
    assert "FAIL /health: no answer from" in result.stdout
    assert result.stdout.splitlines()[-1] == "Health check failed: the gateway is unreachable"


# ---- security -----------------------------------------------------------------------------


def test_the_security_scan_passes_on_the_sources() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bandit", "-c", "pyproject.toml", "-r", "src", "-q"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "bandit -c pyproject.toml -r src" in make("-n", "security-check").stdout
    dev = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(re.fullmatch(r"bandit==[\d.]+", pin) for pin in dev["dev"])
    assert any(re.fullmatch(r"pip-audit==[\d.]+", pin) for pin in dev["dev"])
