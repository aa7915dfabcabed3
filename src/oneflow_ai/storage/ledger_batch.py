"""Apply one batch of ledger commands in one transaction (the group-commit writer's ``apply``).

Phases run in a fixed order: heartbeat and reaping, top-ups and adjustments, reservations,
stream checkpoints, settlements, releases, usage records (a settlement's record only when it
charged: settling a request again, from a replayed spool or by two processes, records
nothing twice). Every phase starts with a write, so on SQLite the
transaction holds the write lock before it reads anything (no read-to-write upgrade can fail
half-way, and what it reads is the latest state).

Hard limits are atomic conditional updates (the same SQL on both databases)::

    UPDATE ledger_accounts SET reserved = reserved + :x
     WHERE project_id = :p AND (mode = 'postpaid' OR balance - reserved >= :x)
    UPDATE budget_counters SET reserved = reserved + :x
     WHERE budget_id = :b AND period_start = :d
       AND used + reserved + :x <= (SELECT limit_value FROM budgets WHERE id = :b AND ...)

Each update checks and changes the row in one statement, and the row lock it takes is held to
commit, so no interleaving of transactions, in this process or in another replica, can hold
more than the balance or the limit. A reservation refused by one of its holds gives back the
ones it took before, in the same transaction.

Cached totals move with the rows they sum: an entry's amount is added to its account's
``balance``, and a hold to ``reserved``, in the same transaction, which is what keeps
``balance == SUM(entries.amount)`` and ``reserved == SUM(active holds)`` true.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from oneflow_ai.domain.usage_record import UsageRecord
from oneflow_ai.storage.database import BEGINS_IMMEDIATE
from oneflow_ai.storage.dialect import chunks
from oneflow_ai.storage.direct_sql import run
from oneflow_ai.storage.ledger_commands import (
    AccountRow,
    CheckpointCommand,
    CounterChange,
    EntryCommand,
    EntryRow,
    HoldRow,
    LedgerCommand,
    LedgerResult,
    ReapCommand,
    RecordCommand,
    Recorded,
    ReleaseCommand,
    Released,
    ReserveCommand,
    Reserved,
    SettleCommand,
    Settled,
)
from oneflow_ai.storage.ledger_holds import CounterKey, give_back, resolve, shift_reserved
from oneflow_ai.storage.ledger_leases import draw, give_back_leases, grant
from oneflow_ai.storage.ledger_recovery import checkpoint, reap
from oneflow_ai.storage.ledger_statements import LedgerStatements, ledger_statements
from oneflow_ai.storage.usage_store import insert_usage

__all__ = ["apply_batch", "post_entry"]


def apply_batch(connection: Connection, commands: Sequence[LedgerCommand]) -> list[LedgerResult]:
    """Apply ``commands`` in the open transaction; one result per command, in order."""
    sql = ledger_statements(connection)
    results: dict[int, LedgerResult] = {}

    for i, command in enumerate(commands):
        if isinstance(command, ReapCommand):
            results[i] = reap(connection, sql, command)
    for i, command in enumerate(commands):
        if isinstance(command, EntryCommand):
            results[i] = post_entry(connection, command.entry, command.mode)

    reserves = [(i, c) for i, c in enumerate(commands) if isinstance(c, ReserveCommand)]
    if reserves:
        reserved = _reserve(connection, sql, [c for _, c in reserves])
        results.update(zip((i for i, _ in reserves), reserved, strict=True))
    for i, command in enumerate(commands):
        if isinstance(command, CheckpointCommand):
            results[i] = checkpoint(connection, sql, command)
    settles = [(i, c) for i, c in enumerate(commands) if isinstance(c, SettleCommand)]
    if settles:
        settled = _settle(connection, sql, [c for _, c in settles])
        results.update(zip((i for i, _ in settles), settled, strict=True))
    releases = [(i, c) for i, c in enumerate(commands) if isinstance(c, ReleaseCommand)]
    if releases:
        released = _release(connection, sql, [c for _, c in releases])
        results.update(zip((i for i, _ in releases), released, strict=True))

    usage: list[UsageRecord] = []
    once = {c.record.request_id for c in commands if isinstance(c, RecordCommand) and c.once}
    recorded = _recorded(connection, sql, once) if once else set()
    for i, command in enumerate(commands):
        if isinstance(command, RecordCommand):
            results[i] = Recorded()
            if command.once and command.record.request_id in recorded:
                continue
            usage.append(command.record)
            if command.once:
                recorded.add(command.record.request_id)
        elif isinstance(command, ReleaseCommand) and command.record is not None:
            usage.append(command.record)
        elif isinstance(command, SettleCommand) and command.record is not None:
            outcome = results[i]
            if isinstance(outcome, Settled) and outcome.charged:
                usage.append(command.record)
    insert_usage(connection, usage)

    if len(results) != len(commands):
        raise TypeError("apply_batch got a command it does not know")
    return [results[i] for i in range(len(commands))]


def _recorded(connection: Connection, sql: LedgerStatements, request_ids: set[str]) -> set[str]:
    """Which of these requests have a usage record already."""
    found: set[str] = set()
    for chunk in chunks(sorted(request_ids)):
        found.update(row[0] for row in run(connection, sql.recorded, {"ids": chunk}))
    return found


# ---- entries -------------------------------------------------------------------------------


def _entry_values(entry: EntryRow) -> dict[str, Any]:
    return {
        "project_id": entry.project_id,
        "kind": entry.kind,
        "amount": entry.amount,
        "request_id": entry.request_id,
        "model": entry.model,
        "provider": entry.provider,
        "input_tokens": entry.input_tokens,
        "output_tokens": entry.output_tokens,
        "images": entry.images,
        "characters": entry.characters,
        "audio_seconds": entry.audio_seconds,
        "price_table_version": entry.price_table_version,
        "estimated": entry.estimated,
        "user_id": entry.user_id,
        "key_id": entry.key_id,
        "note": entry.note,
        "created_at": entry.created_at,
    }


def post_entry(connection: Connection, entry: EntryRow, mode: str | None = None) -> AccountRow:
    """Append a top-up or adjustment and move the account's balance with it; with ``mode``
    set the account's billing mode too (a new account is postpaid otherwise)."""
    sql = ledger_statements(connection)
    run(connection, sql.insert_entries, [_entry_values(entry)])
    row = (
        run(
            connection,
            sql.upsert_topup if mode is not None else sql.upsert_topup_keep_mode,
            {
                "project_id": entry.project_id,
                "mode": mode or "postpaid",
                "amount": entry.amount,
                "at": entry.created_at,
            },
        )
    ).one()
    return AccountRow(project_id=row[0], mode=row[1], balance=int(row[2]), reserved=int(row[3]))


