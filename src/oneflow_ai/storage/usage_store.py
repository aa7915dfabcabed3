"""Usage records and their hourly rollups: writing them in batches, and aggregating them.

Every batch of records is inserted into ``usage_records`` and folded, in the same transaction,
into two hourly rollups (``usage_hourly`` per project/model/provider and
``usage_hourly_by_key`` per project/user/key/model/provider) with one upsert per distinct
rollup row. Aggregates over whole hours read the rollups (a few rows per hour instead of every
request); the partial hours at the edges of a time range read the records themselves. The
rollups can be rebuilt from the records at any time (:func:`rebuild_rollups`), and a test
checks that the incremental ones equal the rebuilt ones.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from operator import add, attrgetter, itemgetter
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Integer,
    Table,
    and_,
    case,
    cast,
    delete,
    func,
    insert,
    literal,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import Executable

from oneflow_ai.domain.usage_record import RequestRoute, UsageRecord
from oneflow_ai.storage.dialect import chunks
from oneflow_ai.storage.direct_sql import run
from oneflow_ai.storage.tables import (
    LATENCY_BUCKET_COLUMNS,
    LATENCY_BUCKETS_MS,
    ROLLUP_COUNTERS,
    UsageRecordRow,
    table_of,
    usage_hourly,
    usage_hourly_by_key,
)

__all__ = [
    "DIMENSIONS",
    "KEY_DIMENSIONS",
    "UsageFilter",
    "aggregate_records",
    "aggregate_rollups",
    "as_utc",
    "bucket_hour",
    "insert_usage",
    "rebuild_rollups",
    "usage_writes",
]

records = table_of(UsageRecordRow)
#: Dimensions analytics can filter and group by, as column names.
DIMENSIONS = ("project_id", "user_id", "key_id", "model", "provider")
#: Dimensions only the per-key rollup carries.
KEY_DIMENSIONS = frozenset({"user_id", "key_id"})
_HOURLY_DIMENSIONS = ("project_id", "model", "provider")
_COUNTER_INDEX = {name: i for i, name in enumerate(ROLLUP_COUNTERS)}
_FIRST_BUCKET = _COUNTER_INDEX[LATENCY_BUCKET_COLUMNS[0]]
_SAVED = _COUNTER_INDEX["credits_saved"]

Counters = tuple[int, ...]
Key = tuple[str | None, ...]


@dataclass(frozen=True, slots=True)
class UsageFilter:
    """Exact-match filters; ``None`` means any."""

    project_id: str | None = None
    user_id: str | None = None
    key_id: str | None = None
    model: str | None = None
    provider: str | None = None

    def items(self) -> list[tuple[str, str]]:
        return [(dim, value) for dim in DIMENSIONS if (value := getattr(self, dim)) is not None]


def as_utc(value: datetime) -> datetime:
    """``value`` as an aware UTC datetime (SQLite hands back naive UTC)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def bucket_hour(at: datetime) -> int:
    """Hours since 1970-01-01T00:00Z of the hour holding ``at``."""
    return int(as_utc(at).timestamp()) // 3600


def latency_bucket(latency_ms: int) -> int:
    """Index of the histogram bucket of ``latency_ms`` (the last one holds the overflow)."""
    return bisect_left(LATENCY_BUCKETS_MS, latency_ms)


def record_counters(record: UsageRecord) -> list[int]:
    """The rollup counters one record contributes."""
    values = [0] * len(ROLLUP_COUNTERS)
    values[0] = 1
    values[1] = 1 if record.is_error else 0
    values[2] = record.input_tokens
    values[3] = record.output_tokens
    values[4] = record.images
    values[5] = record.characters
    values[6] = record.micro_credits
    if record.latency_ms is not None:
        values[7] = 1
        values[8] = record.latency_ms
        values[_FIRST_BUCKET + latency_bucket(record.latency_ms)] = 1
    if record.ttft_ms is not None:
        values[9] = 1
        values[10] = record.ttft_ms
    if record.route is not None and record.route.fallbacks:
        values[11] = 1
    values[12] = 1 if record.cache_hit else 0
    values[13] = record.cached_input_tokens
    values[14] = record.reasoning_tokens
    values[15] = record.audio_seconds
    values[16] = record.cache_write_5m_tokens
    values[17] = record.cache_write_1h_tokens
    values[_SAVED] = record.credits_saved
    return values


# ---- writing -------------------------------------------------------------------------------


_ROLLUPS = ((usage_hourly, _HOURLY_DIMENSIONS), (usage_hourly_by_key, DIMENSIONS))
_INSERT_RECORDS = insert(records)
_dimensions_of = attrgetter(*DIMENSIONS)
#: Each rollup's dimensions out of a record's DIMENSIONS (always a tuple: two or more).
_ROLLUP_PICKS = tuple(itemgetter(*(DIMENSIONS.index(d) for d in dims)) for _, dims in _ROLLUPS)
assert all(len(dims) > 1 for _, dims in _ROLLUPS)


