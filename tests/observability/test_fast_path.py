"""The direct recording path records exactly what prometheus-client's public methods record,
and is the path taken with the pinned prometheus-client."""

from __future__ import annotations

import random

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from oneflow_ai.observability._families import HTTP_DURATION_BUCKETS
from oneflow_ai.observability._fast import fast_add, fast_observe


def _metrics(registry: CollectorRegistry) -> tuple[Counter, Gauge, Histogram]:
    counter = Counter("c_total", "c", ["k"], registry=registry)
    gauge = Gauge("g", "g", registry=registry)
    histogram = Histogram("h_seconds", "h", ["k"], buckets=HTTP_DURATION_BUCKETS, registry=registry)
    return counter, gauge, histogram


def test_fast_path_records_what_the_public_methods_record() -> None:
    rng = random.Random(7)
    amounts = [rng.choice(HTTP_DURATION_BUCKETS) for _ in range(200)]  # exact bounds too
    amounts += [rng.uniform(0, 200) for _ in range(2000)] + [0.0, 1e-9, 1e9]

    public, fast = CollectorRegistry(), CollectorRegistry()
    p_counter, p_gauge, p_histogram = _metrics(public)
    f_counter, f_gauge, f_histogram = _metrics(fast)
    count, move, observe = (
        fast_add(f_counter.labels("x")),
        fast_add(f_gauge),
        fast_observe(f_histogram.labels("x")),
    )
    for n, amount in enumerate(amounts):
        p_counter.labels("x").inc(amount)
        count(amount)
        p_histogram.labels("x").observe(amount)
        observe(amount)
        if n % 3:
            p_gauge.inc(1)
            move(1)
        else:
            p_gauge.dec(2)
            move(-2)

    assert _values(fast) == _values(public)


def _values(registry: CollectorRegistry) -> list[str]:
    text = generate_latest(registry).decode()
    return [line for line in text.splitlines() if "_created" not in line]  # creation times


def test_the_fast_path_is_taken_with_the_pinned_client() -> None:
    registry = CollectorRegistry()
    counter, gauge, histogram = _metrics(registry)
    child = counter.labels("x")
    assert fast_add(child) != child.inc
    assert fast_add(gauge) != gauge.inc
    assert fast_observe(histogram.labels("x")).__name__ == "observe"
    assert fast_observe(histogram.labels("x")) != histogram.labels("x").observe


def test_a_metric_with_labels_but_no_child_keeps_the_public_method() -> None:
    counter, _, histogram = _metrics(CollectorRegistry())
    assert fast_add(counter) == counter.inc  # the parent: the public method raises as it should
    assert fast_observe(histogram) == histogram.observe
