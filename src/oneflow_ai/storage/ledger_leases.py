"""Credit leases in the ledger's batch: granting one, drawing settled charges from it, and
giving back what it still holds.

A lease is a reservation row (``ledger_reservations``) of its owner, whose ``amount`` is held on
the project's prepaid balance like any request's hold: the owner-heartbeat reaping that
releases a dead replica's reservations releases its leases too, and ``reserved ==
SUM(active holds)`` stays true because every change of a lease's ``amount`` moves the account's
``reserved`` in the same transaction.

- Granting (:func:`grant`): a lease takes at most ``1 / share`` of what the balance has free
  (balance minus everything held), and at least its floor, or nothing at all (the replica
  then reserves per request).
- Drawing (:func:`held`, then :func:`draw`): a settled charge of a request served from a lease
  takes its amount out of the lease's row (never below zero) in the same transaction that
  appends the charge; the lease's row is read and locked in the statement that appends it.
  A batch drawn whole from leases that hold it all (:func:`draw_whole`) takes it with one
  conditional update instead, which changes no row of a lease that holds less.
- Returning (:func:`give_back_leases`): the row is deleted and what it still held is given
  back to the account.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

from sqlalchemy import BigInteger, Select, String, bindparam, delete, func, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Connection
from sqlalchemy.sql import Executable

from oneflow_ai.storage.dialect import chunks
from oneflow_ai.storage.direct_sql import Params, run
from oneflow_ai.storage.ledger_commands import ReserveCommand, Reserved
from oneflow_ai.storage.tables import LedgerReservation, table_of

__all__ = ["LEASE_MODEL", "draw", "draw_whole", "give_back_leases", "grant", "held"]

#: The ``model`` (and ``provider``) of a lease's reservation row.
LEASE_MODEL = "lease"

_reservations = table_of(LedgerReservation)


@cache
def _statements(dialect: str) -> tuple[Executable, Executable, Executable]:
    held: Select[Any] = select(_reservations.c.id, _reservations.c.amount).where(
        _reservations.c.id.in_(bindparam("ids", expanding=True))
    )
    if dialect == "postgresql":  # row locks to commit; SQLite's write lock covers it
        held = held.with_for_update(of=_reservations)
    take = (
        update(_reservations)
        .where(_reservations.c.id == bindparam("lease"))
        .values(amount=_reservations.c.amount - bindparam("x", type_=BigInteger))
    )
    returned = (
        delete(_reservations)
        .where(_reservations.c.id.in_(bindparam("ids", expanding=True)))
        .returning(_reservations.c.id, _reservations.c.project_id, _reservations.c.amount)
    )
    return held, take, returned


def grant(command: ReserveCommand, mode: str, free: int) -> Reserved:
    """Decide a lease against the locked account: prepaid only, at most ``free / share``
    and ``account_hold``, at least ``lease_floor``."""
    if mode != "prepaid":
        return Reserved(accepted=False, refused_by="account")
    size = min(command.account_hold, free // max(command.lease_share, 1))
    if size < command.lease_floor or size <= 0:
        return Reserved(accepted=False, refused_by="account")
    return Reserved(accepted=True, account_hold=size)


def held(connection: Connection, lease_ids: Sequence[str]) -> list[tuple[Executable, Params]]:
    """The statements reading what these leases still hold (``(id, amount)`` rows), locked to
    commit on PostgreSQL: for `run_all`, beside the batch's other statements, before `draw`."""
    held_sql, _, _ = _statements(connection.dialect.name)
    return [(held_sql, {"ids": chunk}) for chunk in chunks(sorted(set(lease_ids)))]


def draw(
    connection: Connection, wanted: Sequence[tuple[str, int]], left: dict[str, int]
) -> dict[str, int]:
    """Take each ``(lease id, amount)`` from its lease (in order, never below zero), given
    what each still holds (``left``, read by `held`); how much was taken per project is for
    the caller to give back from ``reserved``."""
    _, take_sql, _ = _statements(connection.dialect.name)
    taken: dict[str, int] = defaultdict(int)
    for lease, amount in wanted:
        share = min(left.get(lease, 0), max(amount, 0))
        if share:
            left[lease] -= share
            taken[lease] += share
    params = [{"lease": lease, "x": x} for lease, x in sorted(taken.items())]
    if params:
        run(connection, take_sql, params)
    return dict(taken)


@cache
def _draws() -> Executable:
    """PostgreSQL's: take each lease's ``x`` out of its row if it holds that much, returning
    the ids of the rows it took from (the leases and amounts as two arrays)."""
    wanted = (
        func.unnest(bindparam("ids", type_=ARRAY(String)), bindparam("xs", type_=ARRAY(BigInteger)))
        .table_valued("id", "x")
        .render_derived(name="wanted")
    )
    return (
        update(_reservations)
        .where(_reservations.c.id == wanted.c.id, _reservations.c.amount >= wanted.c.x)
        .values(amount=_reservations.c.amount - wanted.c.x)
        .returning(_reservations.c.id)
    )


def draw_whole(takes: Mapping[str, int]) -> tuple[Executable, dict[str, Any], int]:
    """On PostgreSQL, the statement taking each ``lease: amount`` of ``takes`` out of its lease
    if it still holds that much (and nothing from one that holds less), its parameters, and how
    many rows it changes when every lease does."""
    ids = sorted(takes)
    return _draws(), {"ids": ids, "xs": [takes[lease] for lease in ids]}, len(ids)


def give_back_leases(connection: Connection, ids: Sequence[str]) -> dict[str, tuple[str, int]]:
    """Delete these leases; for each that was still active, its project and what it held."""
    _, _, returned_sql = _statements(connection.dialect.name)
    found: dict[str, tuple[str, int]] = {}
    for chunk in chunks(sorted(set(ids))):
        for row in run(connection, returned_sql, {"ids": chunk}):
            found[row[0]] = (row[1], int(row[2]))
    return found
