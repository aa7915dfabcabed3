"""Run a Core statement on the driver's own cursor: the ledger writer's statements, without
SQLAlchemy's per-execution machinery.

For a statement of a few microseconds of SQLite work, SQLAlchemy spends several times that in
Python (the execution context, parameter processing, the result object), and on the ledger
writer's thread that Python holds the interpreter lock the event loop needs. :func:`run`
compiles each statement once per shape of its parameters (which keys, for an ``INSERT``),
keeps the SQL text, the order of its ``?`` placeholders and the type processors of its bound
values and returned columns, and then only converts values and calls ``sqlite3`` itself: the
same SQL, the same conversions, a fraction of the cost.

It applies to connections of `sqlite_file_engine` (the writer's thread) and to asyncpg
connections inside ``run_sync`` (the PostgreSQL writer's batches), whose DBAPI cursor is
SQLAlchemy's own asyncpg adapter: the same transaction, prepared-statement cache and error
translation as ``connection.execute``. On PostgreSQL an expanding ``IN`` list is sent as one
array (``= ANY($n)``: one prepared statement for every length), and a statement returning rows
for many parameter sets is left to ``connection.execute``, whose multi-row ``VALUES`` is one
round trip where a cursor would take one per row. Everywhere else, and for any statement it
does not handle (an expanding list of tuples, a column whose default Python must compute), it
is ``connection.execute``. Errors are raised as SQLAlchemy raises them
(`sqlalchemy.exc.IntegrityError`, `OperationalError`, ...), so callers cannot tell the paths
apart.

Inside :func:`deferred_writes` (the ledger's batch on PostgreSQL), a write that returns nothing
is not sent at once: consecutive ones travel as one statement (the first as the main statement,
the others as data-modifying ``WITH`` clauses, which PostgreSQL runs after it in the order they
were written) when the next statement needs an answer, or when the block ends. On loopback a
round trip costs the process far more CPU (the kernel's send and wake-up) than the statement
itself, and a settlement's batch has several such writes. Only statements on tables disjoint
from one another (counting the tables they read and those their foreign keys tie them to) are
combined: a data-modifying ``WITH`` clause does not see its siblings' changes, which then
cannot matter. An error is raised where the combined statement runs, still inside the
transaction (which it aborts, as before).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

from sqlalchemy import Connection, Table
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import Executable
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.dml import UpdateBase
from sqlalchemy.sql.sqltypes import TupleType
from sqlalchemy.sql.util import find_tables

from oneflow_ai.storage.database import BEGINS_IMMEDIATE

__all__ = ["Rows", "deferred_writes", "run"]

Processor = Callable[[Any], Any] | None
Params = Mapping[str, Any] | Sequence[Mapping[str, Any]] | None


class Rows(list[tuple[Any, ...]]):
    """The rows a statement returned (none for most writes)."""

    def one(self) -> tuple[Any, ...]:
        if len(self) != 1:
            raise LookupError(f"expected exactly one row, got {len(self)}")
        return self[0]

    def first(self) -> tuple[Any, ...] | None:
        return self[0] if self else None

    def all(self) -> list[tuple[Any, ...]]:
        return list(self)


@dataclass(frozen=True, slots=True)
class _Plan:
    sql: str
    names: tuple[str, ...]
    processors: tuple[Processor, ...]
    fixed: Mapping[str, Any]  # values bound at compile time (literals)
    results: tuple[Processor, ...] | None  # None: the statement returns no rows
    expanding: str | None = None  # the one ``IN`` list, rendered per length
    numbered: bool = False  # ``$1``-style placeholders (PostgreSQL)
    by_length: dict[int, str] = field(default_factory=dict)
    #: For a write that may be deferred: the table it writes and every table it touches.
    writes: str | None = None
    touches: frozenset[str] = frozenset()

    def text(self, row: Mapping[str, Any]) -> str:
        if self.expanding is None:
            return self.sql
        length = len(row[self.expanding])
        sql = self.by_length.get(length)
        if sql is None:
            marker = f"__[POSTCOMPILE_{self.expanding}]"
            sql = self.sql.replace(marker, ", ".join("?" * length) or "NULL")
            self.by_length[length] = sql
        return sql


_UNSUPPORTED = object()
#: By statement (held, so that its identity is never reused), parameter keys and paramstyle.
#: The ledger's statements are built once per dialect, so this stays as small as they are few.
_plans: dict[tuple[Executable, tuple[str, ...], str], _Plan | object] = {}


def run(connection: Connection, statement: Executable, params: Params = None) -> Rows:
    """Execute ``statement`` with ``params`` (one mapping, or a list for many rows)."""
    rows: Sequence[Mapping[str, Any]] = params if isinstance(params, Sequence) else [params or {}]
    if not rows:
        return Rows()
    plan = _plan(connection, statement, rows[0]) if _direct(connection) else None
    deferred: list[tuple[_Plan, tuple[Any, ...]]] | None = connection.info.get(_DEFERRED)
    if deferred is not None:
        if plan is not None and plan.writes is not None and len(rows) == 1:
            if not _fits(deferred, plan):
                _flush(connection, deferred)
            deferred.append((plan, _bind(plan, rows[0])))
            return Rows()
        _flush(connection, deferred)
    if plan is not None and plan.numbered and plan.results is not None and len(rows) > 1:
        plan = None  # one multi-row VALUES through SQLAlchemy beats a round trip per row
    if plan is None:
        result = connection.execute(
            statement, list(rows) if isinstance(params, Sequence) else rows[0]
        )
        return Rows(tuple(row) for row in result) if result.returns_rows else Rows()
    values = [_bind(plan, row) for row in rows]
    if plan.results is None and plan.expanding is None:
        _execute(connection, plan.sql, values)
        return Rows()
    out = Rows()
    for row, value in zip(rows, values, strict=True):  # executemany returns no rows
        found = _execute(connection, plan.text(row), [value], fetch=plan.results is not None)
        if plan.results is not None:
            out.extend(_row(plan.results, one) for one in found)
    return out


def _execute(
    connection: Connection, sql: str, values: list[tuple[Any, ...]], *, fetch: bool = False
) -> list[tuple[Any, ...]]:
    """``sql`` for each of ``values`` on the driver's cursor, errors raised as SQLAlchemy's."""
    dbapi_connection = connection.connection.dbapi_connection
    cursor = dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        if len(values) == 1:
            cursor.execute(sql, values[0])
        else:
            cursor.executemany(sql, values)
        return list(cursor.fetchall()) if fetch else []
    except connection.dialect.loaded_dbapi.Error as exc:
        raise DBAPIError.instance(
            sql,
            values,
            exc,
            connection.dialect.loaded_dbapi.Error,
            connection_invalidated=connection.dialect.is_disconnect(exc, dbapi_connection, cursor),
        ) from exc
    finally:
        cursor.close()


# ---- deferred writes (PostgreSQL) ----------------------------------------------------------

_DEFERRED = "oneflow.direct_sql.deferred"
#: The combined SQL of a run of deferred statements, by the identities of their plans (which
#: live as long as the process, in ``_plans``).
_combined: dict[tuple[int, ...], str] = {}


@contextmanager
def deferred_writes(connection: Connection) -> Iterator[None]:
    """Defer this block's writes that return nothing, as the module documentation describes;
    all of them have been executed when the block ends without an error (on an error they are
    dropped with the transaction the caller rolls back). Only on PostgreSQL; elsewhere, and
    inside another such block, it changes nothing."""
    if connection.dialect.driver != "asyncpg" or _DEFERRED in connection.info:
        yield
        return
    deferred: list[tuple[_Plan, tuple[Any, ...]]] = []
    connection.info[_DEFERRED] = deferred
    try:
        yield
        _flush(connection, deferred)
    finally:
        del connection.info[_DEFERRED]


def _fits(deferred: list[tuple[_Plan, tuple[Any, ...]]], plan: _Plan) -> bool:
    """Whether ``plan`` may join ``deferred`` in one statement: no table written by one of them
    is touched by another."""
    for other, _ in deferred:
        if plan.writes in other.touches or other.writes in plan.touches:
            return False
    return True


def _flush(connection: Connection, deferred: list[tuple[_Plan, tuple[Any, ...]]]) -> None:
    if not deferred:
        return
    pending = list(deferred)
    deferred.clear()
    if len(pending) == 1:
        plan, values = pending[0]
        _execute(connection, plan.sql, [values])
        return
    key = tuple(id(plan) for plan, _ in pending)
    sql = _combined.get(key)
    if sql is None:
        sql = _combined[key] = _combine([plan for plan, _ in pending])
    _execute(connection, sql, [tuple(chain.from_iterable(values for _, values in pending))])


def _combine(plans: list[_Plan]) -> str:
    """One statement running ``plans`` in order: PostgreSQL runs the main statement first and
    then its data-modifying ``WITH`` clauses from the last written to the first."""
    texts: list[str] = []
    offset = 0
    for plan in plans:
        texts.append(_shifted(plan.sql, offset))
        offset += len(plan.names)
    clauses = ", ".join(f"w{i} AS ({text})" for i, text in reversed(list(enumerate(texts))[1:]))
    return f"WITH {clauses} {texts[0]}"


_NUMBER = re.compile(r"\$(\d+)")


def _shifted(sql: str, offset: int) -> str:
    """``sql`` with its parameters ``$n`` numbered from ``offset + 1``."""
    return _NUMBER.sub(lambda found: f"${int(found.group(1)) + offset}", sql)


def _tables(statement: Executable) -> tuple[str | None, frozenset[str]]:
    """The table a write changes (None for anything else: it is never deferred) and every
    table it touches: those it reads, and those tied to the written one by a foreign key."""
    if not isinstance(statement, UpdateBase) or not isinstance(statement.table, Table):
        return None, frozenset()
    written = statement.table
    found = find_tables(
        statement,
        check_columns=True,
        include_aliases=True,
        include_joins=True,
        include_selects=True,
        include_crud=True,
    )
    touched = {written.name}
    for item in found:
        table = getattr(item, "element", item)  # an alias of a table reads that table
        if isinstance(table, Table):
            touched.add(table.name)
    touched.update(key.target_fullname.split(".")[-2] for key in written.foreign_keys)
    for table in written.metadata.tables.values():
        if any(key.references(written) for key in table.foreign_keys):
            touched.add(table.name)
    return written.name, frozenset(touched)


def _direct(connection: Connection) -> bool:
    return bool(connection.info.get(BEGINS_IMMEDIATE)) or connection.dialect.driver == "asyncpg"


def _bind(plan: _Plan, row: Mapping[str, Any]) -> tuple[Any, ...]:
    fixed, expanding = plan.fixed, plan.expanding
    values: list[Any] = []
    for name, process in zip(plan.names, plan.processors, strict=True):
        value = row[name] if name in row else fixed[name]
        if name == expanding:
            values.extend(
                process(item) if process is not None and item is not None else item
                for item in value
            )
        else:
            values.append(process(value) if process is not None and value is not None else value)
    return tuple(values)


def _row(processors: tuple[Processor, ...], row: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(
        process(value) if process is not None else value
        for process, value in zip(processors, row, strict=True)
    )


def _plan(connection: Connection, statement: Executable, first: Mapping[str, Any]) -> _Plan | None:
    keys = tuple(sorted(first))
    key = (statement, keys, connection.dialect.paramstyle)
    plan = _plans.get(key)
    if plan is None:
        plan = _compile(connection, statement, keys)
        _plans[key] = plan
    return plan if isinstance(plan, _Plan) else None


def _compile(
    connection: Connection, statement: Executable, keys: tuple[str, ...]
) -> _Plan | object:
    dialect = connection.dialect
    compiled = statement.compile(dialect=dialect, column_keys=list(keys))  # type: ignore[attr-defined]
    if isinstance(compiled, SQLCompiler) and compiled.implicit_returning:
        # An INSERT's primary key, returned for SQLAlchemy's ``inserted_primary_key``, which
        # nothing here reads: without it the statement returns nothing (and may be deferred).
        compiled = statement.compile(  # type: ignore[attr-defined]
            dialect=dialect, column_keys=list(keys), for_executemany=True
        )
    if (
        not isinstance(compiled, SQLCompiler)
        or compiled.positiontup is None
        or compiled.insert_prefetch
        or compiled.update_prefetch
    ):
        return _UNSUPPORTED
    names = tuple(compiled.positiontup)
    binds = compiled.binds
    lists = [name for name in names if binds[name].expanding]
    expanding = lists[0] if len(lists) == 1 and names.count(lists[0]) == 1 else None
    if lists and (
        expanding is None
        or isinstance(binds[expanding].type, TupleType)
        or compiled.string.count("__[POSTCOMPILE") != 1
    ):
        return _UNSUPPORTED
    fixed: dict[str, Any] = {}
    for name in names:
        bind = binds[name]
        if name not in keys:
            if bind.required or bind.callable is not None:
                return _UNSUPPORTED
            fixed[name] = bind.value
    # The dialect's own implementation of each type (SQLite's DATETIME and DATE store text).
    processors: tuple[Processor, ...] = tuple(
        binds[name].type.dialect_impl(dialect).bind_processor(dialect) for name in names
    )
    sql = compiled.string
    numbered = dialect.paramstyle == "numeric_dollar"
    if numbered:
        renumbered = _as_array(sql, names, expanding)
        if renumbered is None:
            return _UNSUPPORTED
        sql = renumbered
        if expanding is not None:
            index = names.index(expanding)
            processors = (
                *processors[:index],
                _each(processors[index]),
                *processors[index + 1 :],
            )
            expanding = None
    returned = compiled._result_columns
    results = (
        tuple(
            entry.type.dialect_impl(dialect).result_processor(dialect, None) for entry in returned
        )
        if returned
        else None
    )
    writes, touches = _tables(statement) if numbered and not returned else (None, frozenset())
    if sql.lstrip().upper().startswith("WITH") or len(set(names)) != len(names):
        # Its own WITH clause cannot nest in another statement's; a repeated parameter leaves
        # a number unused, which PostgreSQL cannot type in the middle of a combined statement.
        writes = None
    return _Plan(
        sql,
        names,
        processors,
        fixed,
        results,
        expanding,
        numbered=numbered,
        writes=writes,
        touches=touches,
    )


_PLACEHOLDER = re.compile(r"\$(\d+)|(NOT )?IN \(__\[POSTCOMPILE_(\w+)\]\)")


def _as_array(sql: str, names: tuple[str, ...], expanding: str | None) -> str | None:
    """``sql`` with ``$n`` numbering ``names`` (a repeated parameter keeps its number) and the
    ``IN`` list as ``= ANY($n)``; None when that list is not a plain ``IN``.

    SQLAlchemy numbers the parameters other than the expanding one, in order, and leaves a
    marker where the list goes."""
    others = [name for name in names if name != expanding]
    unsupported = False

    def renumber(found: re.Match[str]) -> str:
        nonlocal unsupported
        if found.group(1) is not None:
            return f"${names.index(others[int(found.group(1)) - 1]) + 1}"
        if found.group(2) or found.group(3) != expanding or expanding is None:
            unsupported = True
            return found.group(0)
        return f"= ANY(${names.index(expanding) + 1})"

    text = _PLACEHOLDER.sub(renumber, sql)
    return None if unsupported or "__[POSTCOMPILE" in text else text


def _each(process: Processor) -> Processor:
    """A list parameter's processor: the item's, applied to each item."""
    if process is None:
        return list
    convert = process
    return lambda items: [convert(item) if item is not None else None for item in items]
