"""Tracing on: OpenTelemetry spans of this app's own ``TracerProvider``, exported in batches
(OTLP/HTTP unless a test passes its exporter). Imported only by
:func:`oneflow_ai.observability.tracing.build_tracing` when tracing is on.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from importlib import metadata

import structlog
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from oneflow_ai.observability.logging import Redactor
from oneflow_ai.observability.otel_spans import PROPAGATOR, ChildSpan, UpstreamSpan, record_error
from oneflow_ai.observability.spans import GenAI, ServerRequest, ServerSpan, TracingApi

__all__ = [
    "DEFAULT_SERVICE_NAME",
    "Tracing",
    "build_otel_tracing",
    "inject_trace_context",
    "service_resource",
]

DEFAULT_SERVICE_NAME = "oneflow-ai"

_MAX_TEXT = 256


def _version() -> str:
    # The installed distribution's version (the package root imports upper layers lazily).
    try:
        return metadata.version("oneflow-ai")
    except metadata.PackageNotFoundError:
        return "unknown"


def inject_trace_context(headers: MutableMapping[str, str]) -> None:
    """Write the current span's ``traceparent`` into ``headers`` (nothing when none records)."""
    span = trace.get_current_span()
    if span.get_span_context().is_valid:
        PROPAGATOR.inject(headers)


class _ServerSpan(ServerSpan):
    __slots__ = ("_method", "_redactor", "_span", "_token")

    def __init__(self, tracer: trace.Tracer, request: ServerRequest, redactor: Redactor):
        carrier = request.trace_headers
        parent = PROPAGATOR.extract(carrier) if carrier else None
        method = request.method
        self._method = method
        self._redactor = redactor
        attributes: dict[str, AttributeValue] = {
            "http.request.method": method,
            "url.path": redactor.text(request.path)[:2048],
            "url.scheme": request.scheme,
            "network.protocol.version": request.http_version,
            "oneflow.request_id": request.request_id,
        }
        self._span: Span = tracer.start_span(
            method, context=parent, kind=SpanKind.SERVER, attributes=attributes
        )
        context = trace.set_span_in_context(self._span, parent)
        self._token = otel_context.attach(context)
        structlog.contextvars.bind_contextvars(
            trace_id=format(self._span.get_span_context().trace_id, "032x")
        )

    def finish(self, route: str, status: int, error: BaseException | None = None) -> None:
        span = self._span
        try:
            span.update_name(f"{self._method} {route}")
            span.set_attribute("http.route", route)
            span.set_attribute("http.response.status_code", status)
            if error is not None:
                record_error(span, error, self._redactor, stack=True)
            elif status >= 500:
                span.set_attribute("error.type", str(status))
                span.set_status(Status(StatusCode.ERROR))
            span.end()
        finally:
            otel_context.detach(self._token)


class Tracing(TracingApi):
    """Tracing on: spans of this app's own ``TracerProvider``."""

    def __init__(self, provider: TracerProvider, redactor: Redactor) -> None:
        self.provider = provider
        self._redactor = redactor
        self._tracer = provider.get_tracer("oneflow_ai", _version())

    @property
    def enabled(self) -> bool:
        return True

    def server_span(self, request: ServerRequest) -> ServerSpan:
        return _ServerSpan(self._tracer, request, self._redactor)

    def _text(self, value: str) -> str:
        return self._redactor.text(value[:_MAX_TEXT])

    def routing(
        self, *, strategy: str | None = None, requested_model: str | None = None
    ) -> ChildSpan:
        """Choosing the model: set ``oneflow.routing.*`` results on the span."""
        attributes: dict[str, AttributeValue] = {}
        if strategy:
            attributes["oneflow.routing.strategy"] = strategy
        if requested_model:
            attributes[GenAI.REQUEST_MODEL] = self._text(requested_model)
        span = self._tracer.start_span("route", kind=SpanKind.INTERNAL, attributes=attributes)
        return ChildSpan(span, self._redactor)

    def upstream(
        self,
        *,
        provider: str,
        model: str,
        operation: str = "chat",
        attempt: int = 1,
        max_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        stream: bool = False,
        output_type: str | None = None,
        server_address: str | None = None,
    ) -> UpstreamSpan:
        """One attempt at ``provider``'s ``model`` (``operation``: chat, text_completion,
        generate_content, embeddings; ``output_type``: text, json, image, speech)."""
        model = self._text(model)
        attributes: dict[str, AttributeValue] = {
            GenAI.OPERATION: operation,
            GenAI.PROVIDER: provider,
            GenAI.SYSTEM: provider,
            GenAI.REQUEST_MODEL: model,
            GenAI.REQUEST_STREAM: stream,
            "oneflow.attempt": attempt,
        }
        if max_tokens is not None:
            attributes[GenAI.REQUEST_MAX_TOKENS] = max_tokens
        if temperature is not None:
            attributes[GenAI.REQUEST_TEMPERATURE] = temperature
        if top_p is not None:
            attributes[GenAI.REQUEST_TOP_P] = top_p
        if output_type is not None:
            attributes[GenAI.OUTPUT_TYPE] = output_type
        if server_address is not None:
            attributes["server.address"] = server_address
        span = self._tracer.start_span(
            f"{operation} {model}", kind=SpanKind.CLIENT, attributes=attributes
        )
        return UpstreamSpan(span, self._redactor)

    def ledger(self, operation: str) -> ChildSpan:
        """A ledger write (``reserve``, ``settle``, ``release``, ``record_usage``)."""
        span = self._tracer.start_span(
            f"ledger {operation}",
            kind=SpanKind.INTERNAL,
            attributes={"oneflow.ledger.operation": operation},
        )
        return ChildSpan(span, self._redactor)

    def inject(self, headers: MutableMapping[str, str]) -> None:
        inject_trace_context(headers)

    def force_flush(self) -> bool:
        return self.provider.force_flush()

    def shutdown(self) -> None:
        self.provider.shutdown()


def service_resource() -> Resource:
    """The SDK's resource (``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_SERVICE_NAME``), with
    ``service.name`` defaulting to ``oneflow-ai`` and the version added."""
    resource = Resource.create({SERVICE_VERSION: _version()})
    name = str(resource.attributes.get(SERVICE_NAME, ""))
    if not name or name.startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
    return resource


def build_otel_tracing(redactor: Redactor, exporter: SpanExporter | None = None) -> Tracing:
    """A ``TracerProvider`` of its own with a batch processor on ``exporter`` (default: OTLP
    over HTTP, configured by the ``OTEL_EXPORTER_OTLP_*`` variables)."""
    if exporter is None:
        # The exporter pulls in protobuf and requests.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    provider = TracerProvider(resource=service_resource(), shutdown_on_exit=False)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return Tracing(provider, redactor)
