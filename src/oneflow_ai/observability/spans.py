"""What the edge and the gateway may do with tracing (`TracingApi`) and the spans it opens
inside a request (the server span; routing, upstream attempts, ledger writes), and the no-op
of tracing off. The spans of tracing on are in :mod:`oneflow_ai.observability.otel_spans`,
imported only when tracing is on.

Each is a context manager: entering makes the span current (so an upstream request made inside
carries it in ``traceparent``), leaving ends it and records an exception that escaped, redacted.
A streamed answer outlives the block that started it: keep the object, wrap the calls that must
see it as current in ``with span.activate():``, and call :meth:`ChildSpan.finish` when the
stream ends. The classes here are the interface and, as they are, the spans of tracing off
(shared singletons: a disabled tracer allocates nothing); tracing on subclasses them.

Spans carry no prompts, completions or keys: only the names and numbers set here, and
exception messages passed through the log redactor.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Final, Self

if TYPE_CHECKING:
    from opentelemetry.util.types import AttributeValue

__all__ = [
    "NOOP_SERVER_SPAN",
    "NOOP_SPAN",
    "NOOP_UPSTREAM_SPAN",
    "GenAI",
    "NoopTracing",
    "ServerRequest",
    "ServerSpan",
    "SpanHandle",
    "TracingApi",
    "UpstreamSpanHandle",
]

_NULL_CONTEXT: Final = nullcontext()


class GenAI:
    """Attribute names of the OpenTelemetry GenAI semantic conventions used by OneFlow."""

    OPERATION = "gen_ai.operation.name"
    PROVIDER = "gen_ai.provider.name"
    SYSTEM = "gen_ai.system"  # the older name of gen_ai.provider.name, still read by backends
    REQUEST_MODEL = "gen_ai.request.model"
    REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens"
    REQUEST_TEMPERATURE = "gen_ai.request.temperature"
    REQUEST_TOP_P = "gen_ai.request.top_p"
    REQUEST_STREAM = "gen_ai.request.stream"
    OUTPUT_TYPE = "gen_ai.output.type"
    RESPONSE_MODEL = "gen_ai.response.model"
    RESPONSE_ID = "gen_ai.response.id"
    FINISH_REASONS = "gen_ai.response.finish_reasons"
    TIME_TO_FIRST_CHUNK = "gen_ai.response.time_to_first_chunk"
    INPUT_TOKENS = "gen_ai.usage.input_tokens"
    OUTPUT_TOKENS = "gen_ai.usage.output_tokens"


@dataclass(frozen=True, slots=True)
class ServerRequest:
    """What a server span records of an HTTP request (the edge reads it off the ASGI scope):
    ``trace_headers`` holds the caller's ``traceparent`` / ``tracestate``, if any."""

    method: str
    path: str
    request_id: str
    scheme: str = "http"
    http_version: str = "1.1"
    trace_headers: Mapping[str, str] = field(default_factory=dict)


class ServerSpan:
    """A request's server span. This base records nothing: it is the span of tracing off
    (`NOOP_SERVER_SPAN`); tracing on subclasses it (`otel_tracing.py`)."""

    __slots__ = ()

    def finish(self, route: str, status: int, error: BaseException | None = None) -> None:
        return None


NOOP_SERVER_SPAN: Final = ServerSpan()


class SpanHandle:
    """What the gateway may do with a child span. This base records nothing: its instances
    are the spans of tracing off (`NOOP_SPAN`); tracing on subclasses it (`otel_spans.py`)."""

    __slots__ = ()

    def set(self, key: str, value: AttributeValue) -> None:
        return None

    def fail(self, error: BaseException) -> None:
        return None

    def finish(self, error: BaseException | None = None) -> None:
        return None

    def activate(self) -> AbstractContextManager[None]:
        return _NULL_CONTEXT

    def inject(self, headers: MutableMapping[str, str]) -> None:
        return None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None


class UpstreamSpanHandle(SpanHandle):
    """An upstream attempt's span; this base records nothing (`NOOP_UPSTREAM_SPAN`)."""

    __slots__ = ()

    def first_token(self, seconds: float) -> None:
        return None

    def record_response(
        self,
        *,
        model: str | None = None,
        response_id: str | None = None,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        finish_reasons: Sequence[str] = (),
    ) -> None:
        return None


#: The spans of tracing off, shared: a disabled tracer allocates nothing.
NOOP_SPAN: Final = SpanHandle()
NOOP_UPSTREAM_SPAN: Final = UpstreamSpanHandle()


class TracingApi:
    """What the edge and the pipeline call. This base does nothing: every method returns a
    shared no-op object (tracing off, :class:`NoopTracing`); the OpenTelemetry tracing
    subclasses it (:mod:`oneflow_ai.observability.otel_tracing`)."""

    __slots__ = ()

    @property
    def enabled(self) -> bool:
        return False

    def server_span(self, request: ServerRequest) -> ServerSpan:
        return NOOP_SERVER_SPAN

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


class NoopTracing(TracingApi):
    """Tracing off: every method returns a shared no-op object; nothing is allocated."""

    __slots__ = ()
