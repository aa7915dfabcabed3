"""The Kubernetes manifests and the Dockerfile agree with each other and with the gateway:
probes hit the real endpoints, ports and labels line up, every configured variable is a
setting OneFlow reads, the configuration starts in production, and the CLI takes the arguments
the manifests pass. (No Docker engine or cluster runs here: the files are checked, not run.)"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from oneflow_ai.app import create_app
from oneflow_ai.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
PROMETHEUS = ROOT / "deploy" / "prometheus" / "prometheus.yml"


def documents() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        docs.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
    return docs


def manifest(kind: str) -> dict[str, Any]:
    (found,) = [doc for doc in documents() if doc["kind"] == kind]
    return found


def container(workload: dict[str, Any]) -> dict[str, Any]:
    (only,) = workload["spec"]["template"]["spec"]["containers"]
    result: dict[str, Any] = only
    return result


def serve_help(command: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "oneflow_ai", *command.split(), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_every_manifest_is_complete_and_in_the_namespace() -> None:
    kinds = set()
    for doc in documents():
        assert doc["apiVersion"] and doc["kind"] and doc["metadata"]["name"]
        kinds.add(doc["kind"])
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "oneflow", doc["metadata"]["name"]
    assert {
        "Namespace",
        "ConfigMap",
        "Secret",
        "Deployment",
        "Service",
        "Job",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
    } <= kinds
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    for resource in kustomization["resources"]:
        assert (K8S / resource).is_file()
    assert "secret.example.yaml" not in kustomization["resources"]  # never deploy the example


def test_probes_hit_the_gateway_endpoints() -> None:
    deployment = manifest("Deployment")
    main = container(deployment)
    ports = {port["name"]: port["containerPort"] for port in main["ports"]}
    assert main["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert main["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    assert main["startupProbe"]["httpGet"]["path"] == "/health"
    paths = set(create_app(Settings(_env_file=None)).openapi()["paths"])  # type: ignore[call-arg]
    assert {"/health", "/ready", "/metrics"} <= paths
    args = main["args"]
    assert args[:2] == ["oneflow", "serve"]
    assert int(args[args.index("--port") + 1]) == ports["http"]
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == ports["http"]
    assert annotations["prometheus.io/path"] == "/metrics"


def test_the_cli_takes_the_arguments_the_manifests_pass() -> None:
    serve = serve_help("serve")
    for flag in (a for a in container(manifest("Deployment"))["args"] if a.startswith("--")):
        assert flag in serve, flag
    job = container(manifest("Job"))
    assert job["args"] == ["oneflow", "db", "upgrade"]
    assert "Apply migrations" in serve_help("db upgrade")


def test_pods_run_unprivileged_with_a_writable_tmp() -> None:
    for workload in (manifest("Deployment"), manifest("Job")):
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 10001
        assert pod["automountServiceAccountToken"] is False
        security = container(workload)["securityContext"]
        assert security["readOnlyRootFilesystem"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"]["drop"] == ["ALL"]
    main = container(manifest("Deployment"))
    mounts = {mount["mountPath"] for mount in main["volumeMounts"]}
    env = {item["name"]: item["value"] for item in main["env"]}
    assert any(env["PROMETHEUS_MULTIPROC_DIR"].startswith(mount + "/") for mount in mounts)


def test_the_pod_keeps_its_data_directory_writable() -> None:
    main = container(manifest("Deployment"))
    mounts = {mount["mountPath"] for mount in main["volumeMounts"]}
    env = {item["name"]: item["value"] for item in main["env"]}
    assert env["ONEFLOW_DATA_DIR"] in mounts  # the ledger's spool


def test_the_termination_grace_period_covers_the_whole_graceful_stop() -> None:
    """preStop, then SHUTDOWN_DELAY_SECONDS, SHUTDOWN_GRACE_SECONDS and the margin for the
    streams ended at its deadline, then the ledger's close: all before the kubelet's SIGKILL."""
    from oneflow_ai.api.graceful import END_MARGIN
    from oneflow_ai.billing.ledger_config import LedgerConfig

    deployment = manifest("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    pre_stop = container(deployment)["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    config = manifest("ConfigMap")["data"]
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        shutdown_delay_seconds=config["SHUTDOWN_DELAY_SECONDS"],
        shutdown_grace_seconds=config["SHUTDOWN_GRACE_SECONDS"],
    )
    assert settings.shutdown_delay_seconds == 0  # preStop already waits for the Service
    needed = (
        float(pre_stop[1])
        + settings.shutdown_delay_seconds
        + settings.shutdown_grace_seconds
        + END_MARGIN
        + LedgerConfig().shutdown_timeout
    )
    assert pod["terminationGracePeriodSeconds"] >= needed


def test_service_hpa_pdb_and_job_point_at_the_deployment() -> None:
    deployment = manifest("Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    service = manifest("Service")
    assert service["spec"]["selector"].items() <= pod_labels.items()
    port_names = {port["name"] for port in container(deployment)["ports"]}
    assert {port["targetPort"] for port in service["spec"]["ports"]} <= port_names
    hpa = manifest("HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["kind"] == "Deployment"
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert hpa["spec"]["minReplicas"] >= 2
    pdb = manifest("PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    job = manifest("Job")
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    assert container(job)["envFrom"] == container(deployment)["envFrom"]
    assert container(job)["image"] == container(deployment)["image"]


def test_prometheus_discovery_matches_the_pod_labels() -> None:
    config = yaml.safe_load(PROMETHEUS.read_text())
    job = next(j for j in config["scrape_configs"] if "kubernetes_sd_configs" in j)
    keeps = {
        tuple(rule["source_labels"]): rule["regex"]
        for rule in job["relabel_configs"]
        if rule.get("action") == "keep"
    }
    pod = manifest("Deployment")["spec"]["template"]["metadata"]
    name = keeps[("__meta_kubernetes_pod_label_app_kubernetes_io_name",)]
    assert pod["labels"]["app.kubernetes.io/name"] == name
    assert keeps[("__meta_kubernetes_pod_annotation_prometheus_io_scrape",)] == "true"
    assert job["kubernetes_sd_configs"][0]["namespaces"]["names"] == ["oneflow"]


def test_the_configuration_is_settings_oneflow_reads_and_starts_in_production() -> None:
    config = manifest("ConfigMap")["data"]
    secret = manifest("Secret")["stringData"]
    fields = {name.upper() for name in Settings.model_fields}
    for key in [*config, *secret]:
        assert key in fields or key.startswith("OTEL_"), key
    settings_values = {
        key.lower(): value for key, value in {**config, **secret}.items() if key.upper() in fields
    }
    settings = Settings(_env_file=None, **settings_values)
    assert settings.is_production
    assert settings.enable_metrics and settings.enable_tracing
    assert settings.metrics_token is None  # empty means open (scraped inside the cluster)
    assert not settings.use_fake_providers


def test_dockerfile_is_multi_stage_and_runs_as_the_manifests_user() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+\S+(?:\s+AS\s+(\w+))?", dockerfile, re.MULTILINE)
    assert len(stages) >= 2
    runtime = dockerfile.split("AS runtime", 1)[1]
    assert "COPY --from=build" in runtime
    (user,) = re.findall(r"^USER\s+(\S+)", runtime, re.MULTILINE)
    uid = int(user.split(":")[0])
    assert uid != 0
    assert uid == manifest("Deployment")["spec"]["template"]["spec"]["securityContext"]["runAsUser"]
    (exposed,) = re.findall(r"^EXPOSE\s+(\d+)", runtime, re.MULTILINE)
    ports = {port["containerPort"] for port in container(manifest("Deployment"))["ports"]}
    assert int(exposed) in ports
    assert "/health" in runtime.split("HEALTHCHECK", 1)[1]
    assert re.search(r'^CMD \["oneflow", "serve"', runtime, re.MULTILINE)
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".env", ".git", "var"} <= set(ignored)


def test_the_package_data_the_image_needs_is_declared() -> None:
    # The image installs the package (not an editable checkout): data files must be declared.
    pyproject = (ROOT / "pyproject.toml").read_text()
    for pattern in ('"**/*.yaml"', '"**/*.mako"', '"py.typed"'):
        assert pattern in pyproject
