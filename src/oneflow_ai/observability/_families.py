"""Building blocks of :mod:`oneflow_ai.observability.metrics`: buckets, the table of metric
families (name, help, labels, buckets) the Prometheus implementation registers, cached label
children, and the database pool gauge."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.pool import Pool

from oneflow_ai.observability._fast import fast_add, fast_observe
from oneflow_ai.observability.labels import OUTCOMES

__all__ = [
    "BREAKER_STATE",
    "BUDGET_ALERTS",
    "BUDGET_REJECTIONS",
    "CACHE_CREDITS_SAVED",
    "CACHE_REQUESTS",
    "CREDITS_CHARGED",
    "DEPENDENCY_UNREACHABLE",
    "FALLBACKS",
    "GATEWAY_OVERHEAD",
    "HTTP_DURATION_BUCKETS",
    "HTTP_IN_FLIGHT",
    "HTTP_REQUESTS",
    "HTTP_REQUEST_DURATION",
    "LEDGER_SPOOL_BACKLOG",
    "OVERHEAD_BUCKETS",
    "POOL_IN_USE",
    "RATE_LIMIT_REJECTIONS",
    "TOKENS",
    "TTFT_BUCKETS",
    "UPSTREAM_DURATION",
    "UPSTREAM_DURATION_BUCKETS",
    "UPSTREAM_REQUESTS",
    "UPSTREAM_RETRIES",
    "UPSTREAM_TTFT",
    "CounterFamily",
    "GaugeFamily",
    "HistogramFamily",
    "HttpChildren",
    "PoolWatcher",
    "UpstreamChildren",
]

# 0.5 s and 1 s are bucket bounds so that the SLOs (p95 < 500 ms, p99 < 1 s) are exact.
HTTP_DURATION_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
)  # fmt: skip
UPSTREAM_DURATION_BUCKETS = (
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0,
)  # fmt: skip
OVERHEAD_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip
TTFT_BUCKETS = (
    0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0,
)  # fmt: skip

POOL_IN_USE = "oneflow_db_pool_connections_in_use"
_POOL_HELP = "Database connections checked out of the pool"


@dataclass(frozen=True, slots=True)
class CounterFamily:
    name: str
    help: str
    labels: tuple[str, ...] = ()

    def register(self, registry: CollectorRegistry) -> Counter:
        return Counter(self.name, self.help, self.labels, registry=registry)


@dataclass(frozen=True, slots=True)
class HistogramFamily:
    name: str
    help: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...]

    def register(self, registry: CollectorRegistry) -> Histogram:
        return Histogram(self.name, self.help, self.labels, buckets=self.buckets, registry=registry)


@dataclass(frozen=True, slots=True)
class GaugeFamily:
    """A gauge; ``mode`` is how a scrape merges the worker processes' values."""

    name: str
    help: str
    labels: tuple[str, ...]
    mode: Literal["livesum", "livemax"]

    def register(self, registry: CollectorRegistry) -> Gauge:
        return Gauge(
            self.name, self.help, self.labels, registry=registry, multiprocess_mode=self.mode
        )


# The families, in the order a scrape lists them. HTTP requests, by method, route and status:
_HTTP = ("method", "route", "status")
HTTP_REQUESTS = CounterFamily("http_requests_total", "HTTP requests answered", _HTTP)
HTTP_REQUEST_DURATION = HistogramFamily(
    "http_request_duration_seconds",
    "Time from the request's arrival to the end of its response body",
    _HTTP,
    HTTP_DURATION_BUCKETS,
)
GATEWAY_OVERHEAD = HistogramFamily(
    "oneflow_gateway_overhead_seconds",
    "Request duration minus the time spent waiting on upstream providers",
    ("route",),
    OVERHEAD_BUCKETS,
)
HTTP_IN_FLIGHT = GaugeFamily("http_requests_in_flight", "HTTP requests being served", (), "livesum")

# Upstream attempts, by provider and model:
_PM = ("provider", "model")
UPSTREAM_REQUESTS = CounterFamily(
    "oneflow_upstream_requests_total",
    "Upstream attempts by provider, model and outcome",
    (*_PM, "outcome"),
)
UPSTREAM_DURATION = HistogramFamily(
    "oneflow_upstream_request_duration_seconds",
    "Duration of one upstream attempt (the whole answer, streams included)",
    _PM,
    UPSTREAM_DURATION_BUCKETS,
)
UPSTREAM_TTFT = HistogramFamily(
    "oneflow_upstream_time_to_first_token_seconds",
    "Time from sending an upstream request to its first content",
    _PM,
    TTFT_BUCKETS,
)
TOKENS = CounterFamily("oneflow_tokens_total", "Tokens billed, by direction (type)", (*_PM, "type"))
CREDITS_CHARGED = CounterFamily(
    "oneflow_credits_charged_total", "Credits charged (1 USD = 100 credits)", _PM
)

