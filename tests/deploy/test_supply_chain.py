"""What the image and every install are made of: the lock files pin exactly pyproject.toml's
versions with a hash for every file, `make install`, CI and the Dockerfile install from them,
the Dockerfile passes hadolint and pins its base by digest, and the version has one source."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import oneflow_ai
from tests.deploy.test_ops import make

ROOT = Path(__file__).resolve().parents[2]
LOCK, DEV_LOCK = ROOT / "requirements.lock", ROOT / "requirements-dev.lock"
DOCKERFILE = ROOT / "Dockerfile"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]


@dataclass(frozen=True)
class Locked:
    version: str
    marker: str
    hashes: tuple[str, ...]


@cache
def locked(path: Path) -> dict[str, Locked]:
    """The lock file's entries by canonical name."""
    entries: dict[str, Locked] = {}
    for block in re.split(r"\n(?=\S)", path.read_text()):
        if block.startswith("#") or not block.strip():
            continue
        requirement = Requirement(block.split("\\", 1)[0].strip())
        (specifier,) = requirement.specifier
        assert specifier.operator == "==", block
        entries[canonicalize_name(requirement.name)] = Locked(
            version=specifier.version,
            marker=str(requirement.marker or ""),
            hashes=tuple(re.findall(r"--hash=sha256:(\w+)", block)),
        )
    return entries


def pins(requirements: list[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in requirements:
        requirement = Requirement(line)
        (specifier,) = requirement.specifier
        assert specifier.operator == "==", line  # pyproject pins every direct dependency
        found[canonicalize_name(requirement.name)] = specifier.version
    return found


def test_each_lock_pins_exactly_the_versions_of_pyproject() -> None:
    runtime = pins(PYPROJECT["project"]["dependencies"])
    dev = pins(PYPROJECT["project"]["optional-dependencies"]["dev"])
    for path, wanted in ((LOCK, runtime), (DEV_LOCK, {**runtime, **dev})):
        entries = locked(path)
        assert {name: entries[name].version for name in wanted if name in entries} == wanted
        assert set(wanted) <= set(entries), (path.name, set(wanted) - set(entries))
    assert not set(dev) & set(locked(LOCK))  # the runtime lock has no development tool
    for build_requirement in PYPROJECT["build-system"]["requires"]:
        requirement = Requirement(build_requirement)
        entry = locked(LOCK)[canonicalize_name(requirement.name)]
        assert requirement.specifier.contains(entry.version), build_requirement


def test_every_locked_package_is_hashed_and_the_locks_agree() -> None:
    for path in (LOCK, DEV_LOCK):
        text = path.read_text()
        assert "--index-url" not in text and "--find-links" not in text  # pip's own index
        assert "#    make lock" in text.splitlines()[:6]  # how to regenerate it
        for name, entry in locked(path).items():
            assert entry.hashes, (path.name, name)
            assert all(re.fullmatch(r"[0-9a-f]{64}", h) for h in entry.hashes), name
    dev = locked(DEV_LOCK)
    for name, entry in locked(LOCK).items():
        assert dev[name].version == entry.version, name  # one version of each, everywhere


def test_make_install_ci_and_the_image_install_from_the_locks() -> None:
    install = make("-n", "-B", "install").stdout
    assert "pip install --quiet --require-hashes -r requirements.lock" in install
    assert "pip install --quiet --no-deps --no-build-isolation -e ." in install
    install_dev = make("-n", "-B", "install-dev").stdout
    assert "pip install --quiet --require-hashes -r requirements-dev.lock" in install_dev
    assert "make" in (ROOT / ".ci" / "run").read_text()  # CI: make test, so install-dev
    dockerfile = DOCKERFILE.read_text()
    assert "COPY requirements.lock ./" in dockerfile
    assert "pip install --require-hashes -r requirements.lock" in dockerfile
    assert "pip install --no-deps --no-build-isolation ." in dockerfile
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert "requirements.lock" not in ignored and "*.lock" not in ignored
    lock = make("-n", "lock").stdout
    assert "--generate-hashes" in lock and "--extra dev --output-file requirements-dev.lock" in lock


def hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).parent / "hadolint"), "--no-color", "-t", "style", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_dockerfile_passes_hadolint_and_every_ignore_says_why() -> None:
    result = hadolint(DOCKERFILE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""
    lines = DOCKERFILE.read_text().splitlines()
    for number, line in enumerate(lines):
        if "hadolint ignore=" in line:  # the line before gives the reason
            reason = lines[number - 1]
            assert reason.startswith("#") and "hadolint" not in reason, line


def test_hadolint_reports_a_careless_dockerfile(tmp_path: Path) -> None:
    careless = tmp_path / "Dockerfile"
    careless.write_text("FROM python\nRUN cd /tmp && pip install requests\n")
    result = hadolint(careless)
    assert result.returncode == 1
    for rule in ("DL3006", "DL3003", "DL3013"):  # untagged base, cd, unpinned pip install
        assert rule in result.stdout, result.stdout


def test_the_base_image_is_pinned_by_digest() -> None:
    dockerfile = DOCKERFILE.read_text()
    (default,) = re.findall(r"^ARG PYTHON_IMAGE=(\S+)$", dockerfile, re.MULTILINE)
    assert re.fullmatch(r"python:3\.11-slim-\w+@sha256:[0-9a-f]{64}", default), default
    bases = re.findall(r"^FROM\s+(\S+)", dockerfile, re.MULTILINE)
    assert bases and set(bases) == {"${PYTHON_IMAGE}"}
    prod = make("-n", "prod-build", "PYTHON_IMAGE=python:3.11-slim@sha256:" + "0" * 64).stdout
    assert "--build-arg PYTHON_IMAGE=python:3.11-slim@sha256:" in prod
    assert "--build-arg" not in make("-n", "docker-build").stdout  # the Dockerfile's own pin


def test_the_version_has_one_source() -> None:
    assert oneflow_ai.__version__ == importlib.metadata.version("oneflow-ai") == VERSION
    assert VERSION not in (ROOT / "src" / "oneflow_ai" / "__init__.py").read_text()
    k8s = ROOT / "deploy" / "k8s"
    (image,) = yaml.safe_load((k8s / "kustomization.yaml").read_text())["images"]
    assert image["newTag"] == VERSION
    for name in ("deployment.yaml", "migration-job.yaml"):
        manifest = yaml.safe_load((k8s / name).read_text())
        assert manifest["metadata"]["labels"]["app.kubernetes.io/version"] == VERSION, name
        (container,) = manifest["spec"]["template"]["spec"]["containers"]
        assert container["image"] == f"oneflow-ai:{VERSION}", name
    changelog = (ROOT / "CHANGELOG.md").read_text()
    latest = re.search(r"^## (\S+)", changelog, re.MULTILINE)
    assert latest is not None and latest.group(1) == VERSION
