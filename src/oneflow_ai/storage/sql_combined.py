"""The SQL of several planned statements sent as one on PostgreSQL (`storage/direct_sql.py`).

Each part is a plan (`storage/sql_plans.py`) for a number of rows; its parameters are
numbered on from the part before. PostgreSQL runs data-modifying ``WITH`` clauses exactly once
and to completion, all on the snapshot the statement started with (which is why the parts must
be on tables disjoint from one another).

- :func:`in_order`: deferred writes, the first as the main statement and the others as
  ``WITH`` clauses, which PostgreSQL runs after it from the last written to the first.
- :func:`returning`: statements whose rows the caller reads, each row tagged with its clause.
- :func:`checked`: writes that fail whole (a division by zero) unless each of the first few,
  returning the rows it changed, changed as many as it should; those run first (the final
  ``SELECT`` reads them), then the others in order.

The order is the order in which rows are locked, and so part of the ledger's rule against
deadlocks between replicas: a batch takes its project's account row before the rows of its
usage rollups, which other replicas' batches write too (`storage/ledger_batch.py`).

A text is kept by kind, plans (which live as long as the process) and rows, for parts of up to
`CACHED_ROWS` rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from oneflow_ai.storage.sql_plans import CACHED_ROWS, Plan, shifted

__all__ = ["checked", "in_order", "returning"]

Parts = Sequence[tuple[Plan, int]]

_kept: dict[tuple[Any, ...], str] = {}


def in_order(parts: Parts) -> str:
    """One statement running ``parts`` in order (one part alone is its own statement)."""

    def build(texts: list[str]) -> str:
        if len(texts) == 1:
            return texts[0]
        return f"WITH {_clauses(texts, _unread(1, texts))} {texts[0]}"

    return _text(("in order",), parts, build)


def returning(parts: Parts) -> str:
    """One statement running ``parts`` as ``WITH`` clauses; each row returned is the clause's
    index, then a column for every column any clause returns, its own filled in and the
    others' NULL."""
    widths = [len(plan.results or ()) for plan, _ in parts]

    def build(texts: list[str]) -> str:
        selects = []
        for i in range(len(widths)):
            columns = ["NULL"] * sum(widths[:i]) + [f"w{i}.*"] + ["NULL"] * sum(widths[i + 1 :])
            selects.append(", ".join([str(i), *columns]) + f" FROM w{i}")
        return (
            f"WITH {_clauses(texts, range(len(texts)))} SELECT {' UNION ALL SELECT '.join(selects)}"
        )

    return _text(("returning",), parts, build)


def checked(parts: Parts, counts: tuple[int, ...]) -> str:
    """One statement running ``parts`` as ``WITH`` clauses, which fails (division by zero)
    unless each of the first ``len(counts)``, returning the rows it changed, changed as many
    as ``counts`` says."""

    def build(texts: list[str]) -> str:
        expected = " AND ".join(
            f"(SELECT count(*) FROM w{i}) = {int(count)}"  # noqa: S608  # nosec B608 (numbers)
            for i, count in enumerate(counts)
        )
        # The clauses the SELECT reads run as it reads them, then the others in order.
        order = [*range(len(counts)), *_unread(len(counts), texts)]
        return f"WITH {_clauses(texts, order)} SELECT 1 / ({expected})::int"

    return _text(("checked", *counts), parts, build)


def _clauses(texts: list[str], order: Iterable[int]) -> str:
    """The ``WITH`` clauses ``w0``, ``w1``, ... of ``texts``, written in ``order``."""
    return ", ".join(f"w{i} AS ({texts[i]})" for i in order)


def _unread(start: int, texts: list[str]) -> Iterable[int]:
    """The order to write the clauses from ``start`` on, which the statement does not read, so
    that they run in order: PostgreSQL runs those after the main query, from the last written
    to the first."""
    return reversed(range(start, len(texts)))


def _text(kind: tuple[Any, ...], parts: Parts, build: Callable[[list[str]], str]) -> str:
    """``build`` on the parts' texts, parameters numbered on from one part to the next; kept."""
    key = (*kind, *((id(plan), rows) for plan, rows in parts))
    sql = _kept.get(key)
    if sql is None:
        texts: list[str] = []
        offset = 0
        for plan, rows in parts:
            texts.append(shifted(plan.sql if rows == 1 else plan.rows_text(rows), offset))
            offset += len(plan.names) * rows
        sql = build(texts)
        if max(rows for _, rows in parts) <= CACHED_ROWS:
            _kept[key] = sql
    return sql
