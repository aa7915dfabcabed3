"""What the gateway may do with the child spans it opens inside a request (routing, upstream
attempts, ledger writes), and the no-op spans of tracing off. The spans of tracing on are in
:mod:`oneflow_ai.observability.otel_spans`, imported only when tracing is on.

Each is a context manager: entering makes the span current (so an upstream request made inside
carries it in ``traceparent``), leaving ends it and records an exception that escaped, redacted.
A streamed answer outlives the block that started it: keep the object, wrap the calls that must
see it as current in ``with span.activate():``, and call :meth:`ChildSpan.finish` when the
stream ends. The ``Noop*`` twins are shared singletons: a disabled tracer allocates nothing.

Spans carry no prompts, completions or keys: only the names and numbers set here, and
exception messages passed through the log redactor.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Final, Protocol

if TYPE_CHECKING:
    from opentelemetry.util.types import AttributeValue

__all__ = [
    "NOOP_SERVER_SPAN",
    "NOOP_SPAN",
    "NOOP_UPSTREAM_SPAN",
    "GenAI",
    "NoopSpan",
    "NoopUpstreamSpan",
    "ServerRequest",
    "ServerSpan",
    "SpanHandle",
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


class ServerSpan(Protocol):
    def finish(self, route: str, status: int, error: BaseException | None = None) -> None: ...


class _NoopServerSpan:
    __slots__ = ()

    def finish(self, route: str, status: int, error: BaseException | None = None) -> None:
        return None


NOOP_SERVER_SPAN: Final = _NoopServerSpan()


class SpanHandle(Protocol):
    """What the gateway may do with a child span (real or no-op)."""

    def set(self, key: str, value: AttributeValue) -> None: ...

    def fail(self, error: BaseException) -> None: ...

    def finish(self, error: BaseException | None = None) -> None: ...

    def activate(self) -> AbstractContextManager[None]: ...

    def inject(self, headers: MutableMapping[str, str]) -> None: ...

    def __enter__(self) -> SpanHandle: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class UpstreamSpanHandle(SpanHandle, Protocol):
    """An upstream attempt's span (real or no-op)."""

    def __enter__(self) -> UpstreamSpanHandle: ...

    def first_token(self, seconds: float) -> None: ...

    def record_response(
        self,
        *,
        model: str | None = None,
        response_id: str | None = None,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        finish_reasons: Sequence[str] = (),
    ) -> None: ...


class NoopSpan:
    """A span that records nothing (tracing off); one shared instance."""

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

    def __enter__(self) -> NoopSpan:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None


class NoopUpstreamSpan(NoopSpan):
    __slots__ = ()

    def __enter__(self) -> NoopUpstreamSpan:
        return self

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


NOOP_SPAN: Final = NoopSpan()
NOOP_UPSTREAM_SPAN: Final = NoopUpstreamSpan()
