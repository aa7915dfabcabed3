"""Usage analytics: totals of requests, tokens, money, errors and latency, filtered and grouped.

>>> report = await query_usage(engine, UsageQuery(start, end, group_by=("model", "day")))

Whole hours come from the hourly rollups, the partial hours at either end of the range from
the usage records themselves, so totals are exact for any range. Latency percentiles are
estimated from a histogram (bucket bounds in :data:`LATENCY_BUCKETS_MS`), interpolating
linearly inside the bucket that holds the percentile: the estimate always lies in the same
bucket as the true value (bucket bounds grow by at most 2x; from 20 ms on by at most 1.5x).
Averages are exact. Times are UTC; days are UTC days.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Final

from sqlalchemy.ext.asyncio import AsyncEngine

from oneflow_ai.domain.money import micro_credits_to_credits, micro_credits_to_usd
from oneflow_ai.storage.tables import LATENCY_BUCKETS_MS, ROLLUP_COUNTERS
from oneflow_ai.storage.usage_store import (
    UsageFilter,
    aggregate_records,
    aggregate_rollups,
    as_utc,
    bucket_hour,
)

__all__ = [
    "CSV_METRICS",
    "DIMENSIONS",
    "TIME_DIMENSIONS",
    "UsageGroup",
    "UsageQuery",
    "UsageReport",
    "UsageTotals",
    "percentile_from_histogram",
    "query_usage",
]

#: What a report can be grouped by (and, except the time ones, filtered on).
DIMENSIONS: Final = ("project", "user", "key", "model", "provider")
TIME_DIMENSIONS: Final = ("hour", "day")
CSV_METRICS: Final = (
    "requests",
    "errors",
    "input_tokens",
    "output_tokens",
    "images",
    "characters",
    "usd",
    "credits",
    "latency_avg_ms",
    "latency_p50_ms",
    "latency_p95_ms",
    "latency_p99_ms",
    "ttft_avg_ms",
    "cached_input_tokens",
    "reasoning_tokens",
    "fallback_requests",
    "cache_hits",
    "audio_seconds",
    "cache_write_5m_tokens",
    "cache_write_1h_tokens",
    "cache_hit_rate",
    "credits_saved",
)
_COLUMN = {"project": "project_id", "user": "user_id", "key": "key_id"}
_FIRST_BUCKET = ROLLUP_COUNTERS.index("lat_le_5")
_COUNTERS = len(ROLLUP_COUNTERS)


@dataclass(frozen=True, slots=True)
class UsageQuery:
    """``[start, end)`` with optional exact-match filters, grouped by ``group_by``."""

    start: datetime
    end: datetime
    project_id: str | None = None
    user_id: str | None = None
    key_id: str | None = None
    model: str | None = None
    provider: str | None = None
    group_by: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if as_utc(self.end) <= as_utc(self.start):
            raise ValueError("the time range is empty: 'to' must be after 'from'")
        unknown = [g for g in self.group_by if g not in DIMENSIONS + TIME_DIMENSIONS]
        if unknown:
            raise ValueError(
                f"cannot group by {unknown[0]!r}: use {', '.join(DIMENSIONS + TIME_DIMENSIONS)}"
            )
        if len(set(self.group_by)) != len(self.group_by):
            raise ValueError("group_by names a dimension twice")
        if set(TIME_DIMENSIONS) <= set(self.group_by):
            raise ValueError("group by hour or by day, not both")

    @property
    def filters(self) -> UsageFilter:
        return UsageFilter(
            project_id=self.project_id,
            user_id=self.user_id,
            key_id=self.key_id,
            model=self.model,
            provider=self.provider,
        )

    @property
    def time_group(self) -> str | None:
        return next((g for g in self.group_by if g in TIME_DIMENSIONS), None)

    @property
    def dimensions(self) -> tuple[str, ...]:
        return tuple(g for g in self.group_by if g in DIMENSIONS)


def percentile_from_histogram(histogram: Sequence[int], q: float) -> float | None:
    """The ``q`` quantile (0 < q <= 1) of a latency histogram, interpolated in its bucket."""
    total = sum(histogram)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for index, count in enumerate(histogram):
        if count and seen + count >= rank:
            lower = 0 if index == 0 else LATENCY_BUCKETS_MS[index - 1]
            if index >= len(LATENCY_BUCKETS_MS):
                return float(lower)  # slower than the last bound: report the bound
            upper = LATENCY_BUCKETS_MS[index]
            return lower + (upper - lower) * (rank - seen) / count
        seen += count
    return float(LATENCY_BUCKETS_MS[-1])


@dataclass(frozen=True, slots=True)
class UsageTotals:
    """The counters of one group (or of the whole report)."""

    counters: tuple[int, ...] = (0,) * _COUNTERS

    def __getitem__(self, name: str) -> int:
        """A counter by its rollup column name (``"input_tokens"``, ``"lat_le_100"``, ...)."""
        return self.counters[ROLLUP_COUNTERS.index(name)]

    @property
    def requests(self) -> int:
        return self.counters[0]

    @property
    def errors(self) -> int:
        return self.counters[1]

    @property
    def micro_credits(self) -> int:
        return self.counters[6]

    @property
    def histogram(self) -> tuple[int, ...]:
        return self.counters[_FIRST_BUCKET:]

    def latency_percentile(self, q: float) -> float | None:
        return percentile_from_histogram(self.histogram, q)

    @property
    def latency_avg_ms(self) -> float | None:
        count, total = self.counters[7], self.counters[8]
        return total / count if count else None

    @property
    def ttft_avg_ms(self) -> float | None:
        count, total = self.counters[9], self.counters[10]
        return total / count if count else None

    def __add__(self, other: UsageTotals) -> UsageTotals:
        return UsageTotals(tuple(a + b for a, b in zip(self.counters, other.counters, strict=True)))

    def as_dict(self) -> dict[str, object]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "input_tokens": self.counters[2],
            "output_tokens": self.counters[3],
            "images": self.counters[4],
            "characters": self.counters[5],
            "usd": f"{micro_credits_to_usd(self.micro_credits):f}",
            "credits": f"{micro_credits_to_credits(self.micro_credits):f}",
            "latency_ms": {
                "avg": _round(self.latency_avg_ms),
                "p50": _round(self.latency_percentile(0.50)),
                "p95": _round(self.latency_percentile(0.95)),
                "p99": _round(self.latency_percentile(0.99)),
            },
            "ttft_ms": {"avg": _round(self.ttft_avg_ms)},
            "cached_input_tokens": self["cached_input_tokens"],
            "reasoning_tokens": self["reasoning_tokens"],
            "cache_write_5m_tokens": self["cache_write_5m_tokens"],
            "cache_write_1h_tokens": self["cache_write_1h_tokens"],
            "fallback_requests": self["fallback_requests"],
            "cache_hits": self["cache_hits"],
            "audio_seconds": self["audio_seconds"],
            "cache_hit_rate": _rate(self["cache_hits"], self.requests),
            "credits_saved": f"{micro_credits_to_credits(self['credits_saved']):f}",
        }


def _rate(part: int, whole: int) -> float | None:
    return None if whole == 0 else round(part / whole, 4)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


@dataclass(frozen=True, slots=True)
class UsageGroup:
    """One group: its key (dimension -> value, ``None`` for "none") and its totals."""

    key: dict[str, str | None]
    totals: UsageTotals

    def as_dict(self) -> dict[str, object]:
        return {**self.key, **self.totals.as_dict()}


@dataclass(frozen=True, slots=True)
class UsageReport:
    query: UsageQuery
    groups: tuple[UsageGroup, ...]
    totals: UsageTotals = field(default_factory=UsageTotals)

    def as_dict(self) -> dict[str, object]:
        q = self.query
        filters = {
            name: value
            for name, value in zip(
                DIMENSIONS, (q.project_id, q.user_id, q.key_id, q.model, q.provider), strict=True
            )
            if value is not None
        }
        return {
            "object": "usage",
            "from": _iso(q.start),
            "to": _iso(q.end),
            "filters": filters,
            "group_by": list(q.group_by),
            "totals": self.totals.as_dict(),
            "groups": [group.as_dict() for group in self.groups],
            "latency_percentiles": "estimated from a histogram with bucket bounds (ms) "
            + ", ".join(str(b) for b in LATENCY_BUCKETS_MS),
        }

    def csv_rows(self) -> list[list[str]]:
        """A header row, then one row per group (one row of totals when ungrouped)."""
        names = list(self.query.group_by)
        rows = [[*names, *CSV_METRICS]]
        groups = self.groups if names else (UsageGroup({}, self.totals),)
        for group in groups:
            data = group.totals.as_dict()
            latency = data["latency_ms"]
            assert isinstance(latency, dict)
            ttft = data["ttft_ms"]
            assert isinstance(ttft, dict)
            flat = {
                **data,
                **{f"latency_{name}_ms": value for name, value in latency.items()},
                "ttft_avg_ms": ttft["avg"],
            }
            values = [flat[metric] for metric in CSV_METRICS]
            rows.append(
                [
                    *(group.key.get(n) or "" for n in names),
                    *("" if v is None else str(v) for v in values),
                ]
            )
        return rows

    def to_csv(self) -> str:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows(self.csv_rows())
        return buffer.getvalue()


def _iso(value: datetime) -> str:
    return as_utc(value).isoformat().replace("+00:00", "Z")


def _time_label(time_group: str, hour: int) -> str:
    """``2026-01-02T03:00:00Z`` for an hour, ``2026-01-02`` for a day."""
    if time_group == "hour":
        return _iso(_at(hour))
    return (date(1970, 1, 1) + timedelta(days=hour // 24)).isoformat()


async def query_usage(engine: AsyncEngine, query: UsageQuery) -> UsageReport:
    """Run ``query``; see the module documentation for how."""
    start, end = as_utc(query.start), as_utc(query.end)
    on_the_hour = start == start.replace(minute=0, second=0, microsecond=0)
    first_whole = bucket_hour(start) + (0 if on_the_hour else 1)
    end_hour = bucket_hour(end)  # the hour holding `end` (whole hours stop before it)
    columns = [_COLUMN.get(d, d) for d in query.dimensions]
    time_group = query.time_group
    merged: _Merged = {}
    async with engine.connect() as connection:
        if first_whole < end_hour:
            rows = await aggregate_rollups(
                connection,
                filters=query.filters,
                dimensions=columns,
                start_hour=first_whole,
                end_hour=end_hour,
                time_group=time_group,
            )
            for key, counters in rows:
                if time_group is not None:
                    index = int(key[-1] or 0)
                    hour = index if time_group == "hour" else index * 24
                    key = (*key[:-1], _time_label(time_group, hour))
                _add(merged, [(key, counters)], None)
        for lower, upper in _partial_hours(start, end, first_whole, end_hour):
            rows = await aggregate_records(
                connection, filters=query.filters, dimensions=columns, start=lower, end=upper
            )
            label = _time_label(time_group, bucket_hour(lower)) if time_group else None
            _add(merged, rows, label)
    return _report(query, merged)


_Merged = dict[tuple[str | None, ...], list[int]]


def _partial_hours(
    start: datetime, end: datetime, first_whole: int, end_hour: int
) -> list[tuple[datetime, datetime]]:
    """The parts of ``[start, end)`` outside whole hours, read from the usage records."""
    if first_whole > end_hour:  # start and end within one hour
        return [(start, end)]
    partial: list[tuple[datetime, datetime]] = []
    if start < _at(first_whole):
        partial.append((start, _at(first_whole)))
    if _at(end_hour) < end:
        partial.append((_at(end_hour), end))
    return partial


def _add(
    merged: _Merged,
    rows: Iterable[tuple[tuple[str | None, ...], tuple[int, ...]]],
    label: str | None,
) -> None:
    """Add each row's counters to its group's in ``merged`` (``label`` appended to the key)."""
    for key, counters in rows:
        if label is not None:
            key = (*key, label)
        total = merged.get(key)
        if total is None:
            merged[key] = list(counters)
        else:
            for i, value in enumerate(counters):
                total[i] += value


def _report(query: UsageQuery, merged: _Merged) -> UsageReport:
    """The groups in report order, their keys in the order asked for, and the totals."""
    time_group = query.time_group
    names = [*query.dimensions, *([time_group] if time_group else [])]
    groups = [
        UsageGroup(dict(zip(names, key, strict=True)), UsageTotals(tuple(counters)))
        for key, counters in merged.items()
    ]
    groups.sort(key=lambda g: _order(g, time_group))
    totals = UsageTotals(
        tuple(sum(column) for column in zip(*(c for c in merged.values()), strict=True))
        if merged
        else (0,) * _COUNTERS
    )
    # Present keys in the order the caller asked for.
    ordered = tuple(
        UsageGroup({name: g.key[name] for name in query.group_by}, g.totals) for g in groups
    )
    return UsageReport(query=query, groups=ordered, totals=totals)


def _order(group: UsageGroup, time_group: str | None) -> tuple[object, ...]:
    when = group.key.get(time_group) or "" if time_group else ""
    rest = tuple(str(v or "") for k, v in group.key.items() if k != time_group)
    return (when, -group.totals.micro_credits, -group.totals.requests, rest)


def _at(hour: int) -> datetime:
    return datetime.fromtimestamp(hour * 3600, UTC)