@cache
def _rollup_upserts(dialect: str) -> tuple[Executable, ...]:
    """``INSERT ... ON CONFLICT DO UPDATE SET counter = counter + excluded.counter`` per rollup,
    built once per dialect (building a statement costs more than running it)."""
    upserts: list[Executable] = []
    for table, dimensions in _ROLLUPS:
        statement = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)
        upserts.append(
            statement.on_conflict_do_update(
                index_elements=["bucket_hour", *dimensions],
                set_={name: table.c[name] + statement.excluded[name] for name in ROLLUP_COUNTERS},
            )
        )
    return tuple(upserts)


def insert_usage(connection: Connection, batch: Sequence[UsageRecord]) -> None:
    """Insert ``batch`` into usage_records and fold it into both hourly rollups."""
    for statement, rows in usage_writes(connection.dialect.name, batch):
        run(connection, statement, rows)


def usage_writes(
    dialect: str, batch: Sequence[UsageRecord]
) -> list[tuple[Executable, list[dict[str, Any]]]]:
    """The statements `insert_usage` runs for ``batch``, with their rows: the records, then
    each rollup's upsert, its rows folded per hour and dimensions (one row each)."""
    if not batch:
        return []
    writes: list[tuple[Executable, list[dict[str, Any]]]] = [
        (_INSERT_RECORDS, [_record_row(r) for r in batch])
    ]
    upserts = _rollup_upserts(dialect)
    # Each record's hour, dimensions and counters, once for both rollups.
    contributions = [
        (bucket_hour(r.occurred_at), tuple(v or "" for v in _dimensions_of(r)), record_counters(r))
        for r in batch
    ]
    for (_, dimensions), pick, upsert in zip(_ROLLUPS, _ROLLUP_PICKS, upserts, strict=True):
        folded: dict[tuple[int, tuple[str, ...]], list[int]] = {}
        for hour, values, counters in contributions:
            key = (hour, pick(values))
            total = folded.get(key)
            folded[key] = counters if total is None else list(map(add, total, counters))
        rows = [
            {
                "bucket_hour": hour,
                **dict(zip(dimensions, dims, strict=True)),
                **dict(zip(ROLLUP_COUNTERS, counters, strict=True)),
            }
            for (hour, dims), counters in sorted(folded.items())
        ]
        writes.extend((upsert, chunk) for chunk in chunks(rows))
    return writes


def _record_row(record: UsageRecord) -> dict[str, Any]:
    return {
        "request_id": record.request_id,
        "occurred_at": as_utc(record.occurred_at),
        "project_id": record.project_id,
        "user_id": record.user_id,
        "key_id": record.key_id,
        "model": record.model,
        "provider": record.provider,
        "status": record.status,
        "error": record.error,
        "stream": record.stream,
        "input_tokens": record.input_tokens,
        "output_tokens": record.output_tokens,
        "images": record.images,
        "characters": record.characters,
        "micro_credits": record.micro_credits,
        "price_table_version": record.price_table_version,
        "estimated": record.estimated,
        "latency_ms": record.latency_ms,
        "ttft_ms": record.ttft_ms,
        "cached_input_tokens": record.cached_input_tokens,
        "reasoning_tokens": record.reasoning_tokens,
        "cache_write_5m_tokens": record.cache_write_5m_tokens,
        "cache_write_1h_tokens": record.cache_write_1h_tokens,
        "cache_hit": record.cache_hit,
        "audio_seconds": record.audio_seconds,
        "credits_saved": record.credits_saved,
        **_route_columns(record.route),
    }


_NO_ROUTE: dict[str, Any] = {
    "model_requested": None,
    "strategy": None,
    "route_reason": None,
    "fallbacks": 0,
    "route_detail": None,
}


def _route_columns(route: RequestRoute | None) -> dict[str, Any]:
    if route is None:
        return _NO_ROUTE
    return {
        "model_requested": route.model_requested,
        "strategy": route.strategy,
        "route_reason": route.reason[:300] if route.reason else None,
        "fallbacks": route.fallbacks,
        "route_detail": route.detail,
    }


# ---- aggregating ---------------------------------------------------------------------------


def _record_aggregates() -> list[ColumnElement[Any]]:
    """One SQL aggregate per rollup counter, over usage_records (same order)."""
    c = records.c
    latency = c.latency_ms
    columns: list[ColumnElement[Any]] = [
        func.count(),
        func.coalesce(func.sum(case((c.status >= 400, 1), else_=0)), 0),
        func.coalesce(func.sum(c.input_tokens), 0),
        func.coalesce(func.sum(c.output_tokens), 0),
        func.coalesce(func.sum(c.images), 0),
        func.coalesce(func.sum(c.characters), 0),
        func.coalesce(func.sum(c.micro_credits), 0),
        func.count(latency),
        func.coalesce(func.sum(latency), 0),
        func.count(c.ttft_ms),
        func.coalesce(func.sum(c.ttft_ms), 0),
        func.coalesce(func.sum(case((c.fallbacks > 0, 1), else_=0)), 0),
        func.coalesce(func.sum(case((c.cache_hit, 1), else_=0)), 0),
        func.coalesce(func.sum(c.cached_input_tokens), 0),
        func.coalesce(func.sum(c.reasoning_tokens), 0),
        func.coalesce(func.sum(c.audio_seconds), 0),
        func.coalesce(func.sum(c.cache_write_5m_tokens), 0),
        func.coalesce(func.sum(c.cache_write_1h_tokens), 0),
        func.coalesce(func.sum(c.credits_saved), 0),
    ]
    lower: int | None = None
    for bound in (*LATENCY_BUCKETS_MS, None):
        if bound is None:
            condition = latency > lower
        elif lower is None:
            condition = latency <= bound
        else:
            condition = and_(latency > lower, latency <= bound)
        columns.append(func.coalesce(func.sum(case((condition, 1), else_=0)), 0))
        lower = bound
    return [
        cast(column, BigInteger).label(name)
        for column, name in zip(columns, ROLLUP_COUNTERS, strict=True)
    ]


