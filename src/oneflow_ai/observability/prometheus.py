"""The Prometheus implementation of :class:`~oneflow_ai.observability.metrics.GatewayMetrics`.

Label children are bound once per label set and cached, so recording a request or an upstream
attempt costs a dictionary lookup and a few increments.
"""

from __future__ import annotations

import os
from decimal import Decimal

from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from sqlalchemy.ext.asyncio import AsyncEngine

from oneflow_ai.domain.money import MICRO_CREDITS_PER_CREDIT
from oneflow_ai.observability._families import (
    BREAKER_STATE,
    BUDGET_ALERTS,
    BUDGET_REJECTIONS,
    CACHE_CREDITS_SAVED,
    CACHE_REQUESTS,
    CREDITS_CHARGED,
    DEPENDENCY_UNREACHABLE,
    FALLBACKS,
    GATEWAY_OVERHEAD,
    HTTP_IN_FLIGHT,
    HTTP_REQUEST_DURATION,
    HTTP_REQUESTS,
    LEDGER_SPOOL_BACKLOG,
    RATE_LIMIT_REJECTIONS,
    TOKENS,
    UPSTREAM_DURATION,
    UPSTREAM_REQUESTS,
    UPSTREAM_RETRIES,
    UPSTREAM_TTFT,
    HttpChildren,
    PoolWatcher,
    UpstreamChildren,
)
from oneflow_ai.observability._fast import fast_add
from oneflow_ai.observability.labels import (
    HTTP_METHODS,
    OTHER,
    OUTCOMES,
    BoundedLabel,
    CatalogLabels,
    breaker_state_value,
)
from oneflow_ai.observability.request_timing import (
    UpstreamTime,
    add_upstream_time,
    start_request_timing,
)

__all__ = ["PrometheusMetrics"]


class _PrometheusHttp:
    """Per-request HTTP metrics with the label children cached by (method, route, status)."""

    __slots__ = ("_children", "_duration", "_in_flight", "_in_flight_add", "_overhead", "_requests")

    def __init__(self, registry: CollectorRegistry) -> None:
        self._requests = HTTP_REQUESTS.register(registry)
        self._duration = HTTP_REQUEST_DURATION.register(registry)
        self._overhead = GATEWAY_OVERHEAD.register(registry)
        self._in_flight = HTTP_IN_FLIGHT.register(registry)
        self._children: dict[tuple[str, str, int], HttpChildren] = {}
        self._in_flight_add = fast_add(self._in_flight)

    def request_started(self) -> UpstreamTime:
        self._in_flight_add(1)
        return start_request_timing()

    def request_finished(
        self, timing: UpstreamTime, method: str, route: str, status: int, seconds: float
    ) -> None:
        self._in_flight_add(-1)
        if method not in HTTP_METHODS:
            method = OTHER
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            labels = (method, route, str(status))
            children = HttpChildren(
                self._requests.labels(*labels),
                self._duration.labels(*labels),
                self._overhead.labels(route),
            )
            self._children[key] = children
        children.count(1)
        children.duration(seconds)
        overhead = seconds - timing.seconds
        children.overhead(overhead if overhead > 0.0 else 0.0)


