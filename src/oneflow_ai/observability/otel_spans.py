"""The spans of tracing on (OpenTelemetry): child spans of a request (routing, upstream
attempts, ledger writes) and how a failure is recorded on a span.

Each is a context manager: entering makes the span current (so an upstream request made inside
carries it in ``traceparent``), leaving ends it and records an exception that escaped, redacted.
A streamed answer outlives the block that started it: keep the object, wrap the calls that must
see it as current in ``with span.activate():``, and call :meth:`ChildSpan.finish` when the
stream ends. Imported only when tracing is on (see :func:`oneflow_ai.observability.tracing.
build_tracing`).

Spans carry no prompts, completions or keys: only the names and numbers set here, and
exception messages passed through the log redactor.
"""

from __future__ import annotations

import traceback
from collections.abc import Iterator, MutableMapping, Sequence
from contextlib import contextmanager
from contextvars import Token
from types import TracebackType
from typing import Final, Self

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

from oneflow_ai.errors import GatewayError
from oneflow_ai.observability.labels import outcome_of
from oneflow_ai.observability.logging import Redactor
from oneflow_ai.observability.spans import GenAI, SpanHandle, UpstreamSpanHandle

__all__ = ["PROPAGATOR", "ChildSpan", "UpstreamSpan", "record_error"]

#: W3C Trace Context only: baggage is not forwarded to upstream providers (it may carry the
#: caller's data to a third party).
PROPAGATOR: Final = TraceContextTextMapPropagator()

_MAX_TEXT = 256


def record_error(span: Span, error: BaseException, redactor: Redactor, *, stack: bool) -> None:
    """Mark ``span`` failed with ``error``: type, redacted message, optionally the stack."""
    error_type = error.kind if isinstance(error, GatewayError) else type(error).__qualname__
    message = redactor.text(str(error))[:1024]
    attributes: dict[str, AttributeValue] = {
        "exception.type": f"{type(error).__module__}.{type(error).__qualname__}",
        "exception.message": message,
    }
    if stack:
        text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        attributes["exception.stacktrace"] = redactor.text(text)[:8192]
    span.add_event("exception", attributes)
    span.set_attribute("error.type", error_type)
    span.set_status(Status(StatusCode.ERROR, message[:256]))


class ChildSpan(SpanHandle):
    """A started span; a context manager that makes it current while the block runs."""

    __slots__ = ("_ended", "_redactor", "_span", "_token")

    def __init__(self, span: Span, redactor: Redactor) -> None:
        self._span = span
        self._redactor = redactor
        self._token: Token[Context] | None = None
        self._ended = False

    @property
    def span(self) -> Span:
        return self._span

    def set(self, key: str, value: AttributeValue) -> None:
        """Set one attribute (names under ``oneflow.`` for OneFlow's own)."""
        self._span.set_attribute(key, value)

    def fail(self, error: BaseException) -> None:
        record_error(self._span, error, self._redactor, stack=False)

    def finish(self, error: BaseException | None = None) -> None:
        """End the span (once), failed when ``error`` is given."""
        if self._ended:
            return
        self._ended = True
        if error is not None:
            self.fail(error)
        self._span.end()

    @contextmanager
    def activate(self) -> Iterator[None]:
        """Make the span current for the block without ending it."""
        token = otel_context.attach(trace.set_span_in_context(self._span))
        try:
            yield
        finally:
            otel_context.detach(token)

    def inject(self, headers: MutableMapping[str, str]) -> None:
        """Write this span's ``traceparent`` (and ``tracestate``) into ``headers``."""
        PROPAGATOR.inject(headers, context=trace.set_span_in_context(self._span))

    def __enter__(self) -> Self:
        self._token = otel_context.attach(trace.set_span_in_context(self._span))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.finish(exc)
        finally:
            token, self._token = self._token, None
            if token is not None:
                otel_context.detach(token)


class UpstreamSpan(ChildSpan, UpstreamSpanHandle):
    """One attempt at a provider, with GenAI attributes."""

    __slots__ = ()

    def first_token(self, seconds: float) -> None:
        """Seconds from sending the request to the first content of a streamed answer."""
        self._span.set_attribute(GenAI.TIME_TO_FIRST_CHUNK, seconds)

    def record_response(
        self,
        *,
        model: str | None = None,
        response_id: str | None = None,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        finish_reasons: Sequence[str] = (),
    ) -> None:
        """What the provider answered: its model, id, usage and finish reasons."""
        span = self._span
        if model:
            span.set_attribute(GenAI.RESPONSE_MODEL, model[:_MAX_TEXT])
        if response_id:
            span.set_attribute(GenAI.RESPONSE_ID, response_id[:_MAX_TEXT])
        if input_tokens is not None:
            span.set_attribute(GenAI.INPUT_TOKENS, input_tokens)
        if output_tokens is not None:
            span.set_attribute(GenAI.OUTPUT_TOKENS, output_tokens)
        if finish_reasons:
            span.set_attribute(GenAI.FINISH_REASONS, [r[:64] for r in finish_reasons])

    def finish(self, error: BaseException | None = None) -> None:
        if not self._ended:
            self._span.set_attribute("oneflow.outcome", outcome_of(error))
        super().finish(error)
