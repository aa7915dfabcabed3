"""Tracing of one gateway application (``ENABLE_TRACING``): what the edge and the pipeline
call, and the no-op of tracing off.

:func:`build_tracing` returns :class:`NoopTracing`, whose methods return shared no-op objects
(the interface, :class:`TracingApi`, and its no-op are in :mod:`oneflow_ai.observability.spans`),
or the OpenTelemetry tracing of :mod:`oneflow_ai.observability.otel_tracing` (an SDK
``TracerProvider`` of this app's own, a ``BatchSpanProcessor`` and the OTLP/HTTP exporter, all
configured by the standard ``OTEL_*`` variables the SDK reads). The OpenTelemetry SDK and
OneFlow's spans are imported only then: a gateway with tracing off never loads them.

- The edge middleware (``api/middleware.py``) opens a server span per request
  (:meth:`TracingApi.server_span`) from a :class:`ServerRequest` it reads off the ASGI scope:
  the caller's W3C ``traceparent`` is its parent, its name is ``METHOD /route/{template}``, and
  it carries the ``http.*`` / ``url.*`` semantic attributes (never the query string or headers).
- The pipeline opens child spans: :meth:`TracingApi.routing`, :meth:`TracingApi.upstream` (one
  per attempt, GenAI semantic conventions) and :meth:`TracingApi.ledger`.
- :func:`inject_trace_context` writes the current span's ``traceparent`` into an upstream
  request's headers; it does nothing when no span is recording.

The service name is ``oneflow-ai`` unless ``OTEL_SERVICE_NAME`` (or ``service.name`` in
``OTEL_RESOURCE_ATTRIBUTES``) says otherwise; ``OTEL_SDK_DISABLED=true`` turns tracing off.
"""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping
from typing import TYPE_CHECKING

from oneflow_ai.observability.logging import Redactor
from oneflow_ai.observability.spans import (
    NoopTracing,
    ServerRequest,
    ServerSpan,
    TracingApi,
)

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter

__all__ = [
    "NoopTracing",
    "ServerRequest",
    "ServerSpan",
    "TracingApi",
    "build_tracing",
    "inject_trace_context",
]


def inject_trace_context(headers: MutableMapping[str, str]) -> None:
    """Write the current span's ``traceparent`` into ``headers`` (nothing when none records).

    Call it where an upstream request's headers are built; inside an upstream span it names
    that attempt as the provider-side parent. Without tracing on, OpenTelemetry is not loaded
    and no span can record: nothing is written.
    """
    otel = sys.modules.get("oneflow_ai.observability.otel_tracing")
    if otel is not None:
        otel.inject_trace_context(headers)


def build_tracing(
    enabled: bool, redactor: Redactor, *, exporter: SpanExporter | None = None
) -> TracingApi:
    """Tracing for one app; ``exporter`` replaces the OTLP exporter (tests pass an
    in-memory one). OpenTelemetry's SDK is imported here, and only when tracing is on."""
    if not enabled or os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return NoopTracing()
    from oneflow_ai.observability.otel_tracing import build_otel_tracing

    return build_otel_tracing(redactor, exporter)
