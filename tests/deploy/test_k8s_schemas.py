"""The Kubernetes manifests, as `kubectl apply -k` would send them (the base deploy/k8s and each
overlay under deploy/k8s/overlays), match the API schemas of every supported Kubernetes version,
offline (kubernetes-validate's schemas, strict: an unknown or misspelt field is an error), and
each overlay keeps replicas, autoscaling, disruption budget and workers consistent.

Rendering is tests/support/kustomize.py (no kustomize binary here); CI compares it with the real
kustomize's output. Each file set is rendered once and validated once per version."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.kustomize import UnsupportedKustomization, render, validate, versions_available

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
# The Kubernetes minor versions OneFlow's manifests support (docs/deployment.md says the same).
SUPPORTED_KUBERNETES = ("1.33", "1.34", "1.35", "1.36", "1.37")
KUSTOMIZATIONS = [
    "deploy/k8s",
    *(str(p.parent.relative_to(ROOT)) for p in sorted(K8S.glob("overlays/*/kustomization.yaml"))),
]

Manifest = dict[str, Any]


@cache
def rendered(kustomization: str) -> tuple[Manifest, ...]:
    return tuple(render(ROOT / kustomization))


def one(manifests: tuple[Manifest, ...], kind: str) -> Manifest:
    (found,) = [m for m in manifests if m["kind"] == kind]
    return found


def test_every_supported_version_has_schemas_and_both_overlays_exist() -> None:
    assert set(SUPPORTED_KUBERNETES) <= versions_available()
    assert {"deploy/k8s/overlays/dev", "deploy/k8s/overlays/prod"} <= set(KUSTOMIZATIONS)


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_the_rendered_manifests_match_every_supported_schema(kustomization: str) -> None:
    manifests = rendered(kustomization)
    assert {m["kind"] for m in manifests} >= {"Deployment", "Service", "Job", "ConfigMap"}
    errors = [
        f"{version} {error}"
        for version in SUPPORTED_KUBERNETES
        for manifest in manifests
        for error in validate(manifest, version)
    ]
    assert errors == []


def test_the_manifests_outside_the_kustomization_match_the_schemas() -> None:
    listed = set(yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"])
    others = [p for p in K8S.glob("*.yaml") if p.name not in listed | {"kustomization.yaml"}]
    assert [p.name for p in others] == ["secret.example.yaml"]
    manifests = [doc for p in others for doc in yaml.safe_load_all(p.read_text()) if doc]
    errors = [e for v in SUPPORTED_KUBERNETES for m in manifests for e in validate(m, v)]
    assert errors == []


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_replicas_autoscaling_disruption_budget_and_workers_agree(kustomization: str) -> None:
    manifests = rendered(kustomization)
    deployment, hpa = one(manifests, "Deployment"), one(manifests, "HorizontalPodAutoscaler")
    pdb = one(manifests, "PodDisruptionBudget")
    assert hpa["spec"]["minReplicas"] <= deployment["spec"]["replicas"]
    assert deployment["spec"]["replicas"] <= hpa["spec"]["maxReplicas"]
    # A node can always be drained: the budget leaves at least one pod free to move.
    assert pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    cpu = container["resources"]["requests"]["cpu"]
    cores = int(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu)
    assert int(args[args.index("--workers") + 1]) <= max(1, cores)  # one worker per CPU
    assert all(m["metadata"].get("namespace", "oneflow") == "oneflow" for m in manifests)


@pytest.mark.parametrize("overlay", [k for k in KUSTOMIZATIONS if "/overlays/" in k])
def test_an_overlay_changes_only_sizes_of_the_base(overlay: str) -> None:
    def shape(manifests: tuple[Manifest, ...]) -> list[tuple[str, str, Any]]:
        found = []
        for m in manifests:
            pod = m.get("spec", {}).get("template", {}).get("spec", {})
            images = [c["image"] for c in pod.get("containers", [])]
            found.append((m["kind"], m["metadata"]["name"], images))
        return found

    assert shape(rendered(overlay)) == shape(rendered("deploy/k8s"))
    base, changed = one(rendered("deploy/k8s"), "ConfigMap"), one(rendered(overlay), "ConfigMap")
    assert changed == base


def test_a_schema_violation_is_reported() -> None:
    deployment = dict(one(rendered("deploy/k8s"), "Deployment"))
    deployment["spec"] = {**deployment["spec"], "replicas": "2", "replica": 2}
    errors = validate(deployment, SUPPORTED_KUBERNETES[-1])
    assert any("spec.replicas: '2' is not of type 'integer'" in e for e in errors), errors
    assert any("'replica' was unexpected" in e for e in errors), errors


def test_the_renderer_refuses_what_it_does_not_implement(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: []\nconfigMapGenerator: []\n")
    with pytest.raises(UnsupportedKustomization, match="configMapGenerator"):
        render(tmp_path)
