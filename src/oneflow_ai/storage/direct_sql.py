"""Run a Core statement on the driver's own cursor: the ledger writer's statements, without
SQLAlchemy's per-execution machinery.

For a statement of a few microseconds of SQLite work, SQLAlchemy spends several times that in
Python (the execution context, parameter processing, the result object), and on the ledger
writer's thread that Python holds the interpreter lock the event loop needs. :func:`run`
compiles each statement once per shape of its parameters (`storage/sql_plans.py`: the SQL
text, the order of its placeholders and the type processors of its bound values and returned
columns), and then only converts values and calls ``sqlite3`` itself: the same SQL, the same
conversions, a fraction of the cost.

It applies to connections of `sqlite_file_engine` (the writer's thread) and to asyncpg
connections inside ``run_sync`` (the PostgreSQL writer's batches), where a statement run once
goes through SQLAlchemy's own asyncpg adapter without its cursor (`_fetch`): the same
transaction, prepared-statement cache and error translation as ``connection.execute``, one
switch to the event loop, none of the cursor's bookkeeping. On PostgreSQL an expanding ``IN``
list is sent as one array (``= ANY($n)``: one prepared statement for every length). On both, an
``INSERT`` returning rows for many parameter sets (a batch's charges) is one multi-row
``VALUES`` statement, where a cursor would take one execution per row (``executemany`` returns
no rows) and SQLAlchemy's own multi-row execution costs several times the Python. Everywhere
else, and for any statement it does not handle (an expanding list of tuples, a column whose
default Python must compute), it is ``connection.execute``. Errors are raised as SQLAlchemy
raises them (`sqlalchemy.exc.IntegrityError`, `OperationalError`, ...), so callers cannot tell
the paths apart.

Inside :func:`deferred_writes` (the ledger's batch on PostgreSQL), a write that returns nothing
(of one row, or an ``INSERT`` of many as one multi-row ``VALUES``; not an upsert, which could
meet one row twice) is not sent at once: consecutive ones travel as one statement (the first
as the main statement, the others as data-modifying ``WITH`` clauses, which PostgreSQL runs
after it in the order they were written) when the next statement needs an answer, or when the
block ends. On loopback a
round trip costs the process far more CPU (the kernel's send and wake-up) than the statement
itself, and a settlement's batch has several such writes. Only statements on tables disjoint
from one another (counting the tables they read and those their foreign keys tie them to) are
combined: a data-modifying ``WITH`` clause does not see its siblings' changes, which then
cannot matter. An error is raised where the combined statement runs, still inside the
transaction (which it aborts, as before).

:func:`run_all` runs several statements whose rows the caller reads (a batch's charges
``INSERT ... RETURNING``, its reservations' ``DELETE ... RETURNING`` and the ``SELECT ... FOR
UPDATE`` of the credit leases it draws on): on PostgreSQL, consecutive ones disjoint in the same
sense travel as one statement of ``WITH`` clauses whose rows come back tagged with the clause
that returned them (a read among them sees the tables as they were before the statement, which
its siblings, disjoint from it, do not change); the others, and all of them elsewhere, one
after the other.

:func:`all_or_nothing` sends writes as one statement without ``BEGIN`` or ``COMMIT``, in the
transaction PostgreSQL gives a statement of its own: one round trip where a transaction takes
three at least. It commits only if its checked writes changed the rows they should and no unique
constraint was violated; otherwise the statement fails whole, nothing of it is written, and the
caller takes its ordinary path.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from itertools import accumulate, chain
from typing import Any, NamedTuple

from sqlalchemy import Connection
from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_connection
from sqlalchemy.exc import DBAPIError, StatementError
from sqlalchemy.sql import Executable
from sqlalchemy.util import await_

from oneflow_ai.storage import sql_combined as combined
from oneflow_ai.storage.database import BEGINS_IMMEDIATE
from oneflow_ai.storage.sql_plans import Plan, bind, convert_row, plan_of

__all__ = [
    "Params",
    "Rows",
    "all_or_nothing",
    "alone_possible",
    "deferred_writes",
    "run",
    "run_all",
]

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


#: Parameters per multi-row statement: under SQLite's limit (32766) and PostgreSQL's (32767).
_MAX_PARAMETERS = 30_000


def run(connection: Connection, statement: Executable, params: Params = None) -> Rows:
    """Execute ``statement`` with ``params`` (one mapping, or a list for many rows)."""
    rows: Sequence[Mapping[str, Any]] = params if isinstance(params, Sequence) else [params or {}]
    if not rows:
        return Rows()
    plan = plan_of(connection, statement, rows[0]) if _direct(connection) else None
    deferred: list[_Deferred] | None = connection.info.get(_DEFERRED)
    if deferred is not None:
        if plan is not None and _deferrable(plan, len(rows)):
            if not _fits(deferred, plan, len(rows)):
                _flush(connection, deferred)
            if len(rows) == 1:
                deferred.append((plan, 1, bind(plan, rows[0])))
            else:  # an INSERT of many rows: one multi-row VALUES
                flat = chain.from_iterable(bind(plan, row) for row in rows)
                deferred.append((plan, len(rows), tuple(flat)))
            return Rows()
        _flush(connection, deferred)
    if (
        plan is not None
        and plan.numbered
        and plan.results is not None
        and plan.row_values is None
        and len(rows) > 1
    ):
        plan = None  # one multi-row VALUES through SQLAlchemy beats a round trip per row
    if plan is None:
        result = connection.execute(
            statement, list(rows) if isinstance(params, Sequence) else rows[0]
        )
        return Rows(tuple(row) for row in result) if result.returns_rows else Rows()
    values = [bind(plan, row) for row in rows]
    if plan.results is None and plan.expanding is None:
        _execute(connection, plan.sql, values)
        return Rows()
    out = Rows()
    if plan.row_values is not None and plan.results is not None and len(values) > 1:
        results = plan.results  # one statement for many rows, returning all of theirs
        per = max(1, _MAX_PARAMETERS // max(len(plan.names), 1))
        for start in range(0, len(values), per):
            part = values[start : start + per]
            found = _execute(
                connection,
                plan.rows_text(len(part)),
                [tuple(chain.from_iterable(part))],
                fetch=True,
            )
            out.extend(convert_row(results, one) for one in found)
        return out
    for row, value in zip(rows, values, strict=True):  # executemany returns no rows
        found = _execute(connection, plan.text(row), [value], fetch=plan.results is not None)
        if plan.results is not None:
            out.extend(convert_row(plan.results, one) for one in found)
    return out


def run_all(connection: Connection, parts: Sequence[tuple[Executable, Params]]) -> list[Rows]:
    """``run`` each ``(statement, params)`` in order; their rows, in that order. On PostgreSQL
    consecutive statements returning rows (writes, or reads such as a locking ``SELECT``), on
    tables disjoint from one another, travel as one statement."""
    if connection.dialect.driver != "asyncpg":
        return [run(connection, statement, params) for statement, params in parts]
    found = [Rows() for _ in parts]
    group: list[_Part] = []
    parameters = 0
    for index, (statement, params) in enumerate(parts):
        rows: Sequence[Mapping[str, Any]] = (
            params if isinstance(params, Sequence) else [params or {}]
        )
        if not rows:
            continue  # nothing to run: no rows
        plan = plan_of(connection, statement, rows[0])
        if not _joinable(plan, len(rows)):
            _run_group(connection, group, found)
            group, parameters = [], 0
            found[index] = run(connection, statement, params)
            continue
        assert plan is not None
        size = len(rows) * len(plan.names)
        if parameters + size > _MAX_PARAMETERS or not _disjoint(plan, group):
            _run_group(connection, group, found)
            group, parameters = [], 0
        group.append(_Part(index, statement, params, plan, [bind(plan, row) for row in rows]))
        parameters += size
    _run_group(connection, group, found)
    return found


#: Why `all_or_nothing`'s statement fails whole: a unique constraint violated, a checked write
#: changing another number of rows than it should (a division by zero), or an upsert meeting
#: one row twice (a cardinality violation).
_REFUSED = frozenset({"23505", "22012", "21000"})


def alone_possible(connection: Connection) -> bool:
    """Whether `all_or_nothing` could send anything on ``connection``: PostgreSQL, and nothing
    of its transaction begun yet."""
    if connection.dialect.driver != "asyncpg" or _DEFERRED in connection.info:
        return False
    adapted = connection.connection.dbapi_connection
    return isinstance(adapted, AsyncAdapt_asyncpg_connection) and adapted._transaction is None


def all_or_nothing(
    connection: Connection,
    writes: Sequence[tuple[Executable, Params]],
    *,
    checked: Sequence[tuple[Executable, Mapping[str, Any], int]] = (),
) -> bool | None:
    """On PostgreSQL, before anything else of the connection's transaction: ``writes`` (each
    of one row, or an ``INSERT`` or upsert of many) and the ``checked`` writes (each returning
    the rows it changed, with how many it must change) as one statement, alone in its own
    transaction. True: all of it committed. False: a checked write changed another number of
    rows, a unique constraint was violated or an upsert met one row twice, and nothing was
    written. None, with nothing sent: they cannot travel so (another database, a transaction
    already begun, a statement that cannot be combined with the others, tables not disjoint).
    The checked writes may share a table with one another (not with the other writes): the
    caller knows they change different rows."""
    if not alone_possible(connection):
        return None
    adapted = connection.connection.dbapi_connection
    assert isinstance(adapted, AsyncAdapt_asyncpg_connection)
    parts: list[_Deferred] = []
    statements = [(statement, params) for statement, params, _ in checked]
    for index, (statement, params) in enumerate([*statements, *writes]):
        rows: Sequence[Mapping[str, Any]] = (
            params if isinstance(params, Sequence) else [params or {}]
        )
        plan = plan_of(connection, statement, rows[0]) if rows else None
        if plan is None or not plan.touches:
            return None
        if index < len(checked):
            if plan.writes is None or plan.results is None or len(rows) != 1:
                return None
        elif (
            plan.writes is None
            or plan.results is not None
            or (len(rows) > 1 and plan.row_values is None and plan.upsert_row is None)
            or not _fits(parts, plan, len(rows))
        ):
            return None
        flat = chain.from_iterable(bind(plan, row) for row in rows)
        parts.append((plan, len(rows), tuple(flat)))
    if not parts:
        return None
    pending = [(plan, rows) for plan, rows, _ in parts]
    counts = tuple(count for _, _, count in checked)
    sql = combined.checked(pending, counts) if counts else combined.in_order(pending)
    values = tuple(chain.from_iterable(values for _, _, values in parts))
    try:
        found = await_(_fetch(adapted, sql, values, refused=_REFUSED))
    except connection.dialect.loaded_dbapi.Error as exc:
        raise _translated(connection, sql, [values], exc, None) from exc
    return found is not None


class _Part(NamedTuple):
    """A part of `run_all`'s."""

    position: int  # among run_all's parts
    statement: Executable
    params: Params
    plan: Plan
    values: list[tuple[Any, ...]]  # its rows, bound


