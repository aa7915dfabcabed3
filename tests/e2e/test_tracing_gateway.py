"""W3C trace context through the running gateway, up to the fake provider.

A caller's `traceparent` is continued by the gateway's server span, and the request the
gateway sends upstream carries a `traceparent` in the caller's trace whose parent is the span
of that upstream attempt. Spans go to an in-memory exporter.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from oneflow_fakes import FakeProviders
from tests.support.resilience_world import Resilient, resilient_gateway

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"
CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def fakes() -> Iterator[FakeProviders]:
    with FakeProviders() as server:
        yield server


def _spans(world: Resilient, exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    assert world.app is not None
    assert world.app.state.services.telemetry.tracing.force_flush()
    return list(exporter.get_finished_spans())


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_the_provider_receives_the_callers_trace_with_the_attempt_as_parent(
    fakes: FakeProviders, tmp_path: Path, stream: bool
) -> None:
    fakes.reset()
    exporter = InMemorySpanExporter()
    with resilient_gateway(fakes, tmp_path, span_exporter=exporter) as world:
        response = world.http.post(
            "/v1/chat/completions",
            json={**CHAT, "stream": stream},
            headers={"traceparent": TRACEPARENT},
        )
        assert response.status_code == 200, response.text
        spans = _spans(world, exporter)
    (attempt,) = [span for span in spans if span.name == "chat gpt-4o"]
    assert format(attempt.context.trace_id, "032x") == CALLER_TRACE
    (call,) = fakes.calls("openai")
    attempt_id = format(attempt.context.span_id, "016x")
    assert call.headers["traceparent"] == f"00-{CALLER_TRACE}-{attempt_id}-01"


def test_without_tracing_nothing_is_added_upstream(fakes: FakeProviders, tmp_path: Path) -> None:
    fakes.reset()
    with resilient_gateway(fakes, tmp_path) as world:
        response = world.http.post("/v1/chat/completions", json=CHAT)
        assert response.status_code == 200, response.text
    (call,) = fakes.calls("openai")
    assert "traceparent" not in call.headers
