"""Holds on accounts and budget counters: taking them, giving them back, resolving
reservations (shared by the ledger's batch phases and its reaping)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

from sqlalchemy.engine import Connection

from oneflow_ai.storage.dialect import chunks
from oneflow_ai.storage.direct_sql import run
from oneflow_ai.storage.ledger_statements import LedgerStatements

__all__ = ["CounterKey", "give_back", "resolve", "resolving", "shift_reserved"]

CounterKey = tuple[str, date]


def shift_reserved(
    connection: Connection,
    sql: LedgerStatements,
    account_shift: dict[str, int],
    counter_shift: dict[CounterKey, int],
) -> None:
    """Add to (or, with negative amounts, take from) the ``reserved`` of accounts and counters."""
    accounts = [{"p": p, "x": x} for p, x in sorted(account_shift.items()) if x]
    if accounts:
        run(connection, sql.shift_account, accounts)
    counters = [{"b": b, "d": d, "x": x} for (b, d), x in sorted(counter_shift.items()) if x]
    if counters:
        run(connection, sql.shift_counter, counters)


def give_back(
    connection: Connection,
    sql: LedgerStatements,
    account_holds: dict[str, int],
    counter_holds: dict[CounterKey, int],
) -> None:
    shift_reserved(
        connection,
        sql,
        {p: -x for p, x in account_holds.items()},
        {k: -x for k, x in counter_holds.items()},
    )


def resolve(connection: Connection, sql: LedgerStatements, ids: Sequence[str | None]) -> set[str]:
    """Delete the given reservations; return those that were still active."""
    active: set[str] = set()
    for params in resolving(ids):
        active.update(row[0] for row in run(connection, sql.resolve, params))
    return active


def resolving(ids: Sequence[str | None]) -> list[dict[str, Any]]:
    """The parameters of ``resolve``'s statements for these reservations (returning their ids:
    those still active)."""
    return [{"ids": chunk} for chunk in chunks(sorted({i for i in ids if i is not None}))]