def _joinable(plan: Plan | None, rows: int) -> bool:
    """Whether a statement of ``plan`` for ``rows`` rows may join others in `run_all`."""
    return (
        plan is not None
        and bool(plan.touches)
        and plan.results is not None
        and (rows == 1 or plan.row_values is not None)
    )


def _disjoint(plan: Plan, group: Sequence[_Part]) -> bool:
    """No table written by ``plan`` or by one of ``group`` is touched by another of them."""
    return not any(
        plan.writes in part.plan.touches or part.plan.writes in plan.touches for part in group
    )


def _run_group(connection: Connection, group: Sequence[_Part], found: list[Rows]) -> None:
    """Run ``group``'s statements as one (one alone as itself), each one's rows into ``found``."""
    if not group:
        return
    if len(group) == 1:
        part = group[0]
        found[part.position] = run(connection, part.statement, part.params)
        return
    deferred: list[_Deferred] | None = connection.info.get(_DEFERRED)
    if deferred:
        _flush(connection, deferred)
    sql = combined.returning([(part.plan, len(part.values)) for part in group])
    flat = tuple(chain.from_iterable(chain.from_iterable(part.values) for part in group))
    starts = list(accumulate((len(part.plan.results or ()) for part in group), initial=1))
    for row in _execute(connection, sql, [flat], fetch=True):
        tag = row[0]
        part = group[tag]
        assert part.plan.results is not None
        columns = row[starts[tag] : starts[tag + 1]]
        found[part.position].append(convert_row(part.plan.results, columns))


