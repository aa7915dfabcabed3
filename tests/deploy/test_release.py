"""The release files, built once by `make sbom` (which runs `make dist`) into a temporary
directory, the SBOM's schema validation (its slow part) left to `make sbom` itself: the wheel and
the sdist carry every file the gateway reads at run time; the wheel, installed with
requirements.lock (hash-checked, from the index pip is configured with) into a fresh environment
outside the checkout, reports its version, migrates a new SQLite database and serves /health;
the SBOM describes exactly that environment."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from packaging.markers import Marker
from packaging.utils import canonicalize_name

from tests.deploy.test_ops import MAKE
from tests.deploy.test_supply_chain import LOCK, ROOT, VERSION, locked
from tests.support.gateway_process import stop_process
from tests.support.ports import first_answer, start_on_port_0

pytestmark = pytest.mark.slow

#: The distribution's packages: the gateway, and the fake providers its demo mode serves.
PACKAGES = (ROOT / "src" / "oneflow_ai", ROOT / "src" / "oneflow_fakes")


@dataclass(frozen=True)
class Release:
    dist: Path
    env: Path
    home: Path

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.env / "bin" / args[0]), *args[1:]],
            cwd=self.home,  # outside the checkout: nothing is imported from src/
            env={"PATH": os.environ["PATH"], "HOME": str(self.home), **env},
            capture_output=True,
            text=True,
            timeout=120,
        )


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Release:
    base = tmp_path_factory.mktemp("release")
    result = subprocess.run(
        # -o: the dev environment is what this suite runs in; never reinstall it from here.
        [
            *(MAKE, "--no-print-directory", "-o", ".venv/.installed-dev", "sbom"),
            *(f"DIST_DIR={base / 'dist'}", f"SBOM_ENV={base / 'env'}", "SBOM_ARGS=--no-validate"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (base / "home").mkdir()
    return Release(base / "dist", base / "env", base / "home")


def expected_files() -> set[str]:
    """Every file of the packages the gateway may read: code and data, not docs or caches."""
    return {
        str(path.relative_to(package.parent))
        for package in PACKAGES
        for path in package.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix not in {".md", ".pyc"}
    }


def test_the_wheel_and_the_sdist_carry_the_catalog_migrations_and_encodings(
    release: Release,
) -> None:
    (wheel,) = release.dist.glob("*.whl")
    (sdist,) = release.dist.glob("*.tar.gz")
    assert wheel.name == f"oneflow_ai-{VERSION}-py3-none-any.whl"
    assert sdist.name == f"oneflow_ai-{VERSION}.tar.gz"
    wanted = expected_files()
    assert {
        "oneflow_ai/catalog/models.yaml",
        "oneflow_ai/storage/migrations/env.py",
        "oneflow_ai/storage/migrations/script.py.mako",
        "oneflow_ai/billing/encodings/o200k_base.tiktoken.gz",
        "oneflow_ai/py.typed",
        "oneflow_fakes/demo.py",
        "oneflow_fakes/py.typed",
    } <= wanted
    assert any(name.startswith("oneflow_ai/storage/migrations/versions/") for name in wanted)
    in_wheel = set(zipfile.ZipFile(wheel).namelist())
    assert wanted <= in_wheel, wanted - in_wheel
    with tarfile.open(sdist) as archive:
        prefix = f"oneflow_ai-{VERSION}/src/"
        in_sdist = {n.removeprefix(prefix) for n in archive.getnames() if n.startswith(prefix)}
    assert wanted <= in_sdist, wanted - in_sdist


def test_the_installed_wheel_migrates_and_serves_outside_the_checkout(release: Release) -> None:
    version = release.run("oneflow", "version")
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"oneflow-ai {VERSION}"
    for package in ("oneflow_ai", "oneflow_fakes.demo"):  # the gateway and its demo mode's fakes
        where = release.run("python", "-c", f"import {package} as p; print(p.__file__)")
        assert Path(where.stdout.strip()).is_relative_to(release.env), where.stdout + where.stderr

    database = release.home / "oneflow.db"
    url = f"sqlite+aiosqlite:///{database}"
    upgrade = release.run("oneflow", "db", "upgrade", DATABASE_URL=url)
    assert upgrade.returncode == 0, upgrade.stdout + upgrade.stderr
    with sqlite3.connect(database) as connection:
        (revision,) = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    assert revision

    log = release.home / "serve.log"
    with log.open("w") as output:
        process, port = start_on_port_0(
            [str(release.env / "bin" / "oneflow"), "serve"],
            cwd=release.home,
            env={"PATH": os.environ["PATH"], "HOME": str(release.home), "DATABASE_URL": url},
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:
            health = first_answer(process, f"http://127.0.0.1:{port}/health", log_path=log)
        finally:
            stop_process(process)
    assert health.status_code == 200
    assert health.json()["version"] == VERSION


def test_the_sbom_describes_the_wheel_and_every_locked_package(release: Release) -> None:
    bom = json.loads((release.dist / f"oneflow-ai-{VERSION}.cdx.json").read_text())
    assert bom["bomFormat"] == "CycloneDX"
    root = bom["metadata"]["component"]
    assert (root["name"], root["version"]) == ("oneflow-ai", VERSION)
    components: dict[str, Any] = {canonicalize_name(c["name"]): c for c in bom["components"]}
    for name, entry in locked(LOCK).items():
        if entry.marker and not Marker(entry.marker).evaluate():
            continue
        component = components[name]
        assert component["version"] == entry.version, name
        assert component["purl"].lower().startswith(f"pkg:pypi/{name}@{entry.version}"), name
    graph = {d["ref"]: d.get("dependsOn", []) for d in bom["dependencies"]}
    assert graph[root["bom-ref"]]  # the direct dependencies hang from OneFlow