# Routing, resilience, limits, the cache, budgets and the dependencies:
FALLBACKS = CounterFamily(
    "oneflow_fallbacks_total",
    "Requests moved from one model to the next in the fallback chain",
    ("from_model", "to_model", "reason"),
)
UPSTREAM_RETRIES = CounterFamily(
    "oneflow_upstream_retries_total",
    "Upstream attempts repeated on the same provider",
    ("provider", "reason"),
)
BREAKER_STATE = GaugeFamily(
    "oneflow_circuit_breaker_state",
    "Circuit breaker per provider: 0 closed, 1 half-open, 2 open",
    ("provider",),
    "livemax",
)
RATE_LIMIT_REJECTIONS = CounterFamily(
    "oneflow_rate_limit_rejections_total", "Requests refused by rate limits", ("reason",)
)
BUDGET_REJECTIONS = CounterFamily(
    "oneflow_budget_rejections_total",
    "Requests refused because credits, budgets or quotas could not cover them",
    ("reason",),
)
CACHE_REQUESTS = CounterFamily(
    "oneflow_cache_requests_total",
    "Calls the response cache looked at, by result (hit, miss, bypass) and kind (exact; "
    "semantic: a hit the semantic cache found)",
    ("result", "kind"),
)
CACHE_CREDITS_SAVED = CounterFamily(
    "oneflow_cache_credits_saved_total",
    "Credits callers did not pay because the response cache answered",
)
BUDGET_ALERTS = CounterFamily(
    "oneflow_budget_alerts_total",
    "Budgets and quotas whose usage reached their limit in a period (soft ones alert "
    "only; hard ones refuse from then on)",
    ("scope", "metric", "mode"),
)
LEDGER_SPOOL_BACKLOG = GaugeFamily(
    "oneflow_ledger_spool_backlog",
    "Ledger settlements waiting in the spool for the database (replayed when it answers)",
    (),
    "livesum",
)
DEPENDENCY_UNREACHABLE = GaugeFamily(
    "oneflow_dependency_unreachable",
    "1 while the gateway finds a dependency (database, redis) unreachable",
    ("dependency",),
    "livemax",
)


class HttpChildren:
    """The recording functions of one (method, route, status), bound once."""

    __slots__ = ("count", "duration", "overhead")

    def __init__(self, requests: Counter, duration: Histogram, overhead: Histogram) -> None:
        self.count = fast_add(requests)
        self.duration = fast_observe(duration)
        self.overhead = fast_observe(overhead)


class UpstreamChildren:
    """The recording functions of one (provider, model) pair, bound once and reused."""

    __slots__ = (
        "_by_outcome",
        "_requests",
        "credits",
        "duration",
        "input_tokens",
        "key",
        "output_tokens",
        "ttft",
    )

    def __init__(
        self,
        key: tuple[str, str],
        requests: Counter,
        duration: Histogram,
        ttft: Histogram,
        tokens: Counter,
        credits: Counter,
    ) -> None:
        self.key = key
        self._requests = requests
        self._by_outcome: dict[str, Callable[[float], None]] = {}
        self.duration = fast_observe(duration.labels(*key))
        self.ttft = fast_observe(ttft.labels(*key))
        self.input_tokens = fast_add(tokens.labels(*key, "input"))
        self.output_tokens = fast_add(tokens.labels(*key, "output"))
        self.credits = fast_add(credits.labels(*key))

    def outcome(self, outcome: str) -> Callable[[float], None]:
        """``add`` for the attempts counter of ``outcome`` (unknown ones count as
        ``internal_error``)."""
        add = self._by_outcome.get(outcome)
        if add is None:
            label = outcome if outcome in OUTCOMES else "internal_error"
            add = fast_add(self._requests.labels(*self.key, label))
            self._by_outcome[outcome if outcome in OUTCOMES else label] = add
        return add


class _PoolCollector(Collector):
    """Reads the pool's checked-out count at scrape time (one process)."""

    def __init__(self) -> None:
        self.engine: Engine | None = None

    def describe(self) -> Iterable[Metric]:
        return [GaugeMetricFamily(POOL_IN_USE, _POOL_HELP)]

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(POOL_IN_USE, _POOL_HELP)
        engine = self.engine  # its pool, not a saved one: `dispose()` replaces the pool
        checkedout = getattr(engine.pool, "checkedout", None) if engine is not None else None
        if checkedout is not None:
            family.add_metric([], float(checkedout()))
        return [family]


class PoolWatcher:
    """The pool gauge: a scrape-time callback in one process; with several worker processes
    (whose pools a scrape of one worker cannot read) a ``livesum`` gauge moved by the pool's
    checkout and checkin events."""

    def __init__(self, registry: CollectorRegistry, *, multiprocess: bool) -> None:
        self._pool: Pool | None = None
        self._collector: _PoolCollector | None = None
        self._gauge: Gauge | None = None
        if multiprocess:
            self._gauge = Gauge(
                POOL_IN_USE, _POOL_HELP, registry=registry, multiprocess_mode="livesum"
            )
        else:
            self._collector = _PoolCollector()
            registry.register(self._collector)

    def watch(self, engine: Engine) -> None:
        self.close()
        pool = self._pool = engine.pool
        if self._collector is not None:
            self._collector.engine = engine
        else:
            # A disposed engine's new pool shares these listeners.
            event.listen(pool, "checkout", self._checked_out)
            event.listen(pool, "checkin", self._checked_in)

    def _checked_out(self, *_: Any) -> None:
        if self._gauge is not None:
            self._gauge.inc()

    def _checked_in(self, *_: Any) -> None:
        if self._gauge is not None:
            self._gauge.dec()

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        if self._collector is not None:
            self._collector.engine = None
        else:
            event.remove(pool, "checkout", self._checked_out)
            event.remove(pool, "checkin", self._checked_in)
