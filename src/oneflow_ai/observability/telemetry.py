"""`Telemetry`: the metrics and tracing of one app, built from its settings, and
:class:`UpstreamAttempt`, which reports one upstream call to both.

``create_app`` builds one ``Telemetry`` (or takes the one a test passes), hands
``telemetry.metrics.http`` and ``telemetry.tracing`` to the edge middleware, and keeps it in
``Services``; the lifespan closes it (spans flushed, live gauges of the process dropped).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry

from oneflow_ai.catalog import Catalog, packaged_catalog
from oneflow_ai.observability.labels import CatalogLabels, outcome_of
from oneflow_ai.observability.logging import Redactor
from oneflow_ai.observability.metrics import GatewayMetrics, NoopMetrics, build_metrics
from oneflow_ai.observability.spans import UpstreamSpanHandle
from oneflow_ai.observability.tracing import NoopTracing, TracingApi, build_tracing
from oneflow_ai.settings import Settings

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter

__all__ = ["Telemetry", "UpstreamAttempt"]


@dataclass(frozen=True, slots=True)
class Telemetry:
    metrics: GatewayMetrics
    tracing: TracingApi

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        redactor: Redactor | None = None,
        catalog: Catalog | None = None,
        span_exporter: SpanExporter | None = None,
        registry: CollectorRegistry | None = None,
    ) -> Telemetry:
        """Metrics per ``ENABLE_METRICS`` (model labels from ``catalog``, the packaged one by
        default) and tracing per ``ENABLE_TRACING`` (``span_exporter`` replaces OTLP)."""
        redactor = redactor if redactor is not None else Redactor(settings.secret_values)
        labels = CatalogLabels(catalog if catalog is not None else packaged_catalog())
        return cls(
            metrics=build_metrics(settings.enable_metrics, labels, registry=registry),
            tracing=build_tracing(settings.enable_tracing, redactor, exporter=span_exporter),
        )

    @classmethod
    def disabled(cls) -> Telemetry:
        """No metrics, no tracing (a pipeline built without telemetry, e.g. in tests)."""
        return cls(metrics=NoopMetrics(), tracing=NoopTracing())

    def upstream_attempt(
        self,
        *,
        provider: str,
        model: str,
        operation: str = "chat",
        attempt: int = 1,
        stream: bool = False,
        max_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        output_type: str | None = None,
        server_address: str | None = None,
    ) -> UpstreamAttempt:
        """Start timing one attempt at ``provider``'s ``model`` and open its span."""
        span = self.tracing.upstream(
            provider=provider,
            model=model,
            operation=operation,
            attempt=attempt,
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            stream=stream,
            output_type=output_type,
            server_address=server_address,
        )
        return UpstreamAttempt(self.metrics, span, provider, model)

    def close(self) -> None:
        try:
            self.tracing.shutdown()
        finally:
            self.metrics.close()


class UpstreamAttempt:
    """One upstream attempt, reported once to metrics and tracing.

    Non-streaming::

        with telemetry.upstream_attempt(provider="openai", model="gpt-4o") as attempt:
            response = await provider.chat(request, "gpt-4o")   # traceparent: this attempt
            attempt.succeeded(input_tokens=..., output_tokens=..., response_model=...,
                              finish_reasons=[response.finish_reason])

    An exception leaving the block is recorded as the attempt's outcome (``outcome_of``). For a
    stream, keep the object: ``with attempt.span.activate(): first = await anext(events)``,
    call :meth:`first_token` when the first content arrives, and :meth:`succeeded` or
    :meth:`failed` when the stream ends.
    """

    __slots__ = ("_clock", "_done", "_metrics", "_started", "_ttft", "model", "provider", "span")

    def __init__(
        self,
        metrics: GatewayMetrics,
        span: UpstreamSpanHandle,
        provider: str,
        model: str,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._metrics = metrics
        self.span = span
        self.provider = provider
        self.model = model
        self._clock = clock
        self._started = clock()
        self._ttft: float | None = None
        self._done = False

    @property
    def done(self) -> bool:
        return self._done

    def first_token(self) -> float:
        """Mark the first content's arrival; returns the seconds since the attempt started."""
        if self._ttft is None:
            self._ttft = self._clock() - self._started
            self.span.first_token(self._ttft)
        return self._ttft

    def succeeded(
        self,
        *,
        input_tokens: int = 0,
        output_tokens: int = 0,
        response_model: str | None = None,
        response_id: str | None = None,
        finish_reasons: Sequence[str] = (),
    ) -> None:
        """The attempt answered: duration, time to first token, tokens, response details."""
        if self._done:
            return
        self._done = True
        elapsed = self._clock() - self._started
        metrics = self._metrics
        metrics.observe_upstream(self.provider, self.model, "success", elapsed, self._ttft)
        if input_tokens or output_tokens:  # the pipeline counts them after the call instead
            metrics.count_tokens(self.provider, self.model, input_tokens, output_tokens)
        self.span.record_response(
            model=response_model,
            response_id=response_id,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            finish_reasons=finish_reasons,
        )
        self.span.finish()

    def failed(self, error: BaseException) -> None:
        """The attempt failed with ``error`` (its outcome label comes from the error tree)."""
        if self._done:
            return
        self._done = True
        elapsed = self._clock() - self._started
        self._metrics.observe_upstream(
            self.provider, self.model, outcome_of(error), elapsed, self._ttft
        )
        self.span.finish(error)

    def __enter__(self) -> UpstreamAttempt:
        self.span.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc is not None:
                self.failed(exc)
            elif not self._done:
                self.succeeded()
        finally:
            self.span.__exit__(exc_type, exc, tb)
