"""The GitHub Actions workflows pass actionlint (with shellcheck on their `run:` scripts), pin
every action to a commit, and do what docs/deployment.md says: .ci/run's checks on PostgreSQL and
Redis services, the security scan, the image build, and on main the push and the rollout
(`make k8s-release`). No runner executes them here: they are linted and read, not run."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from tests.deploy.test_ops import make

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.y*ml"))
BIN = Path(sys.executable).parent  # actionlint and shellcheck come with the dev extras
CI = ROOT / ".github" / "workflows" / "ci.yml"


def actionlint(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(BIN / "actionlint"),
            "-no-color",
            f"-shellcheck={BIN / 'shellcheck'}",
            *map(str, paths),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def jobs() -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = yaml.safe_load(CI.read_text())["jobs"]
    return result


def runs(job: dict[str, Any]) -> str:
    return "\n".join(step.get("run", "") for step in job["steps"])


def test_every_workflow_passes_actionlint() -> None:
    assert CI in WORKFLOWS
    assert (BIN / "shellcheck").is_file()  # else actionlint silently skips the scripts
    result = actionlint(*WORKFLOWS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


def test_actionlint_reports_a_broken_workflow(tmp_path: Path) -> None:
    broken = tmp_path / ".github" / "workflows" / "broken.yml"
    broken.parent.mkdir(parents=True)
    broken.write_text(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    needs: missing\n"
        "    steps:\n      - run: echo $UNQUOTED ${{ github.nope }}\n"
    )
    result = actionlint(broken)
    assert result.returncode == 1
    assert '"missing"' in result.stdout  # an unknown job
    assert "SC2086" in result.stdout  # shellcheck ran on the script


def test_every_action_is_pinned_to_a_commit_with_its_version() -> None:
    for workflow in WORKFLOWS:
        uses = re.findall(r"uses:\s*(\S+)(.*)", workflow.read_text())
        assert uses, workflow
        for action, comment in uses:
            assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", action), action
            assert re.fullmatch(r"\s*# v\d+(\.\d+)*", comment), (action, comment)


def test_the_test_job_runs_ci_run_on_postgresql_and_redis_services() -> None:
    test = jobs()["test"]
    assert "bash .ci/run" in runs(test)
    assert "make security-check" in runs(test)
    env = test["env"]
    database, redis = urlsplit(env["TEST_DATABASE_URL"]), urlsplit(env["TEST_REDIS_URL"])
    services = test["services"]
    assert services["postgres"]["image"].startswith("postgres:")
    assert f"{database.port}:5432" in services["postgres"]["ports"]
    assert services["postgres"]["env"]["POSTGRES_DB"] == database.path.lstrip("/")
    assert services["redis"]["image"].startswith("redis:")
    assert f"{redis.port}:6379" in services["redis"]["ports"]
    assert env["TEST_TARGET"] == "test-coverage"
    script = (ROOT / ".ci" / "run").read_text()
    assert 'make "$TEST_TARGET"' in script and "make test " in script


def test_main_pushes_the_image_and_rolls_it_out() -> None:
    every = jobs()
    on_main = "github.event_name == 'push' && github.ref == 'refs/heads/main'"
    image, deploy = every["image"], every["deploy"]
    assert "make docker-build" in runs(image)
    assert "oneflow-ai:latest" in runs(image) and "127.0.0.1:8000/health" in runs(image)
    (push,) = [step for step in image["steps"] if "docker push" in step.get("run", "")]
    assert push["if"] == on_main
    assert 'docker push "$REGISTRY/oneflow-ai:$GITHUB_SHA"' in push["run"]
    assert deploy["if"] == on_main and deploy["needs"] == "image"
    assert 'make k8s-release IMAGE_REF="$REGISTRY/oneflow-ai:$GITHUB_SHA"' in runs(deploy)
    release = make("-n", "k8s-release", "IMAGE_REF=registry/oneflow-ai:abc").stdout
    rollout = (
        "kubectl -n oneflow set image deployment/oneflow-ai oneflow-ai=registry/oneflow-ai:abc"
    )
    assert rollout in release
    # The migration Job of the new image completes before the Deployment changes.
    assert release.index("db-upgrade=registry/oneflow-ai:abc") < release.index("set image deploy")
    assert release.index("wait --for=condition=complete") < release.index("set image deploy")


def test_the_secrets_the_workflows_use_are_documented() -> None:
    docs = (ROOT / "docs" / "deployment.md").read_text()
    used = {name for w in WORKFLOWS for name in re.findall(r"secrets\.(\w+)", w.read_text())}
    assert used == {"REGISTRY", "REGISTRY_USERNAME", "REGISTRY_PASSWORD", "KUBE_CONFIG"}
    for name in used:
        assert f"`{name}`" in docs, name
