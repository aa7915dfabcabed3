"""Tracing on a running gateway: the caller's traceparent continues into a server span, the
pipeline's child spans carry GenAI attributes, traceparent goes on to the upstream, and no
secret reaches a span. Spans are captured by an in-memory exporter passed in through
`Telemetry`, never sent over the network."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import orjson
import pytest
from fastapi import Request
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import CollectorRegistry

from oneflow_ai.api.deps import get_services
from oneflow_ai.app import create_app
from oneflow_ai.catalog import packaged_catalog
from oneflow_ai.errors import ProviderAuthError
from oneflow_ai.observability.labels import CatalogLabels
from oneflow_ai.observability.logging import Redactor
from oneflow_ai.observability.otel_tracing import DEFAULT_SERVICE_NAME, service_resource
from oneflow_ai.observability.prometheus import PrometheusMetrics
from oneflow_ai.observability.spans import NOOP_SPAN, NOOP_UPSTREAM_SPAN
from oneflow_ai.observability.telemetry import Telemetry
from oneflow_ai.observability.tracing import (
    NoopTracing,
    ServerRequest,
    build_tracing,
    inject_trace_context,
)
from oneflow_ai.settings import Settings
from tests.support.server import LiveServer, live_server

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"
PROVIDER_KEY = "sk-proj-UpstreamKey0123456789abcdef"
PROMPT = "my secret plan for world domination"


@dataclass
class Traced:
    server: LiveServer
    exporter: InMemorySpanExporter


@pytest.fixture
def traced(make_settings: Callable[..., Settings]) -> Iterator[Traced]:
    settings = make_settings(enable_tracing=True, openai_api_key=PROVIDER_KEY)
    exporter = InMemorySpanExporter()
    telemetry = Telemetry.from_settings(settings, span_exporter=exporter)
    app = create_app(settings, configure_logs=False, telemetry=telemetry)

    @app.post("/_test/chat/{dialect}")
    async def chat(request: Request, dialect: str) -> dict[str, str]:
        telemetry = get_services(request).telemetry
        tracing = telemetry.tracing
        body = await request.json()  # the prompt: never recorded
        assert body["messages"][0]["content"] == PROMPT
        with tracing.routing(strategy="cost", requested_model="gpt-4o") as route:
            route.set("oneflow.routing.primary_model", "gpt-4o")
        upstream_headers: dict[str, str] = {"authorization": f"Bearer {PROVIDER_KEY}"}
        with telemetry.upstream_attempt(
            provider="openai", model="gpt-4o", max_tokens=256, temperature=0.2, stream=False
        ) as attempt:
            inject_trace_context(upstream_headers)
            attempt.succeeded(
                input_tokens=12,
                output_tokens=34,
                response_model="gpt-4o-2024-08-06",
                response_id="chatcmpl-123",
                finish_reasons=["stop"],
            )
        with tracing.ledger("settle") as ledger:
            ledger.set("oneflow.ledger.micro_credits", 7500)
        return {"traceparent": upstream_headers["traceparent"]}

    @app.post("/_test/failing-upstream")
    async def failing(request: Request) -> dict[str, str]:
        telemetry = get_services(request).telemetry
        try:
            with telemetry.upstream_attempt(provider="openai", model="gpt-4o", attempt=2):
                raise ProviderAuthError(
                    f"upstream said: invalid key {PROVIDER_KEY}", provider="openai"
                )
        except ProviderAuthError:
            pass
        return {"ok": "yes"}

    @app.get("/_test/boom")
    async def boom() -> None:
        raise RuntimeError(f"exploded while holding {PROVIDER_KEY}")

    with live_server(app) as server:
        yield Traced(server, exporter)


def finished(traced: Traced) -> list[ReadableSpan]:
    traced.server.stop()  # the lifespan's shutdown flushes the batch processor
    return list(traced.exporter.get_finished_spans())


def by_name(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    matching = [span for span in spans if span.name == name]
    assert len(matching) == 1, [span.name for span in spans]
    return matching[0]


def test_caller_traceparent_continues_into_the_server_and_child_spans(traced: Traced) -> None:
    response = httpx.post(
        f"{traced.server.url}/_test/chat/openai",
        json={"model": "gpt-4o", "messages": [{"role": "user", "content": PROMPT}]},
        headers={"traceparent": TRACEPARENT, "Authorization": f"Bearer {PROVIDER_KEY}"},
    )
    assert response.status_code == 200
    spans = finished(traced)

    server = by_name(spans, "POST /_test/chat/{dialect}")
    assert server.kind is SpanKind.SERVER
    assert format(server.context.trace_id, "032x") == CALLER_TRACE
    assert server.parent is not None and format(server.parent.span_id, "016x") == CALLER_SPAN
    assert server.parent.is_remote
    attributes = dict(server.attributes or {})
    assert attributes["http.request.method"] == "POST"
    assert attributes["http.route"] == "/_test/chat/{dialect}"
    assert attributes["url.path"] == "/_test/chat/openai"
    assert attributes["http.response.status_code"] == 200
    assert attributes["oneflow.request_id"] == response.headers["x-request-id"]
    assert server.status.status_code is StatusCode.UNSET
    assert server.resource.attributes["service.name"] == DEFAULT_SERVICE_NAME

    route = by_name(spans, "route")
    upstream = by_name(spans, "chat gpt-4o")
    ledger = by_name(spans, "ledger settle")
    for child in (route, upstream, ledger):
        assert child.parent is not None
        assert child.parent.span_id == server.context.span_id
        assert child.context.trace_id == server.context.trace_id
    assert route.attributes is not None
    assert route.attributes["oneflow.routing.strategy"] == "cost"
    assert ledger.attributes is not None
    assert ledger.attributes["oneflow.ledger.micro_credits"] == 7500

    assert upstream.kind is SpanKind.CLIENT
    assert dict(upstream.attributes or {}) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.system": "openai",
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.request.max_tokens": 256,
        "gen_ai.request.temperature": 0.2,
        "gen_ai.request.stream": False,
        "gen_ai.response.model": "gpt-4o-2024-08-06",
        "gen_ai.response.id": "chatcmpl-123",
        "gen_ai.response.finish_reasons": ("stop",),
        "gen_ai.usage.input_tokens": 12,
        "gen_ai.usage.output_tokens": 34,
        "oneflow.attempt": 1,
        "oneflow.outcome": "success",
    }

    # The upstream request names the attempt's span as its parent, in the caller's trace.
    upstream_id = format(upstream.context.span_id, "016x")
    assert response.json() == {"traceparent": f"00-{CALLER_TRACE}-{upstream_id}-01"}

    everything = "".join(span.to_json() for span in spans)
    assert PROMPT not in everything
    assert PROVIDER_KEY not in everything


def test_without_traceparent_a_new_trace_starts(traced: Traced) -> None:
    httpx.post(
        f"{traced.server.url}/_test/chat/openai",
        json={"messages": [{"role": "user", "content": PROMPT}]},
    )
    server = by_name(finished(traced), "POST /_test/chat/{dialect}")
    assert server.parent is None
    assert format(server.context.trace_id, "032x") != CALLER_TRACE


def test_failed_attempt_records_a_redacted_error(traced: Traced) -> None:
    assert httpx.post(f"{traced.server.url}/_test/failing-upstream").status_code == 200
    spans = finished(traced)
    upstream = by_name(spans, "chat gpt-4o")
    assert upstream.status.status_code is StatusCode.ERROR
    attributes = dict(upstream.attributes or {})
    assert attributes["error.type"] == "provider_auth"
    assert attributes["oneflow.outcome"] == "provider_auth"
    assert attributes["oneflow.attempt"] == 2
    (event,) = upstream.events
    assert event.name == "exception"
    assert event.attributes is not None
    assert event.attributes["exception.message"] == "upstream said: invalid key [REDACTED]"
    assert "exception.stacktrace" not in event.attributes
    assert PROVIDER_KEY not in "".join(span.to_json() for span in spans)


def test_unhandled_error_marks_the_server_span(traced: Traced) -> None:
    assert httpx.get(f"{traced.server.url}/_test/boom").status_code == 500
    server = by_name(finished(traced), "GET /_test/boom")
    assert server.status.status_code is StatusCode.ERROR
    assert dict(server.attributes or {})["http.response.status_code"] == 500
    (event,) = server.events
    assert event.attributes is not None
    assert "RuntimeError" in str(event.attributes["exception.stacktrace"])
    assert PROVIDER_KEY not in server.to_json()


def test_unmatched_paths_share_one_span_name(traced: Traced) -> None:
    for n in range(3):
        httpx.get(f"{traced.server.url}/nothing/here/{n}")
    names = {span.name for span in finished(traced)}
    assert names == {"GET unmatched"}


def test_a_configured_service_name_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    assert service_resource().attributes["service.name"] == DEFAULT_SERVICE_NAME
    monkeypatch.setenv("OTEL_SERVICE_NAME", "gateway-eu")
    assert service_resource().attributes["service.name"] == "gateway-eu"


def test_otel_sdk_disabled_turns_tracing_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert isinstance(build_tracing(True, Redactor()), NoopTracing)


def test_disabled_tracing_costs_nothing(make_settings: Callable[..., Settings]) -> None:
    telemetry = Telemetry.from_settings(make_settings())
    tracing = telemetry.tracing
    assert isinstance(tracing, NoopTracing) and not tracing.enabled
    # Shared singletons: no allocation per call.
    assert tracing.upstream(provider="openai", model="gpt-4o") is NOOP_UPSTREAM_SPAN
    assert tracing.routing(strategy="cost") is NOOP_SPAN
    assert tracing.ledger("settle") is NOOP_SPAN
    request = ServerRequest(method="GET", path="/", request_id="id")
    assert tracing.server_span(request) is tracing.server_span(request)
    with tracing.upstream(provider="openai", model="gpt-4o") as span, span.activate():
        headers: dict[str, str] = {}
        tracing.inject(headers)
        inject_trace_context(headers)
        span.inject(headers)
        span.record_response(model="x", input_tokens=1)
    assert headers == {}


async def test_a_streamed_attempt_ends_in_another_task() -> None:
    exporter = InMemorySpanExporter()
    metrics = PrometheusMetrics(CatalogLabels(packaged_catalog()), registry=CollectorRegistry())
    telemetry = Telemetry(metrics, build_tracing(True, Redactor(), exporter=exporter))
    model = "claude-3-haiku-20240307"
    attempt = telemetry.upstream_attempt(provider="anthropic", model=model, stream=True)
    headers: dict[str, str] = {}
    with attempt.span.activate():  # the request is sent while the attempt's span is current
        inject_trace_context(headers)
    assert inject_trace_context({}) is None  # and only then

    async def stream_body() -> None:  # a streamed body runs in a task of its own
        await asyncio.sleep(0.01)
        attempt.first_token()
        await asyncio.sleep(0.01)
        attempt.succeeded(input_tokens=5, output_tokens=50, finish_reasons=["end_turn"])
        attempt.succeeded(input_tokens=5, output_tokens=50)  # reported once only

    await asyncio.create_task(stream_body())
    telemetry.tracing.force_flush()

    (span,) = exporter.get_finished_spans()
    attributes = dict(span.attributes or {})
    assert attributes["gen_ai.request.stream"] is True
    assert attributes["gen_ai.response.finish_reasons"] == ("end_turn",)
    ttft = attributes["gen_ai.response.time_to_first_chunk"]
    assert isinstance(ttft, float) and ttft > 0.005
    assert headers["traceparent"].split("-")[2] == format(span.context.span_id, "016x")
    labels = {"provider": "anthropic", "model": model}
    registry = metrics.registry
    assert (
        registry.get_sample_value(
            "oneflow_upstream_requests_total", {**labels, "outcome": "success"}
        )
        == 1
    )
    assert (
        registry.get_sample_value("oneflow_upstream_time_to_first_token_seconds_count", labels) == 1
    )
    assert registry.get_sample_value("oneflow_tokens_total", {**labels, "type": "output"}) == 50
    telemetry.close()


async def test_a_cancelled_attempt_is_recorded_as_cancelled() -> None:
    exporter = InMemorySpanExporter()
    metrics = PrometheusMetrics(CatalogLabels(packaged_catalog()), registry=CollectorRegistry())
    telemetry = Telemetry(metrics, build_tracing(True, Redactor(), exporter=exporter))

    async def call() -> None:
        with telemetry.upstream_attempt(provider="openai", model="gpt-4o"):
            await asyncio.sleep(10)

    task = asyncio.create_task(call())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    telemetry.tracing.force_flush()
    (span,) = exporter.get_finished_spans()
    assert dict(span.attributes or {})["oneflow.outcome"] == "cancelled"
    assert (
        metrics.registry.get_sample_value(
            "oneflow_upstream_requests_total",
            {"provider": "openai", "model": "gpt-4o", "outcome": "cancelled"},
        )
        == 1
    )
    telemetry.close()


def test_log_lines_carry_the_trace_id(
    make_settings: Callable[..., Settings], capfd: pytest.CaptureFixture[str]
) -> None:
    settings = make_settings(enable_tracing=True)
    exporter = InMemorySpanExporter()
    telemetry = Telemetry.from_settings(settings, span_exporter=exporter)
    app = create_app(settings, telemetry=telemetry)  # logs configured: JSON on stderr
    with live_server(app) as server:
        httpx.get(f"{server.url}/health", headers={"traceparent": TRACEPARENT})
    access = [
        orjson.loads(line)
        for line in capfd.readouterr().err.splitlines()
        if line.startswith("{") and '"event":"request"' in line
    ]
    assert len(access) == 1
    assert access[0]["trace_id"] == CALLER_TRACE