def _execute(
    connection: Connection, sql: str, values: list[tuple[Any, ...]], *, fetch: bool = False
) -> list[tuple[Any, ...]]:
    """``sql`` for each of ``values`` on the driver's cursor (once on asyncpg: `_fetch`), errors
    raised as SQLAlchemy's."""
    dbapi_connection = connection.connection.dbapi_connection
    once_on_asyncpg = len(values) == 1 and isinstance(
        dbapi_connection, AsyncAdapt_asyncpg_connection
    )
    cursor = None if once_on_asyncpg else dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        if cursor is None:
            found = await_(_fetch(dbapi_connection, sql, values[0]))  # type: ignore[arg-type]
            return found if fetch and found is not None else []
        if len(values) == 1:
            cursor.execute(sql, values[0])
        else:
            cursor.executemany(sql, values)
        return list(cursor.fetchall()) if fetch else []
    except connection.dialect.loaded_dbapi.Error as exc:
        raise _translated(connection, sql, values, exc, cursor) from exc
    finally:
        if cursor is not None:
            cursor.close()


def _translated(
    connection: Connection, sql: str, values: list[tuple[Any, ...]], exc: Any, cursor: Any
) -> StatementError:
    """The driver's ``exc`` as SQLAlchemy raises it."""
    error: StatementError = DBAPIError.instance(
        sql,
        values,
        exc,
        connection.dialect.loaded_dbapi.Error,
        connection_invalidated=connection.dialect.is_disconnect(
            exc, connection.connection.dbapi_connection, cursor
        ),
    )
    return error