# ---- reservations --------------------------------------------------------------------------


def _reserve(
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
    return outcomes


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


# ---- settlements and releases --------------------------------------------------------------


def _settle(
    connection: Connection, sql: LedgerStatements, commands: Sequence[SettleCommand]
) -> list[Settled]:
    inserted: set[str] = set()
    for chunk in chunks([_entry_values(c.charge) for c in commands]):
        result = run(connection, sql.insert_charges, chunk)
        inserted.update(row[0] for row in result)
    active = resolve(connection, sql, [c.reservation_id for c in commands])

    balance_delta: dict[str, int] = defaultdict(int)
    account_release: dict[str, int] = defaultdict(int)
    counter_release: dict[CounterKey, int] = defaultdict(int)
    counter_used: dict[CounterKey, int] = defaultdict(int)
    first_contributor: dict[CounterKey, int] = {}
    flags: list[tuple[bool, bool]] = []
    for index, command in enumerate(commands):
        charged = command.charge.request_id in inserted
        inserted.discard(command.charge.request_id or "")
        released = command.reservation_id in active
        active.discard(command.reservation_id or "")
        project_id = command.charge.project_id
        if charged:
            balance_delta[project_id] += command.charge.amount
            for increment in command.usage_increments:
                key = (increment.budget_id, increment.period_start)
                counter_used[key] += increment.amount
                first_contributor.setdefault(key, index)
        if released:
            account_release[project_id] += command.account_hold
            for hold in command.holds:
                counter_release[(hold.budget_id, hold.period_start)] += hold.amount
        flags.append((charged, released))

    drawn = draw(
        connection,
        [
            (c.lease_id, -c.charge.amount)
            for c, (charged, _) in zip(commands, flags, strict=True)
            if charged and c.lease_id
        ],
    )
    for command in commands:  # what a lease gave up for a charge leaves ``reserved`` with it
        if command.lease_id in drawn:
            account_release[command.charge.project_id] += drawn.pop(command.lease_id)

    at = commands[0].charge.created_at
    for project_id in sorted(set(balance_delta) | set(account_release)):
        _move_account(
            connection,
            sql,
            project_id,
            balance_delta.get(project_id, 0),
            account_release.get(project_id, 0),
            at,
        )
    give_back(connection, sql, {}, counter_release)
    changes: dict[int, list[CounterChange]] = defaultdict(list)
    for (budget_id, period_start), amount in sorted(counter_used.items()):
        row = (
            run(connection, sql.add_used, {"b": budget_id, "d": period_start, "x": amount})
        ).first()
        if row is not None:  # None: the budget was deleted meanwhile
            used = int(row[0])
            changes[first_contributor[(budget_id, period_start)]].append(
                CounterChange(budget_id, period_start, used - amount, used)
            )
    return [
        Settled(charged=charged, released=released, counters=tuple(changes.get(index, ())))
        for index, (charged, released) in enumerate(flags)
    ]


def _move_account(
    connection: Connection,
    sql: LedgerStatements,
    project_id: str,
    delta: int,
    release: int,
    at: datetime,
) -> None:
    if release:  # the account exists: the hold was taken on it
        run(
            connection,
            sql.charge_account,
            {"p": project_id, "delta": delta, "release": release, "at": at},
        )
    elif delta:
        run(connection, sql.upsert_balance, {"p": project_id, "delta": delta, "at": at})


def _release(
    connection: Connection, sql: LedgerStatements, commands: Sequence[ReleaseCommand]
) -> list[Released]:
    leases = give_back_leases(
        connection, [c.reservation_id for c in commands if c.lease and c.reservation_id]
    )
    active = resolve(connection, sql, [c.reservation_id for c in commands if not c.lease])
    account_release: dict[str, int] = defaultdict(int)
    counter_release: dict[CounterKey, int] = defaultdict(int)
    for project_id, amount in leases.values():
        account_release[project_id] += amount
    outcomes: list[Released] = []
    for command in commands:
        if command.lease:
            outcomes.append(Released(released=command.reservation_id in leases))
            continue
        released = command.reservation_id in active
        active.discard(command.reservation_id or "")
        if released:
            account_release[command.project_id] += command.account_hold
            for hold in command.holds:
                counter_release[(hold.budget_id, hold.period_start)] += hold.amount
        outcomes.append(Released(released=released))
    give_back(connection, sql, account_release, counter_release)
    return outcomes
