"""The metrics API the pipeline calls: values, bounded labels, and the no-op twin."""

from __future__ import annotations

import asyncio
import contextvars

import pytest
from prometheus_client import CollectorRegistry

from oneflow_ai.catalog import packaged_catalog
from oneflow_ai.errors import (
    ContentFilteredError,
    InsufficientCreditsError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    RateLimitedError,
)
from oneflow_ai.observability.labels import (
    OTHER,
    BoundedLabel,
    CatalogLabels,
    breaker_state_value,
    outcome_of,
)
from oneflow_ai.observability.metrics import NoopMetrics, build_metrics
from oneflow_ai.observability.prometheus import PrometheusMetrics
from oneflow_ai.observability.request_timing import start_request_timing


@pytest.fixture
def metrics() -> PrometheusMetrics:
    return PrometheusMetrics(CatalogLabels(packaged_catalog()), registry=CollectorRegistry())


def value(metrics: PrometheusMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def series(metrics: PrometheusMetrics, sample_name: str) -> list[dict[str, str]]:
    return [
        sample.labels
        for family in metrics.registry.collect()
        for sample in family.samples
        if sample.name == sample_name
    ]


def test_upstream_attempts_tokens_and_credits(metrics: PrometheusMetrics) -> None:
    metrics.observe_upstream("openai", "gpt-4o", "success", 0.8, ttft=0.12)
    metrics.observe_upstream("openai", "gpt-4o", "success", 1.2)
    metrics.observe_upstream("openai", "gpt-4o", "timeout", 30.0)
    metrics.count_tokens("openai", "gpt-4o", 1500, 500)
    metrics.add_credits("openai", "gpt-4o", 7_500_000)
    metrics.add_credits("openai", "gpt-4o", 250_000)

    labels = {"provider": "openai", "model": "gpt-4o"}
    total = "oneflow_upstream_requests_total"
    assert value(metrics, total, **labels, outcome="success") == 2
    assert value(metrics, total, **labels, outcome="timeout") == 1
    duration = "oneflow_upstream_request_duration_seconds"
    assert value(metrics, f"{duration}_count", **labels) == 3
    assert value(metrics, f"{duration}_sum", **labels) == pytest.approx(32.0)
    ttft = "oneflow_upstream_time_to_first_token_seconds"
    assert value(metrics, f"{ttft}_count", **labels) == 1
    assert value(metrics, f"{ttft}_bucket", **labels, le="0.25") == 1
    assert value(metrics, f"{ttft}_bucket", **labels, le="0.1") == 0
    assert value(metrics, "oneflow_tokens_total", **labels, type="input") == 1500
    assert value(metrics, "oneflow_tokens_total", **labels, type="output") == 500
    assert value(metrics, "oneflow_credits_charged_total", **labels) == pytest.approx(7.75)


def test_model_labels_are_catalog_ids_and_unknown_names_collapse(
    metrics: PrometheusMetrics,
) -> None:
    catalog = packaged_catalog()
    aliased = next(entry for entry in catalog.models if entry.aliases)
    metrics.observe_upstream(aliased.provider, aliased.aliases[0], "success", 0.1)
    for n in range(50):
        metrics.observe_upstream("openai", f"made-up-model-{n}", "success", 0.1)
        metrics.observe_upstream(f"acme-{n}", "gpt-4o", "success", 0.1)

    models = {s["model"] for s in series(metrics, "oneflow_upstream_requests_total")}
    providers = {s["provider"] for s in series(metrics, "oneflow_upstream_requests_total")}
    assert models == {aliased.id, OTHER, "gpt-4o"}
    assert providers <= {"openai", "anthropic", "stability", "elevenlabs", OTHER}
    assert (
        value(
            metrics,
            "oneflow_upstream_requests_total",
            provider="openai",
            model=OTHER,
            outcome="success",
        )
        == 50
    )


def test_outcomes_follow_the_error_tree() -> None:
    assert outcome_of(None) == "success"
    assert outcome_of(ProviderTimeoutError("slow", provider="openai")) == "timeout"
    assert outcome_of(ProviderUnavailableError("503", provider="openai")) == "overloaded"
    assert outcome_of(ContentFilteredError("no", provider="openai")) == "content_filtered"
    assert outcome_of(asyncio.CancelledError()) == "cancelled"
    assert outcome_of(TimeoutError()) == "timeout"
    assert outcome_of(KeyError("x")) == "internal_error"


def test_unknown_outcome_strings_do_not_become_labels(metrics: PrometheusMetrics) -> None:
    for n in range(20):
        metrics.observe_upstream("openai", "gpt-4o", f"weird-{n}", 0.1)
    outcomes = {s["outcome"] for s in series(metrics, "oneflow_upstream_requests_total")}
    assert outcomes == {"internal_error"}


def test_fallbacks_retries_and_rejections(metrics: PrometheusMetrics) -> None:
    metrics.record_fallback("gpt-4o", "claude-3-haiku-20240307", "overloaded")
    metrics.record_fallback("gpt-4o", "claude-3-haiku-20240307", "overloaded")
    metrics.record_retry("openai", outcome_of(ProviderUnavailableError("x")))
    metrics.record_rate_limited("per_minute")
    metrics.record_budget_rejected(InsufficientCreditsError.kind)

    assert (
        value(
            metrics,
            "oneflow_fallbacks_total",
            from_model="gpt-4o",
            to_model="claude-3-haiku-20240307",
            reason="overloaded",
        )
        == 2
    )
    assert value(metrics, "oneflow_upstream_retries_total", provider="openai", reason="overloaded")
    assert value(metrics, "oneflow_rate_limit_rejections_total", reason="per_minute") == 1
    assert value(metrics, "oneflow_budget_rejections_total", reason=RateLimitedError.kind) is None
    assert value(metrics, "oneflow_budget_rejections_total", reason="insufficient_credits") == 1


def test_free_form_reasons_are_capped() -> None:
    label = BoundedLabel(limit=3)
    assert [label(v) for v in ("a", "b", "c", "d", "a")] == ["a", "b", "c", OTHER, "a"]
    assert label("Has Spaces") == OTHER
    assert BoundedLabel()("x" * 100) == OTHER

    metrics = PrometheusMetrics(CatalogLabels(packaged_catalog()), registry=CollectorRegistry())
    for n in range(200):
        metrics.record_rate_limited(f"user-{n}")
    reasons = {s["reason"] for s in series(metrics, "oneflow_rate_limit_rejections_total")}
    assert len(reasons) == 33 and OTHER in reasons


def test_breaker_state_gauge(metrics: PrometheusMetrics) -> None:
    assert value(metrics, "oneflow_circuit_breaker_state", provider="anthropic") == 0
    metrics.set_breaker_state("anthropic", "open")
    assert value(metrics, "oneflow_circuit_breaker_state", provider="anthropic") == 2
    metrics.set_breaker_state("anthropic", "HALF_OPEN")
    assert value(metrics, "oneflow_circuit_breaker_state", provider="anthropic") == 1
    metrics.set_breaker_state("anthropic", 0)
    assert value(metrics, "oneflow_circuit_breaker_state", provider="anthropic") == 0
    with pytest.raises(ValueError, match="unknown circuit-breaker state"):
        breaker_state_value("ajar")
    with pytest.raises(ValueError):
        breaker_state_value(3)


def test_http_metrics_and_gateway_overhead(metrics: PrometheusMetrics) -> None:
    http = metrics.http

    def one_request() -> None:  # as the middleware runs it: in a context of its own
        timing = http.request_started()
        assert value(metrics, "http_requests_in_flight") == 1
        metrics.observe_upstream("openai", "gpt-4o", "success", 0.75)  # inside the request
        http.request_finished(timing, "POST", "/v1/chat/completions", 200, 0.80)

    contextvars.Context().run(one_request)
    assert value(metrics, "http_requests_in_flight") == 0

    labels = {"method": "POST", "route": "/v1/chat/completions", "status": "200"}
    assert value(metrics, "http_requests_total", **labels) == 1
    assert value(metrics, "http_request_duration_seconds_sum", **labels) == pytest.approx(0.8)
    overhead = value(metrics, "oneflow_gateway_overhead_seconds_sum", route="/v1/chat/completions")
    assert overhead == pytest.approx(0.05)

    http.request_finished(http.request_started(), "BREW", "unmatched", 405, 0.001)
    assert value(metrics, "http_requests_total", method="other", route="unmatched", status="405")


def test_upstream_time_goes_to_the_current_request_only(metrics: PrometheusMetrics) -> None:
    def request(seconds: float) -> float:
        timing = start_request_timing()
        metrics.observe_upstream("openai", "gpt-4o", "success", seconds)
        metrics.observe_upstream("openai", "gpt-4o", "timeout", seconds)
        return timing.seconds

    assert contextvars.Context().run(request, 1.5) == pytest.approx(3.0)
    assert contextvars.Context().run(request, 0.25) == pytest.approx(0.5)
    # Outside any request there is nothing to add to, and nothing fails.
    contextvars.Context().run(metrics.observe_upstream, "openai", "gpt-4o", "success", 1.0)


def test_every_family_has_help_and_no_created_series(metrics: PrometheusMetrics) -> None:
    names = metrics.metric_names()
    for name in (
        "http_requests",
        "http_request_duration_seconds",
        "http_requests_in_flight",
        "oneflow_gateway_overhead_seconds",
        "oneflow_upstream_requests",
        "oneflow_upstream_request_duration_seconds",
        "oneflow_upstream_time_to_first_token_seconds",
        "oneflow_tokens",
        "oneflow_credits_charged",
        "oneflow_fallbacks",
        "oneflow_upstream_retries",
        "oneflow_circuit_breaker_state",
        "oneflow_rate_limit_rejections",
        "oneflow_budget_rejections",
        "oneflow_budget_alerts",
        "oneflow_db_pool_connections_in_use",
    ):
        assert name in names
    metrics.observe_upstream("openai", "gpt-4o", "success", 0.1)
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain")
    assert b"_created" not in body
    assert b"# HELP oneflow_upstream_requests_total " in body


def test_openmetrics_is_negotiated(metrics: PrometheusMetrics) -> None:
    body, content_type = metrics.render("application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    assert body.rstrip().endswith(b"# EOF")


def test_disabled_metrics_are_one_noop_object_with_the_same_api() -> None:
    metrics = build_metrics(False, CatalogLabels(packaged_catalog()))
    assert isinstance(metrics, NoopMetrics)
    assert not metrics.enabled
    assert not hasattr(metrics, "registry")
    public = {n for n in dir(PrometheusMetrics) if not n.startswith("_")}
    missing = public - set(dir(NoopMetrics)) - {"registry", "labels", "metric_names"}
    assert missing == set()
    # Every call is accepted and does nothing.
    http = metrics.http
    http.request_finished(http.request_started(), "GET", "/", 200, 0.1)
    metrics.observe_upstream("openai", "gpt-4o", "success", 0.1, 0.05)
    metrics.count_tokens("openai", "gpt-4o", 1, 2)
    metrics.add_credits("openai", "gpt-4o", 1_000_000)
    metrics.record_fallback("a", "b", "c")
    metrics.record_retry("openai", "timeout")
    metrics.set_breaker_state("openai", "open")
    metrics.record_rate_limited("x")
    metrics.record_budget_rejected("y")
    metrics.record_budget_alert("project", "credits", "soft")
    assert metrics.http is http


def test_two_apps_keep_separate_registries() -> None:
    labels = CatalogLabels(packaged_catalog())
    first = build_metrics(True, labels)
    second = build_metrics(True, labels)
    assert isinstance(first, PrometheusMetrics) and isinstance(second, PrometheusMetrics)
    first.record_rate_limited("per_minute")
    assert value(first, "oneflow_rate_limit_rejections_total", reason="per_minute") == 1
    assert value(second, "oneflow_rate_limit_rejections_total", reason="per_minute") is None
