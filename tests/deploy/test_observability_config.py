"""The Prometheus configuration, alert rules and Grafana dashboard in deploy/: they parse, and
every metric they read is one OneFlow exports (or a rule defines)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from oneflow_ai.catalog import packaged_catalog
from oneflow_ai.observability.labels import CatalogLabels
from oneflow_ai.observability.prometheus import PrometheusMetrics
from tests.support.promql import metric_names

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
PROMETHEUS = DEPLOY / "prometheus"
DASHBOARD = DEPLOY / "grafana" / "oneflow-dashboard.json"
JOB = "oneflow-ai"
# Read by rules or panels but exported by others: Prometheus itself and the kubelet's cAdvisor.
EXTERNAL = {"up", "container_memory_working_set_bytes"}


def exported_names() -> set[str]:
    """Every sample name OneFlow's registry can expose, each metric exercised once."""
    metrics = PrometheusMetrics(CatalogLabels(packaged_catalog()), registry=CollectorRegistry())
    http = metrics.http
    http.request_finished(http.request_started(), "GET", "/health", 200, 0.01)
    metrics.observe_upstream("openai", "gpt-4o", "success", 0.5, ttft=0.1)
    metrics.count_tokens("openai", "gpt-4o", 10, 20)
    metrics.add_credits("openai", "gpt-4o", 10_000)
    metrics.record_fallback("gpt-4o", "gpt-4", "timeout")
    metrics.record_retry("openai", "timeout")
    metrics.set_breaker_state("openai", "open")
    metrics.record_rate_limited("per_minute")
    metrics.record_budget_rejected("insufficient_credits")
    names: set[str] = set()
    for family in metrics.registry.collect():
        names.update(sample.name for sample in family.samples)
        if family.type == "gauge":
            names.add(family.name)  # the pool gauge has no sample until a pool is watched
    return names


def rules() -> list[dict[str, Any]]:
    document = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def recorded_names() -> set[str]:
    return {rule["record"] for rule in rules() if "record" in rule}


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def dashboard_queries() -> list[tuple[str, str]]:
    queries = [
        (panel["title"], target["expr"])
        for panel in dashboard()["panels"]
        for target in panel.get("targets", [])
    ]
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            queries.append((f"${variable['name']}", variable["query"]["query"]))
    return queries


@pytest.mark.parametrize(
    ("expression", "names"),
    [
        ('sum by (le) (rate(a_bucket{route!~"/x|/y", le="0.5"}[5m]))', {"a_bucket"}),
        ("histogram_quantile(0.95, sum(rate(b[$__rate_interval])) by (le)) > 1e-3", {"b"}),
        ('label_values(c_total{provider=~"$provider"}, model)', {"c_total"}),
        (
            "x:y:ratio > (14.4 * 0.001) and on(job) up offset 5m unless absent(z)",
            {"x:y:ratio", "up", "z"},
        ),
        ('sum(rate(d_total{status=~"5.."}[5m])) or vector(0)', {"d_total"}),
    ],
)
def test_the_promql_reader_finds_metric_names(expression: str, names: set[str]) -> None:
    assert metric_names(expression) == names


def test_every_metric_a_rule_reads_is_exported() -> None:
    known = exported_names() | recorded_names() | EXTERNAL
    unknown = {
        rule.get("alert") or rule["record"]: metric_names(rule["expr"]) - known for rule in rules()
    }
    assert {name: names for name, names in unknown.items() if names} == {}
    # The check has teeth: a misspelt name would be caught.
    assert metric_names("rate(http_request_total[5m])") - known == {"http_request_total"}


def test_every_metric_a_panel_reads_is_exported() -> None:
    known = exported_names() | recorded_names() | EXTERNAL
    unknown = {title: metric_names(expr) - known for title, expr in dashboard_queries()}
    assert {title: names for title, names in unknown.items() if names} == {}


def test_the_rule_unit_tests_use_exported_series() -> None:
    tests = yaml.safe_load((PROMETHEUS / "alerts.test.yml").read_text())
    assert tests["rule_files"] == ["alerts.yml"]
    alerts = {rule["alert"] for rule in rules() if "alert" in rule}
    known = exported_names()
    for case in tests["tests"]:
        for series in case["input_series"]:
            assert metric_names(series["series"]) <= known, series["series"]
        for check in case.get("alert_rule_test", []):
            assert check["alertname"] in alerts


def test_alerts_cover_the_objectives_and_are_well_formed() -> None:
    alerts = {rule["alert"]: rule for rule in rules() if "alert" in rule}
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, name
        assert rule["annotations"]["summary"], name
        assert "for" in rule, name
    objectives = {rule["labels"].get("slo") for rule in alerts.values()}
    assert {"availability", "error-rate", "latency"} <= objectives
    expressions = " ".join(rule["expr"] for rule in rules())
    assert "14.4 * 0.001" in expressions  # fast burn of a 99.9 % budget
    assert "> 0.5" in alerts["OneFlowLatencyP95AboveObjective"]["expr"]
    assert "> 1" in alerts["OneFlowLatencyP99AboveObjective"]["expr"]
    assert "0.001" in alerts["OneFlowErrorRateAboveObjective"]["expr"]
    assert "oneflow_circuit_breaker_state" in alerts["OneFlowCircuitBreakerOpen"]["expr"]
    assert "OneFlowUpstreamErrorSpike" in alerts
    # Objectives leave the probes and the scrape out.
    for rule in rules():
        if "http_requests_total" in rule["expr"] and rule.get("record", "").startswith(
            "oneflow:http_"
        ):
            assert 'route!~"/health|/ready|/metrics"' in rule["expr"]


def test_prometheus_scrapes_the_gateway_as_one_job() -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    for rule_file in config["rule_files"]:
        assert (PROMETHEUS / rule_file).is_file()
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    kubernetes = jobs[JOB]
    assert kubernetes["metrics_path"] == "/metrics"
    assert kubernetes["kubernetes_sd_configs"][0]["role"] == "pod"
    static = next(job for job in jobs.values() if "static_configs" in job)
    relabel = {r.get("target_label"): r.get("replacement") for r in static["relabel_configs"]}
    assert relabel["job"] == JOB
    expressions = " ".join(rule["expr"] for rule in rules())
    assert f'up{{job="{JOB}"}}' in expressions
    timeout = int(config["global"]["scrape_timeout"].rstrip("s"))
    assert timeout <= int(config["global"]["scrape_interval"].rstrip("s"))


def test_dashboard_shape() -> None:
    board = dashboard()
    assert board["uid"] == "oneflow-ai-gateway"
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    titles = " ".join(panel["title"].lower() for panel in board["panels"])
    for topic in ("requests", "latency", "error", "tokens", "credits", "circuit", "rate-limit"):
        assert topic in titles
    for panel in board["panels"]:
        position = panel["gridPos"]
        assert position["x"] + position["w"] <= 24, panel["title"]
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "${datasource}"
            assert target["expr"].strip()
    variables = {variable["name"] for variable in board["templating"]["list"]}
    assert {"datasource", "provider", "model"} <= variables
