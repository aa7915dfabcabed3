"""Logs, metrics and traces of the gateway.

One ``Telemetry`` per app (``telemetry.Telemetry``), built in ``create_app`` and kept in
``Services.telemetry``: ``telemetry.metrics`` (``metrics.GatewayMetrics``: Prometheus, or a no-op
with the same methods) and ``telemetry.tracing`` (``tracing.TracingApi``: OpenTelemetry, or a
no-op). The edge middleware records every HTTP request and opens its server span; the gateway
pipeline reports the rest:

- around each upstream attempt: ``telemetry.upstream_attempt(provider=..., model=...,
  operation="chat", attempt=n, stream=..., max_tokens=...)`` as a context manager (or kept
  open across a stream), then ``first_token()``, ``succeeded(input_tokens=..., output_tokens=...,
  response_model=..., response_id=..., finish_reasons=[...])`` or ``failed(error)``: one call
  records the attempt's metrics (outcome, duration, time to first token, tokens) and its span;
- the upstream request's headers get ``traceparent`` from ``tracing.inject_trace_context``
  (or ``attempt.span.inject``);
- ``metrics.add_credits(provider, model, micro_credits)`` when the ledger settles;
- ``metrics.record_fallback(from_model, to_model, reason)``,
  ``metrics.record_retry(provider, reason)``, ``metrics.set_breaker_state(provider, state)``,
  ``metrics.record_rate_limited(reason)``, ``metrics.record_budget_rejected(reason)``,
  ``metrics.record_budget_alert(scope, metric, mode)`` when a budget reaches its limit;
- ``with tracing.routing(strategy=..., requested_model=...) as span: ...`` and
  ``with tracing.ledger("reserve" | "settle" | "release") as span: ...`` for child spans.
"""
