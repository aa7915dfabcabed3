"""What the edge middleware, metrics and tracing cost per request, in microseconds.

Drives the ASGI stack directly (no sockets, no server) so that only OneFlow's own work is
measured: a trivial inner app answers 200; each variant wraps it differently; the bare app runs
in the same process as the baseline. Also times the metric calls the pipeline makes per
upstream attempt. Times are the CPU time of the measuring thread (the machines are shared, and
waiting for a core is not the code's cost), the best of several runs.

    .venv/bin/python -m bench.observability_overhead [--requests 100000] [--repeat 5] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import time
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from prometheus_client import CollectorRegistry
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from oneflow_ai.api.middleware import EdgeMiddleware
from oneflow_ai.catalog import packaged_catalog
from oneflow_ai.observability.labels import CatalogLabels
from oneflow_ai.observability.logging import Redactor, configure_logging
from oneflow_ai.observability.metrics import NoopMetrics
from oneflow_ai.observability.prometheus import PrometheusMetrics
from oneflow_ai.observability.tracing import NoopTracing, TracingApi, build_tracing


class _Route:
    path_format = "/v1/chat/completions"


_ROUTE = _Route()
_BODY = b'{"id":"chatcmpl-1","object":"chat.completion"}'
_START: Message = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"application/json"), (b"content-length", b"46")],
}
_END: Message = {"type": "http.response.body", "body": _BODY}


async def inner_app(scope: Scope, receive: Receive, send: Send) -> None:
    scope["route"] = _ROUTE  # what the router does when a route matches
    await send(dict(_START))
    await send(_END)


class _DropExporter(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def _scope() -> dict[str, Any]:
    return {
        "type": "http",
        "method": "POST",
        "path": "/v1/chat/completions",
        "scheme": "http",
        "http_version": "1.1",
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"content-type", b"application/json"),
            (b"content-length", b"120"),
            (b"authorization", b"Bearer sk-oneflow-bench-key-0123456789"),
            (b"traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        ],
    }


async def _receive() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(message: Message) -> None:
    return None


async def _drive(app: ASGIApp, requests: int) -> float:
    template = _scope()
    started = time.thread_time()
    for _ in range(requests):
        await app(dict(template), _receive, _send)
    return (time.thread_time() - started) / requests * 1e6


def _edge(*, metrics: bool, tracing: TracingApi, log: bool) -> ASGIApp:
    http = (
        PrometheusMetrics(CatalogLabels(packaged_catalog()), registry=CollectorRegistry()).http
        if metrics
        else NoopMetrics().http
    )
    return EdgeMiddleware(
        inner_app, max_body_size=10 * 1024 * 1024, log_requests=log, http_metrics=http,
        tracing=tracing,
    )  # fmt: skip


def variants() -> dict[str, Callable[[], ASGIApp]]:
    traced = build_tracing(True, Redactor(), exporter=_DropExporter())
    return {
        "bare app (baseline)": lambda: inner_app,
        "edge, metrics off, tracing off, no access log": lambda: _edge(
            metrics=False, tracing=NoopTracing(), log=False
        ),
        "edge + metrics": lambda: _edge(metrics=True, tracing=NoopTracing(), log=False),
        "edge + metrics + access log": lambda: _edge(metrics=True, tracing=NoopTracing(), log=True),
        "edge + metrics + tracing (sampled, batch export)": lambda: _edge(
            metrics=True, tracing=traced, log=False
        ),
    }


def _time_call(call: Callable[[], None], n: int) -> float:
    started = time.thread_time()
    for _ in range(n):
        call()
    return (time.thread_time() - started) / n * 1e6


def metric_calls(n: int) -> dict[str, float]:
    metrics = PrometheusMetrics(CatalogLabels(packaged_catalog()), registry=CollectorRegistry())
    noop = NoopMetrics()
    return {
        "observe_upstream (with ttft)": _time_call(
            lambda: metrics.observe_upstream("openai", "gpt-4o", "success", 0.8, 0.1), n
        ),
        "count_tokens": _time_call(lambda: metrics.count_tokens("openai", "gpt-4o", 150, 50), n),
        "add_credits": _time_call(lambda: metrics.add_credits("openai", "gpt-4o", 12_500), n),
        "noop observe_upstream": _time_call(
            lambda: noop.observe_upstream("openai", "gpt-4o", "success", 0.8, 0.1), n
        ),
    }


async def run(requests: int, repeat: int) -> dict[str, Any]:
    apps = {name: build() for name, build in variants().items()}
    for app in apps.values():
        await _drive(app, min(requests, 5000))  # warm up: label children bound, caches filled
    results: dict[str, list[float]] = {name: [] for name in apps}
    for _ in range(repeat):  # interleaved, so that a noisy moment hits every variant alike
        for name, app in apps.items():
            results[name].append(await _drive(app, requests))
    # The minimum of several runs: the machine is shared, and noise only ever adds time.
    best = {name: min(values) for name, values in results.items()}
    baseline = best["bare app (baseline)"]
    return {
        "requests_per_run": requests,
        "runs": repeat,
        "per_request_us": {name: round(value, 2) for name, value in best.items()},
        "added_us": {name: round(value - baseline, 2) for name, value in best.items()},
        "metric_calls_us": {k: round(v, 3) for k, v in metric_calls(requests).items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--json", action="store_true", help="print JSON only")
    args = parser.parse_args()
    # Access log lines go to a buffer: the cost of rendering them is measured, not the terminal.
    configure_logging(level="INFO", json=True, stream=io.StringIO())
    report = asyncio.run(run(args.requests, args.repeat))
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{args.requests} requests per run, best of {args.repeat} runs (µs per request)")
    width = max(len(name) for name in report["per_request_us"])
    for name, value in report["per_request_us"].items():
        added = report["added_us"][name]
        print(f"  {name:<{width}}  {value:8.2f}   +{added:.2f}")
    print("metric calls per upstream attempt (µs per call)")
    for name, value in report["metric_calls_us"].items():
        print(f"  {name:<{width}}  {value:8.3f}")


if __name__ == "__main__":
    main()
