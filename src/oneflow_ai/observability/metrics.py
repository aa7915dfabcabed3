"""Prometheus metrics of one gateway application: a registry per app, no module globals.

:func:`build_metrics` returns either ``PrometheusMetrics`` (module ``prometheus``) or
:class:`NoopMetrics`; both have the same methods, so the hot path calls them without asking
whether metrics are on.

The seed's ``http_requests_total`` and ``http_request_duration_seconds`` (method, route
template, status) are recorded by the edge middleware through :attr:`GatewayMetrics.http`. The
gateway pipeline records upstream attempts, tokens, credits, fallbacks, retries, breaker states
and rejections through the typed methods below. Label values are bounded (see ``labels``).

Several worker processes: when ``PROMETHEUS_MULTIPROC_DIR`` is set (``oneflow serve --workers
N`` sets it up), prometheus-client keeps values in files there and ``/metrics`` aggregates every
worker's files; gauges say how (``livesum`` for in-flight requests and pool connections,
``livemax`` for breaker states).
"""

from __future__ import annotations

import os
from decimal import Decimal
from typing import Protocol

from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncEngine

from oneflow_ai.observability.labels import CatalogLabels
from oneflow_ai.observability.prometheus import PrometheusMetrics
from oneflow_ai.observability.request_timing import UpstreamTime

__all__ = [
    "MULTIPROC_ENV",
    "GatewayMetrics",
    "HttpMetrics",
    "NoopMetrics",
    "PrometheusMetrics",
    "build_metrics",
    "multiprocess_dir",
]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> str | None:
    """The multiprocess directory when prometheus-client runs in multiprocess mode."""
    return os.environ.get(MULTIPROC_ENV) or None


class HttpMetrics(Protocol):
    """What the edge middleware records per HTTP request."""

    def request_started(self) -> UpstreamTime:
        """A request arrived: count it in flight; the returned object collects the time its
        upstream attempts take."""
        ...

    def request_finished(
        self, timing: UpstreamTime, method: str, route: str, status: int, seconds: float
    ) -> None: ...


class GatewayMetrics(Protocol):
    """The metrics API the gateway calls; :class:`NoopMetrics` implements it doing nothing."""

    @property
    def enabled(self) -> bool: ...

    @property
    def http(self) -> HttpMetrics: ...

    def observe_upstream(
        self, provider: str, model: str, outcome: str, seconds: float, ttft: float | None = None
    ) -> None: ...

    def count_tokens(
        self, provider: str, model: str, input_tokens: int, output_tokens: int
    ) -> None: ...

    def add_credits(self, provider: str, model: str, micro_credits: int) -> None: ...

    def record_fallback(self, from_model: str, to_model: str, reason: str) -> None: ...

    def record_retry(self, provider: str, reason: str) -> None: ...

    def set_breaker_state(self, provider: str, state: str | int) -> None: ...

    def record_rate_limited(self, reason: str) -> None: ...

    def record_budget_rejected(self, reason: str) -> None: ...

    def record_cache(self, result: str, kind: str = "exact") -> None: ...

    def add_cache_saved(self, credits: Decimal) -> None: ...

    def record_budget_alert(self, scope: str, metric: str, mode: str) -> None: ...

    def set_ledger_spool_backlog(self, commands: int) -> None: ...

    def set_dependency_unreachable(self, dependency: str, unreachable: bool) -> None: ...

    def watch_pool(self, engine: AsyncEngine) -> None: ...

    def render(self, accept: str | None = None) -> tuple[bytes, str]: ...

    def close(self) -> None: ...


class _NoopHttp:
    __slots__ = ()

    def request_started(self) -> UpstreamTime:
        return _NOOP_TIMING

    def request_finished(
        self, timing: UpstreamTime, method: str, route: str, status: int, seconds: float
    ) -> None:
        return None


_NOOP_TIMING = UpstreamTime()

_NOOP_HTTP = _NoopHttp()


class NoopMetrics:
    """Metrics switched off (``ENABLE_METRICS=false``): the same API, doing nothing."""

    __slots__ = ()

    @property
    def enabled(self) -> bool:
        return False

    @property
    def http(self) -> HttpMetrics:
        return _NOOP_HTTP

    def observe_upstream(
        self, provider: str, model: str, outcome: str, seconds: float, ttft: float | None = None
    ) -> None:
        return None

    def count_tokens(
        self, provider: str, model: str, input_tokens: int, output_tokens: int
    ) -> None:
        return None

    def add_credits(self, provider: str, model: str, micro_credits: int) -> None:
        return None

    def record_fallback(self, from_model: str, to_model: str, reason: str) -> None:
        return None

    def record_retry(self, provider: str, reason: str) -> None:
        return None

    def set_breaker_state(self, provider: str, state: str | int) -> None:
        return None

    def record_rate_limited(self, reason: str) -> None:
        return None

    def record_budget_rejected(self, reason: str) -> None:
        return None

    def record_cache(self, result: str, kind: str = "exact") -> None:
        return None

    def add_cache_saved(self, credits: Decimal) -> None:
        return None

    def record_budget_alert(self, scope: str, metric: str, mode: str) -> None:
        return None

    def set_ledger_spool_backlog(self, commands: int) -> None:
        return None

    def set_dependency_unreachable(self, dependency: str, unreachable: bool) -> None:
        return None

    def watch_pool(self, engine: AsyncEngine) -> None:
        return None

    def render(self, accept: str | None = None) -> tuple[bytes, str]:
        return b"", "text/plain; charset=utf-8"

    def close(self) -> None:
        return None


def build_metrics(
    enabled: bool, labels: CatalogLabels, *, registry: CollectorRegistry | None = None
) -> GatewayMetrics:
    """The metrics of one app: Prometheus when ``enabled``, else the no-op object."""
    if not enabled:
        return NoopMetrics()
    return PrometheusMetrics(labels, registry=registry, multiproc_dir=multiprocess_dir())