def _hour_of(connection: AsyncConnection) -> ColumnElement[int]:
    occurred = records.c.occurred_at
    if connection.dialect.name == "postgresql":
        return cast(func.floor(func.extract("epoch", occurred) / 3600), Integer)
    return cast(func.strftime("%s", occurred), Integer) // 3600


async def aggregate_records(
    connection: AsyncConnection,
    *,
    filters: UsageFilter,
    dimensions: Sequence[str],
    start: datetime,
    end: datetime,
) -> list[tuple[Key, Counters]]:
    """Counters of the records in ``[start, end)`` grouped by ``dimensions``."""
    keys = [records.c[dim] for dim in dimensions]
    statement = (
        select(*keys, *_record_aggregates())
        .where(records.c.occurred_at >= as_utc(start), records.c.occurred_at < as_utc(end))
        .where(*(records.c[dim] == value for dim, value in filters.items()))
        .group_by(*keys)
    )
    result = await connection.execute(statement)
    width = len(keys)
    return [
        (tuple(row[:width]), tuple(int(v) for v in row[width:]))
        for row in result.all()
        if row[width]  # an ungrouped aggregate of nothing is one row of zeros: no group
    ]


async def aggregate_rollups(
    connection: AsyncConnection,
    *,
    filters: UsageFilter,
    dimensions: Sequence[str],
    start_hour: int,
    end_hour: int,
    time_group: str | None = None,
) -> list[tuple[Key, Counters]]:
    """Counters of the whole hours ``[start_hour, end_hour)`` grouped by ``dimensions`` and,
    with ``time_group`` ``"hour"`` or ``"day"``, by hour or UTC day (its index appended to
    the key as a string of the hour/day number)."""
    needs_keys = KEY_DIMENSIONS & {*dimensions, *(dim for dim, _ in filters.items())}
    table: Table = usage_hourly_by_key if needs_keys else usage_hourly
    keys: list[ColumnElement[Any]] = [table.c[dim] for dim in dimensions]
    if time_group == "hour":
        keys.append(table.c.bucket_hour)
    elif time_group == "day":
        keys.append((table.c.bucket_hour // literal(24)).label("bucket_day"))
    statement = (
        select(
            *keys,
            # SUM(bigint) is NUMERIC on PostgreSQL: decoding it is most of the cost of a report
            *(cast(func.sum(table.c[name]), BigInteger).label(name) for name in ROLLUP_COUNTERS),
        )
        .where(table.c.bucket_hour >= start_hour, table.c.bucket_hour < end_hour)
        .where(*(table.c[dim] == value for dim, value in filters.items()))
        .group_by(*keys)
    )
    result = await connection.execute(statement)
    width = len(keys)
    rows: list[tuple[Key, Counters]] = []
    for row in result.all():
        if not row[width]:  # an ungrouped aggregate of nothing is one row of NULLs
            continue
        key = tuple(_dimension_value(v) for v in row[:width])
        rows.append((key, tuple(int(v) for v in row[width:])))
    return rows


def _dimension_value(value: object) -> str | None:
    if value is None or value == "":
        return None
    return str(value)


async def rebuild_rollups(connection: AsyncConnection, start_hour: int, end_hour: int) -> None:
    """Recompute both rollups for the hours ``[start_hour, end_hour)`` from usage_records."""
    start = datetime.fromtimestamp(start_hour * 3600, UTC)
    end = datetime.fromtimestamp(end_hour * 3600, UTC)
    hour = _hour_of(connection).label("bucket_hour")
    for table, dimensions in _ROLLUPS:
        await connection.execute(
            delete(table).where(table.c.bucket_hour >= start_hour, table.c.bucket_hour < end_hour)
        )
        dims = [func.coalesce(records.c[dim], "").label(dim) for dim in dimensions]
        source = (
            select(hour, *dims, *_record_aggregates())
            .where(records.c.occurred_at >= start, records.c.occurred_at < end)
            .group_by(hour, *dims)
        )
        await connection.execute(
            insert(table).from_select(["bucket_hour", *dimensions, *ROLLUP_COUNTERS], source)
        )
