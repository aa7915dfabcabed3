"""Per-request recording without prometheus-client's per-call checks.

``Counter.inc``, ``Gauge.inc`` and ``Histogram.observe`` check on every call that they are a
label child, then update a value object (``MutexValue`` in one process, ``MmapedValue`` in
multiprocess mode). For the children OneFlow binds once and reuses, the check is already known
to pass; these helpers return a function that updates the value objects directly (the bucket
found by bisection), which about halves the cost of a request's metrics.

They read prometheus-client's internal attributes (pinned version); when those are not as
expected they fall back to the public methods, and ``tests/observability`` checks both that the
fast path is taken and that it records exactly what the public methods record.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

__all__ = ["fast_add", "fast_observe"]


def _bound_child(child: Counter | Gauge | Histogram) -> bool:
    """Whether ``child`` is a label child (or a metric without labels): one that records."""
    observable = getattr(child, "_is_observable", None)
    return callable(observable) and bool(observable())


def fast_add(child: Counter | Gauge) -> Callable[[float], None]:
    """``add(amount)``: increase a counter child, or move a gauge by ``amount`` (may be < 0
    for a gauge)."""
    inc = getattr(getattr(child, "_value", None), "inc", None)
    if callable(inc) and _bound_child(child):
        add: Callable[[float], None] = inc
        return add
    return child.inc  # Gauge.inc accepts negative amounts


def fast_observe(child: Histogram) -> Callable[[float], None]:
    """``observe(amount)`` for a histogram child."""
    total: Any = getattr(child, "_sum", None)
    buckets: Any = getattr(child, "_buckets", None)
    bounds: Any = getattr(child, "_upper_bounds", None)
    usable = (
        _bound_child(child)
        and callable(getattr(total, "inc", None))
        and isinstance(buckets, list)
        and isinstance(bounds, list)
        and len(buckets) == len(bounds) > 0
        and bounds[-1] == math.inf
        and all(callable(getattr(bucket, "inc", None)) for bucket in buckets)
    )
    if not usable:
        return child.observe
    add_to_sum: Callable[[float], None] = total.inc
    add_to_bucket: tuple[Callable[[float], None], ...] = tuple(b.inc for b in buckets)
    upper_bounds = tuple(float(bound) for bound in bounds)

    def observe(amount: float) -> None:
        add_to_sum(amount)
        # The first bucket whose upper bound is >= amount, as Histogram.observe picks it.
        add_to_bucket[bisect_left(upper_bounds, amount)](1)

    return observe
