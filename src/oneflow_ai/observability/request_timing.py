"""Time a request spent waiting on upstream providers, so the gateway's own share is known.

The edge middleware starts an :class:`UpstreamTime` per request (when metrics are on); each
:class:`~oneflow_ai.observability.telemetry.UpstreamAttempt` adds its duration to it. At the end
``oneflow_gateway_overhead_seconds`` records the request's duration minus that time: the
latency OneFlow itself adds, which is what its latency objectives are about (an upstream model
taking seconds to answer is not the gateway being slow).

A context variable carries it: every request runs in a task of its own, and the tasks a
response starts (a streamed body) see the same object.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Final

__all__ = ["UpstreamTime", "add_upstream_time", "start_request_timing"]


class UpstreamTime:
    """Seconds of upstream waiting within one request (attempts added up)."""

    __slots__ = ("seconds",)

    def __init__(self) -> None:
        self.seconds = 0.0


_CURRENT: Final[ContextVar[UpstreamTime | None]] = ContextVar("oneflow_upstream_time", default=None)


def start_request_timing() -> UpstreamTime:
    """A fresh counter for the current request (called by the edge middleware)."""
    timing = UpstreamTime()
    _CURRENT.set(timing)
    return timing


def add_upstream_time(seconds: float) -> None:
    """Add one upstream attempt's duration to the current request (no-op outside one)."""
    timing = _CURRENT.get()
    if timing is not None:
        timing.seconds += seconds