async def _fetch(
    adapted: AsyncAdapt_asyncpg_connection,
    sql: str,
    args: tuple[Any, ...],
    *,
    refused: frozenset[str] = frozenset(),
) -> list[tuple[Any, ...]] | None:
    """What SQLAlchemy's asyncpg cursor does to execute ``sql`` once (its
    ``_prepare_and_execute``; SQLAlchemy's version is pinned): under the connection's lock,
    begin its transaction if none is open, take the prepared statement from the connection's
    cache (schema stamp 0, as for a cursor made outside an execution) and fetch, asyncpg's
    errors translated by the adapter. Without the cursor's per-execution work that nothing here
    reads: the cursor object, its ``description``, its row count parsed from the status
    message, its row buffer.

    With ``refused`` (SQLSTATEs) the statement runs alone, in no transaction (PostgreSQL's
    implicit one), and an error of one of those states is None instead of raised."""
    async with adapted._execute_mutex:
        if adapted._transaction is None and not refused:
            await adapted._start_transaction()  # type: ignore[no-untyped-call]
        try:
            prepared, _ = await adapted._prepare(sql, 0)  # type: ignore[no-untyped-call]
            return await prepared.fetch(*args)  # type: ignore[no-any-return]
        except Exception as error:
            if getattr(error, "sqlstate", None) in refused:
                return None
            adapted._handle_exception(error)
    return None  # not reached: the adapter raises


# ---- deferred writes (PostgreSQL) ----------------------------------------------------------

_DEFERRED = "oneflow.direct_sql.deferred"
#: A deferred write: its plan, how many rows it inserts (1 for any other write), its values.
_Deferred = tuple[Plan, int, tuple[Any, ...]]


@contextmanager
def deferred_writes(connection: Connection) -> Iterator[None]:
    """Defer this block's writes that return nothing, as the module documentation describes;
    all of them have been executed when the block ends without an error (on an error they are
    dropped with the transaction the caller rolls back). Only on PostgreSQL; elsewhere, and
    inside another such block, it changes nothing."""
    if connection.dialect.driver != "asyncpg" or _DEFERRED in connection.info:
        yield
        return
    deferred: list[_Deferred] = []
    connection.info[_DEFERRED] = deferred
    try:
        yield
        _flush(connection, deferred)
    finally:
        del connection.info[_DEFERRED]


def _deferrable(plan: Plan, rows: int) -> bool:
    """A write returning nothing, of one row, or an INSERT of many (one multi-row VALUES)."""
    if plan.writes is None or plan.results is not None:
        return False
    return rows == 1 or (plan.row_values is not None and rows * len(plan.names) <= _MAX_PARAMETERS)


def _fits(deferred: list[_Deferred], plan: Plan, rows: int) -> bool:
    """Whether ``plan`` may join ``deferred`` in one statement: no table written by one of them
    is touched by another, and the parameters stay under the databases' limit."""
    parameters = rows * len(plan.names)
    for other, _, values in deferred:
        if plan.writes in other.touches or other.writes in plan.touches:
            return False
        parameters += len(values)
    return parameters <= _MAX_PARAMETERS


def _flush(connection: Connection, deferred: list[_Deferred]) -> None:
    if not deferred:
        return
    pending = [(plan, rows) for plan, rows, _ in deferred]
    values = tuple(chain.from_iterable(values for _, _, values in deferred))
    deferred.clear()
    _execute(connection, combined.in_order(pending), [values])


def _direct(connection: Connection) -> bool:
    return bool(connection.info.get(BEGINS_IMMEDIATE)) or connection.dialect.driver == "asyncpg"
