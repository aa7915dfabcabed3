"""OpenTelemetry tracing of one gateway application (``ENABLE_TRACING``).

:func:`build_tracing` returns :class:`Tracing` (an SDK ``TracerProvider`` of this app's own, a
``BatchSpanProcessor`` and the OTLP/HTTP exporter, all configured by the standard ``OTEL_*``
variables the SDK reads: endpoint, headers, sampler, batch sizes, resource attributes) or
:class:`NoopTracing`, whose methods return shared no-op objects.

- The edge middleware opens a server span per request (:meth:`Tracing.server_span`): the
  caller's W3C ``traceparent`` is its parent, its name is ``METHOD /route/{template}``, and it
  carries the ``http.*`` / ``url.*`` semantic attributes (never the query string or headers).
- The pipeline opens child spans: :meth:`Tracing.routing`, :meth:`Tracing.upstream` (one per
  attempt, GenAI semantic conventions) and :meth:`Tracing.ledger`.
- :func:`inject_trace_context` writes the current span's ``traceparent`` into an upstream
  request's headers; it does nothing when no span is recording.

The service name is ``oneflow-ai`` unless ``OTEL_SERVICE_NAME`` (or ``service.name`` in
``OTEL_RESOURCE_ATTRIBUTES``) says otherwise; ``OTEL_SDK_DISABLED=true`` turns tracing off.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from importlib import metadata
from typing import Final, Protocol

import structlog
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue
from starlette.types import Scope

from oneflow_ai.observability.logging import Redactor
from oneflow_ai.observability.spans import (
    NOOP_SPAN,
    NOOP_UPSTREAM_SPAN,
    PROPAGATOR,
    ChildSpan,
    GenAI,
    SpanHandle,
    UpstreamSpan,
    UpstreamSpanHandle,
    record_error,
)

__all__ = [
    "DEFAULT_SERVICE_NAME",
    "NoopTracing",
    "ServerSpan",
    "Tracing",
    "TracingApi",
    "build_tracing",
    "inject_trace_context",
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
    """Write the current span's ``traceparent`` into ``headers`` (nothing when none records).

    Call it where an upstream request's headers are built; inside an upstream span it names
    that attempt as the provider-side parent.
    """
    span = trace.get_current_span()
    if span.get_span_context().is_valid:
        PROPAGATOR.inject(headers)


class ServerSpan(Protocol):
    def finish(self, route: str, status: int, error: BaseException | None = None) -> None: ...


class _NoopServerSpan:
    __slots__ = ()

    def finish(self, route: str, status: int, error: BaseException | None = None) -> None:
        return None


_NOOP_SERVER_SPAN: Final = _NoopServerSpan()


class TracingApi(Protocol):
    """What the edge and the pipeline call; :class:`NoopTracing` implements it doing nothing."""

    @property
    def enabled(self) -> bool: ...

    def server_span(self, scope: Scope, request_id: str) -> ServerSpan: ...

    def routing(
        self, *, strategy: str | None = None, requested_model: str | None = None
    ) -> SpanHandle: ...

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
    ) -> UpstreamSpanHandle: ...

    def ledger(self, operation: str) -> SpanHandle: ...

    def inject(self, headers: MutableMapping[str, str]) -> None: ...

    def force_flush(self) -> bool: ...

    def shutdown(self) -> None: ...


class _ServerSpan:
    __slots__ = ("_method", "_redactor", "_span", "_token")

    def __init__(self, tracer: trace.Tracer, scope: Scope, request_id: str, redactor: Redactor):
        carrier: dict[str, str] = {}
        for name, value in scope["headers"]:
            if name == b"traceparent" or name == b"tracestate":
                carrier[name.decode()] = value.decode("latin-1")
        parent = PROPAGATOR.extract(carrier) if carrier else None
        method: str = scope["method"]
        self._method = method
        self._redactor = redactor
        attributes: dict[str, AttributeValue] = {
            "http.request.method": method,
            "url.path": redactor.text(scope["path"])[:2048],
            "url.scheme": scope.get("scheme", "http"),
            "network.protocol.version": scope.get("http_version", "1.1"),
            "oneflow.request_id": request_id,
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


class Tracing:
    """Tracing on: spans of this app's own ``TracerProvider``."""

    def __init__(self, provider: TracerProvider, redactor: Redactor) -> None:
        self.provider = provider
        self._redactor = redactor
        self._tracer = provider.get_tracer("oneflow_ai", _version())

    @property
    def enabled(self) -> bool:
        return True

    def server_span(self, scope: Scope, request_id: str) -> ServerSpan:
        return _ServerSpan(self._tracer, scope, request_id, self._redactor)

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


class NoopTracing:
    """Tracing off: every method returns a shared no-op object; nothing is allocated."""

    __slots__ = ()

    @property
    def enabled(self) -> bool:
        return False

    def server_span(self, scope: Scope, request_id: str) -> ServerSpan:
        return _NOOP_SERVER_SPAN

    def routing(
        self, *, strategy: str | None = None, requested_model: str | None = None
    ) -> SpanHandle:
        return NOOP_SPAN

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
    ) -> UpstreamSpanHandle:
        return NOOP_UPSTREAM_SPAN

    def ledger(self, operation: str) -> SpanHandle:
        return NOOP_SPAN

    def inject(self, headers: MutableMapping[str, str]) -> None:
        return None

    def force_flush(self) -> bool:
        return True

    def shutdown(self) -> None:
        return None


def service_resource() -> Resource:
    """The SDK's resource (``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_SERVICE_NAME``), with
    ``service.name`` defaulting to ``oneflow-ai`` and the version added."""
    resource = Resource.create({SERVICE_VERSION: _version()})
    name = str(resource.attributes.get(SERVICE_NAME, ""))
    if not name or name.startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
    return resource


def build_tracing(
    enabled: bool, redactor: Redactor, *, exporter: SpanExporter | None = None
) -> TracingApi:
    """Tracing for one app; ``exporter`` replaces the OTLP exporter (tests pass an
    in-memory one)."""
    if not enabled or os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return NoopTracing()
    if exporter is None:
        # Imported only when tracing is on: the exporter pulls in protobuf and requests.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    provider = TracerProvider(resource=service_resource(), shutdown_on_exit=False)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return Tracing(provider, redactor)
