"""Reservations in the ledger's batch: lock what the batch touches, decide each reservation
against the locked rows, then one update per row and the rows of the accepted ones (see
:mod:`oneflow_ai.storage.ledger_batch` for the rules that keep hard limits exact)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy.engine import Connection

from oneflow_ai.storage.database import BEGINS_IMMEDIATE
from oneflow_ai.storage.dialect import chunks
from oneflow_ai.storage.direct_sql import run
from oneflow_ai.storage.ledger_commands import HoldRow, ReserveCommand, Reserved
from oneflow_ai.storage.ledger_holds import CounterKey, shift_reserved
from oneflow_ai.storage.ledger_leases import grant
from oneflow_ai.storage.ledger_statements import LedgerStatements

__all__ = ["reserve"]


def reserve(
    connection: Connection, sql: LedgerStatements, commands: Sequence[ReserveCommand]
) -> list[Reserved]:
    """Lock every account and counter the batch touches (in key order), decide each
    reservation in order against what the locked rows say, then write one update per row."""
    keys = sorted({(h.budget_id, h.period_start) for c in commands for h in c.holds})
    if keys:
        run(connection, sql.ensure_counter, [{"b": b, "d": d} for b, d in keys])
    elif sql.write_lock is not None and not connection.info.get(BEGINS_IMMEDIATE):
        run(connection, sql.write_lock)
    projects = sorted({c.project_id for c in commands if c.account_hold > 0})
    available: dict[str, tuple[str, int]] = {}
    if projects:
        rows = run(connection, sql.lock_accounts, {"ids": projects})
        available = {row[0]: (row[1], int(row[2]) - int(row[3])) for row in rows}
    room: dict[CounterKey, int] = {}  # what each hard counter can still hold
    if keys:
        rows = run(connection, sql.lock_counters, {"keys": keys})
        room = {
            (row[0], row[1]): int(row[4]) - int(row[2]) - int(row[3])
            for row in rows
            if row[5] == "hard"
        }

    outcomes: list[Reserved] = []
    account_shift: dict[str, int] = defaultdict(int)
    counter_shift: dict[CounterKey, int] = defaultdict(int)
    for command in commands:
        outcome = _decide(command, available, room)
        outcomes.append(outcome)
        if outcome.accepted:
            if outcome.account_hold:
                mode, left = available[command.project_id]
                available[command.project_id] = (mode, left - outcome.account_hold)
                account_shift[command.project_id] += outcome.account_hold
            for hold in outcome.holds:
                key = (hold.budget_id, hold.period_start)
                room[key] -= hold.amount
                counter_shift[key] += hold.amount
    shift_reserved(connection, sql, account_shift, counter_shift)
    _insert_reservations(connection, sql, commands, outcomes)
    return outcomes


def _insert_reservations(
    connection: Connection,
    sql: LedgerStatements,
    commands: Sequence[ReserveCommand],
    outcomes: Sequence[Reserved],
) -> None:
    """The rows of the accepted reservations and of their holds."""
    rows_out: list[dict[str, Any]] = []
    hold_rows: list[dict[str, Any]] = []
    for command, outcome in zip(commands, outcomes, strict=True):
        if not outcome.accepted:
            continue
        rows_out.append(
            {
                "id": command.reservation_id,
                "request_id": command.request_id,
                "project_id": command.project_id,
                "user_id": command.user_id,
                "key_id": command.key_id,
                "model": command.model,
                "provider": command.provider,
                "amount": outcome.account_hold,
                "max_micro_credits": command.max_micro_credits,
                "owner": command.owner,
                "created_at": command.created_at,
                "expires_at": command.expires_at,
            }
        )
        hold_rows.extend(
            {
                "reservation_id": command.reservation_id,
                "budget_id": hold.budget_id,
                "period_start": hold.period_start,
                "amount": hold.amount,
            }
            for hold in outcome.holds
        )
    for chunk in chunks(rows_out):
        run(connection, sql.insert_reservations, chunk)
    for chunk in chunks(hold_rows):
        run(connection, sql.insert_holds, chunk)


def _decide(
    command: ReserveCommand, available: dict[str, tuple[str, int]], room: dict[CounterKey, int]
) -> Reserved:
    """All of the command's holds fit, or it is refused (nothing is taken)."""
    account_hold = 0
    if command.lease_share:
        if command.project_id not in available:
            return Reserved(accepted=False, refused_by="account")
        return grant(command, *available[command.project_id])
    if command.account_hold > 0 and command.project_id in available:
        mode, left = available[command.project_id]
        if mode == "prepaid" and left < command.account_hold:
            return Reserved(accepted=False, refused_by="account")
        account_hold = command.account_hold
    holds: list[HoldRow] = []
    for hold in sorted(command.holds):
        left_on_counter = room.get((hold.budget_id, hold.period_start))
        if left_on_counter is None:
            continue  # deleted or made soft since the caller looked: it no longer holds
        if left_on_counter < hold.amount:
            return Reserved(accepted=False, refused_by=hold.budget_id)
        holds.append(hold)
    return Reserved(accepted=True, account_hold=account_hold, holds=tuple(holds))