class PrometheusMetrics:
    """Every OneFlow metric, registered in a registry of this instance's own."""

    def __init__(
        self,
        labels: CatalogLabels,
        *,
        registry: CollectorRegistry | None = None,
        multiproc_dir: str | None = None,
    ) -> None:
        # No `*_created` series: in the text format Prometheus ingests each as one more series.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.multiproc_dir = multiproc_dir
        self._labels = labels
        reg = self.registry
        if multiproc_dir is None:
            ProcessCollector(registry=reg)
            GCCollector(registry=reg)
        self._http = _PrometheusHttp(reg)
        # The families' names, help texts, labels and buckets: the table in _families.py.
        self._upstream_requests = UPSTREAM_REQUESTS.register(reg)
        self._upstream_duration = UPSTREAM_DURATION.register(reg)
        self._ttft = UPSTREAM_TTFT.register(reg)
        self._tokens = TOKENS.register(reg)
        self._credits = CREDITS_CHARGED.register(reg)
        self._fallbacks = FALLBACKS.register(reg)
        self._retries = UPSTREAM_RETRIES.register(reg)
        self._breaker = BREAKER_STATE.register(reg)
        self._rate_limited = RATE_LIMIT_REJECTIONS.register(reg)
        self._budget_rejected = BUDGET_REJECTIONS.register(reg)
        self._cache_requests = CACHE_REQUESTS.register(reg)
        self._cache_saved = CACHE_CREDITS_SAVED.register(reg)
        self._budget_alerts = BUDGET_ALERTS.register(reg)
        self._spool = LEDGER_SPOOL_BACKLOG.register(reg)
        self._unreachable = DEPENDENCY_UNREACHABLE.register(reg)
        self._pool = PoolWatcher(reg, multiprocess=multiproc_dir is not None)
        self._upstream: dict[tuple[str, str], UpstreamChildren] = {}
        self._rate_reasons = BoundedLabel()
        self._budget_reasons = BoundedLabel()
        self._retry_reasons = BoundedLabel(OUTCOMES)
        self._fallback_reasons = BoundedLabel(OUTCOMES)
        for provider in sorted(labels.providers):
            self._breaker.labels(provider).set(0)

    @property
    def enabled(self) -> bool:
        return True

    @property
    def http(self) -> _PrometheusHttp:
        return self._http

    @property
    def labels(self) -> CatalogLabels:
        return self._labels

    def _children(self, provider: str, model: str) -> UpstreamChildren:
        key = (self._labels.provider(provider), self._labels.model(model))
        children = self._upstream.get(key)
        if children is None:
            children = UpstreamChildren(
                key,
                self._upstream_requests,
                self._upstream_duration,
                self._ttft,
                self._tokens,
                self._credits,
            )
            self._upstream[key] = children
        return children

    def observe_upstream(
        self, provider: str, model: str, outcome: str, seconds: float, ttft: float | None = None
    ) -> None:
        """One upstream attempt ended: its outcome (``labels.outcome_of``), duration and the
        time to its first token (streams; ``None`` when nothing arrived). The duration is also
        taken off the current request's gateway overhead."""
        add_upstream_time(seconds)
        children = self._children(provider, model)
        children.outcome(outcome)(1)
        children.duration(seconds)
        if ttft is not None:
            children.ttft(ttft)

    def count_tokens(
        self, provider: str, model: str, input_tokens: int, output_tokens: int
    ) -> None:
        children = self._children(provider, model)
        if input_tokens > 0:
            children.input_tokens(input_tokens)
        if output_tokens > 0:
            children.output_tokens(output_tokens)

    def add_credits(self, provider: str, model: str, micro_credits: int) -> None:
        """Credits settled for a call, given in micro-credits (exact in the ledger, a float
        here: the quotient is rounded once, as ``float`` of the exact ``Decimal`` is)."""
        if micro_credits > 0:
            self._children(provider, model).credits(micro_credits / MICRO_CREDITS_PER_CREDIT)

    def record_fallback(self, from_model: str, to_model: str, reason: str) -> None:
        model = self._labels.model
        self._fallbacks.labels(
            model(from_model), model(to_model), self._fallback_reasons(reason)
        ).inc()

    def record_retry(self, provider: str, reason: str) -> None:
        self._retries.labels(self._labels.provider(provider), self._retry_reasons(reason)).inc()

    def set_breaker_state(self, provider: str, state: str | int) -> None:
        self._breaker.labels(self._labels.provider(provider)).set(breaker_state_value(state))

    def record_rate_limited(self, reason: str) -> None:
        self._rate_limited.labels(self._rate_reasons(reason)).inc()

    def record_budget_rejected(self, reason: str) -> None:
        self._budget_rejected.labels(self._budget_reasons(reason)).inc()

    def record_cache(self, result: str, kind: str = "exact") -> None:
        """One call the response cache looked at (``hit``, ``miss`` or ``bypass``; ``exact``
        or ``semantic``: bounded)."""
        self._cache_requests.labels(result, kind).inc()

    def add_cache_saved(self, credits: Decimal) -> None:
        if credits > 0:
            self._cache_saved.inc(float(credits))

    def record_budget_alert(self, scope: str, metric: str, mode: str) -> None:
        """One budget crossing its limit (the labels come from fixed sets: bounded)."""
        self._budget_alerts.labels(scope, metric, mode).inc()

    def set_ledger_spool_backlog(self, commands: int) -> None:
        self._spool.set(commands)

    def set_dependency_unreachable(self, dependency: str, unreachable: bool) -> None:
        """``dependency`` is one of a fixed few (database, redis): bounded."""
        self._unreachable.labels(dependency).set(1 if unreachable else 0)

    def watch_pool(self, engine: AsyncEngine) -> None:
        """Report the engine's pool connections in use (read at scrape time in one process,
        counted on checkout/checkin across worker processes)."""
        self._pool.watch(engine.sync_engine)

    def render(self, accept: str | None = None) -> tuple[bytes, str]:
        """The exposition for a scrape (all workers' values in multiprocess mode)."""
        registry = self.registry
        if self.multiproc_dir is not None:
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=self.multiproc_dir)  # type: ignore[no-untyped-call]
        encoder, content_type = choose_encoder(accept or "")
        return encoder(registry), content_type

    def metric_names(self) -> frozenset[str]:
        """Names of every family this instance exposes (without sample suffixes)."""
        return frozenset(metric.name for metric in self.registry.collect())

    def close(self) -> None:
        self._pool.close()
        if self.multiproc_dir is not None:
            # Live gauges (in-flight, pool, breaker) of this process stop counting.
            mark_process_dead(os.getpid(), self.multiproc_dir)  # type: ignore[no-untyped-call]
