"""Plans of Core statements for `storage/direct_sql.py`: each statement compiled once per shape
of its parameters (which keys, for an ``INSERT``) into its SQL text, the order of its
placeholders and the type processors of its bound values and returned columns, so that running
it again only converts values and calls the driver.

On PostgreSQL (``$n`` placeholders) an expanding ``IN`` list becomes one array parameter
(``= ANY($n)``), and a statement records the tables it touches (a write, also the one it
writes), for `direct_sql.deferred_writes` and `direct_sql.run_all`.
An ``INSERT`` of one ``VALUES`` row holding every parameter can be sent for many rows at once
(:meth:`Plan.rows_text`). A statement this cannot run (an expanding list of tuples, a column
whose default Python must compute) has no plan: it is left to ``connection.execute``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection, Select, Table
from sqlalchemy.sql import Executable
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.dml import UpdateBase
from sqlalchemy.sql.elements import ClauseElement
from sqlalchemy.sql.sqltypes import TupleType
from sqlalchemy.sql.util import find_tables

__all__ = ["CACHED_ROWS", "Plan", "Processor", "bind", "convert_row", "plan_of", "shifted"]

Processor = Callable[[Any], Any] | None


@dataclass(frozen=True, slots=True)
class Plan:
    sql: str
    names: tuple[str, ...]
    processors: tuple[Processor, ...]
    fixed: Mapping[str, Any]  # values bound at compile time (literals)
    results: tuple[Processor, ...] | None  # None: the statement returns no rows
    expanding: str | None = None  # the one ``IN`` list, rendered per length
    numbered: bool = False  # ``$1``-style placeholders (PostgreSQL)
    by_length: dict[int, str] = field(default_factory=dict)
    #: For a write that may be deferred, or a statement combined with others returning rows
    #: (`direct_sql.run_all`): the table it writes (None for a read) and every table it
    #: touches (none: it cannot be combined).
    writes: str | None = None
    touches: frozenset[str] = frozenset()
    #: For an ``INSERT`` of one ``VALUES`` row holding every parameter: that row's text, so
    #: that many rows returning theirs travel as one multi-row statement.
    row_values: str | None = None
    #: The same row of an upsert (``DO UPDATE``), which may insert many rows at once only when
    #: no two of them meet the same row (PostgreSQL refuses to update one row twice).
    upsert_row: str | None = None
    by_rows: dict[int, str] = field(default_factory=dict)
    #: Every value from its own key (nothing fixed, no list): fetched at once, then converted.
    getter: Callable[[Mapping[str, Any]], Any] | None = None
    converts: tuple[tuple[int, Callable[[Any], Any]], ...] = ()

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

    def rows_text(self, count: int) -> str:
        """The statement inserting ``count`` rows at once (only with ``row_values`` or
        ``upsert_row``); kept for up to `CACHED_ROWS` rows."""
        sql = self.by_rows.get(count)
        if sql is None:
            row = self.row_values or self.upsert_row
            assert row is not None
            width = len(self.names)
            rows = (shifted(row, k * width) if self.numbered else row for k in range(count))
            sql = self.sql.replace(row, ", ".join(rows), 1)
            if count <= CACHED_ROWS:
                self.by_rows[count] = sql
        return sql


#: Multi-row statements are kept for batches up to this many rows (larger ones are rare, and
#: their texts large).
CACHED_ROWS = 64
_UNSUPPORTED = object()
#: By statement (held, so that its identity is never reused), parameter keys and paramstyle.
#: The ledger's statements are built once per dialect, so this stays as small as they are few.
_plans: dict[tuple[Executable, tuple[str, ...], str], Plan | object] = {}


def bind(plan: Plan, row: Mapping[str, Any]) -> tuple[Any, ...]:
    getter = plan.getter
    if getter is not None:
        got = getter(row)
        if not plan.converts:
            return got  # type: ignore[no-any-return]
        converted = list(got)
        for index, convert in plan.converts:
            item = converted[index]
            if item is not None:
                converted[index] = convert(item)
        return tuple(converted)
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


def convert_row(processors: tuple[Processor, ...], row: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(
        process(value) if process is not None else value
        for process, value in zip(processors, row, strict=True)
    )


def plan_of(connection: Connection, statement: Executable, first: Mapping[str, Any]) -> Plan | None:
    keys = tuple(sorted(first))
    key = (statement, keys, connection.dialect.paramstyle)
    plan = _plans.get(key)
    if plan is None:
        plan = _compile(connection, statement, keys)
        _plans[key] = plan
    return plan if isinstance(plan, Plan) else None


def _compile(connection: Connection, statement: Executable, keys: tuple[str, ...]) -> Plan | object:
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
    writes, touches = _tables(statement) if numbered else (None, frozenset())
    if sql.lstrip().upper().startswith("WITH") or len(set(names)) != len(names):
        # Its own WITH clause cannot nest in another statement's; a repeated parameter leaves
        # a number unused, which PostgreSQL cannot type in the middle of a combined statement.
        writes, touches = None, frozenset()
    plain = not fixed and expanding is None
    row = _row_values(sql, len(names), numbered) if plain else None
    upsert = " DO UPDATE " in sql
    return Plan(
        sql,
        names,
        processors,
        fixed,
        results,
        expanding,
        numbered=numbered,
        writes=writes,
        touches=touches,
        row_values=None if upsert else row,
        upsert_row=row if upsert else None,
        getter=_getter(names) if plain else None,
        converts=tuple((i, p) for i, p in enumerate(processors) if p is not None),
    )


def _getter(names: tuple[str, ...]) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
    """The values of ``names`` out of a row, as a tuple, in one call."""
    if not names:
        return lambda row: ()
    if len(names) == 1:
        name = names[0]
        return lambda row: (row[name],)
    return itemgetter(*names)


_VALUES = " VALUES ("


def _row_values(sql: str, width: int, numbered: bool) -> str | None:
    """The parenthesised row of an ``INSERT ... VALUES (...)`` holding all ``width`` parameters
    of ``sql`` (numbered from 1 on PostgreSQL); None for any other statement."""
    start = sql.find(_VALUES)
    if start < 0 or sql.find(_VALUES, start + 1) >= 0:
        return None
    start += len(_VALUES) - 1
    depth = 0
    for end in range(start, len(sql)):
        if sql[end] == "(":
            depth += 1
        elif sql[end] == ")":
            depth -= 1
            if depth == 0:
                break
    else:
        return None
    row = sql[start : end + 1]
    if "'" in row or '"' in row:
        return None
    if numbered:
        found = sorted(int(n) for n in _NUMBER.findall(row))
        if found != list(range(1, width + 1)) or len(_NUMBER.findall(sql)) != width:
            return None
    elif row.count("?") != width or sql.count("?") != width:
        return None
    return row


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


_NUMBER = re.compile(r"\$(\d+)")


def shifted(sql: str, offset: int) -> str:
    """``sql`` with its parameters ``$n`` numbered from ``offset + 1``."""
    return _NUMBER.sub(lambda found: f"${int(found.group(1)) + offset}", sql)


def _tables(statement: Executable) -> tuple[str | None, frozenset[str]]:
    """The table a write changes (None for a read, which is never deferred) and every table it
    touches: those it reads, and those tied to the written one by a foreign key."""
    if isinstance(statement, Select):
        return None, frozenset(_read(statement))
    if not isinstance(statement, UpdateBase) or not isinstance(statement.table, Table):
        return None, frozenset()
    written = statement.table
    touched = {written.name, *_read(statement)}
    touched.update(key.target_fullname.split(".")[-2] for key in written.foreign_keys)
    for table in written.metadata.tables.values():
        if any(key.references(written) for key in table.foreign_keys):
            touched.add(table.name)
    return written.name, frozenset(touched)


def _read(statement: ClauseElement) -> set[str]:
    """The tables ``statement`` names."""
    found = find_tables(
        statement,
        check_columns=True,
        include_aliases=True,
        include_joins=True,
        include_selects=True,
        include_crud=True,
    )
    named: set[str] = set()
    for item in found:
        table = getattr(item, "element", item)  # an alias of a table reads that table
        if isinstance(table, Table):
            named.add(table.name)
    return named
