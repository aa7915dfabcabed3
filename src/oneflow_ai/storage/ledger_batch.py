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
from oneflow_ai.storage.dialect import chunks
from oneflow_ai.storage.direct_sql import (
    all_or_nothing,
    alone_possible,
    deferred_writes,
    run,
    run_all,
)
from oneflow_ai.storage.ledger_commands import (
    AccountRow,
    CheckpointCommand,
    Checkpointed,
    CounterChange,
    EntryCommand,
    EntryRow,
    LedgerCommand,
    LedgerResult,
    ReapCommand,
    RecordCommand,
    Recorded,
    ReleaseCommand,
    Released,
    ReserveCommand,
    SettleCommand,
    Settled,
)
from oneflow_ai.storage.ledger_holds import CounterKey, give_back, resolve, resolving
from oneflow_ai.storage.ledger_leases import draw, draw_whole, give_back_leases, held
from oneflow_ai.storage.ledger_recovery import checkpoint, checkpoint_writes, reap
from oneflow_ai.storage.ledger_reservations import reserve
from oneflow_ai.storage.ledger_statements import (
    LedgerStatements,
    charge_accounts,
    ledger_statements,
)
from oneflow_ai.storage.usage_store import insert_usage, usage_writes

__all__ = ["apply_batch", "post_entry"]


def apply_batch(connection: Connection, commands: Sequence[LedgerCommand]) -> list[LedgerResult]:
    """Apply ``commands`` in the open transaction; one result per command, in order.

    On PostgreSQL the writes whose outcome nothing here reads (a lease's draw, the accounts'
    balances, the usage records and rollups) travel together, a round trip for several
    (`deferred_writes`); a batch of settlements drawn from leases is first tried as one
    statement of its own (`_settle_from_leases`), and a batch of streams' checkpoints goes so
    (`_checkpoints_alone`)."""
    if alone_possible(connection):
        done = _settle_from_leases(connection, commands)
        if done is None:
            done = _checkpoints_alone(connection, commands)
        if done is not None:
            return done
    with deferred_writes(connection):
        return _apply(connection, commands)


def _settle_from_leases(
    connection: Connection, commands: Sequence[LedgerCommand]
) -> list[LedgerResult] | None:
    """The common batch on PostgreSQL: settlements of requests served from credit leases, with
    no hold or budget counter (a stream's reservation row, written by its checkpoints, holds
    nothing). If every charge is new, each lease holds the sum of its charges and every
    stream's row is still there, `_settle` would append the charges, delete the streams' rows,
    take each lease's sum out of it and out of its account's ``reserved`` and ``balance``, and
    record their usage; all of that goes as one statement in a transaction of its own
    (`all_or_nothing`: one round trip instead of four or five), which a charge already
    appended (a unique violation), a lease holding less or a row gone makes fail whole. Then,
    and for any other batch, None: nothing was written, and the batch takes the ordinary path,
    which reads what it assumed here."""
    leases: dict[str, int] = defaultdict(int)  # what each lease gives
    projects: dict[str, int] = defaultdict(int)  # and each account, summed over its leases
    project_of: dict[str, str] = {}
    for command in commands:
        if (
            not isinstance(command, SettleCommand)
            or command.lease_id is None
            or command.charge.amount > 0
            or command.account_hold
            or command.holds
            or command.usage_increments
            or project_of.setdefault(command.lease_id, command.charge.project_id)
            != command.charge.project_id
        ):
            return None
        leases[command.lease_id] -= command.charge.amount
        projects[command.charge.project_id] -= command.charge.amount
    settles: list[SettleCommand] = commands  # type: ignore[assignment]  # checked above
    streams = {c.reservation_id for c in settles if c.reservation_id is not None}
    takes = {lease: amount for lease, amount in leases.items() if amount > 0}
    if not takes or not streams.isdisjoint(leases):
        return None
    sql = ledger_statements(connection)
    checked = [draw_whole(takes)]
    checked.extend((sql.resolve, params, len(params["ids"])) for params in resolving([*streams]))
    moves = sorted((project, amount) for project, amount in projects.items() if amount > 0)
    usage = [c.record for c in settles if c.record is not None]
    done = all_or_nothing(
        connection,
        [
            (sql.insert_entries, [_entry_values(c.charge) for c in settles]),
            (
                charge_accounts(),
                {
                    "ps": [project for project, _ in moves],
                    "deltas": [-amount for _, amount in moves],
                    "releases": [amount for _, amount in moves],
                    "at": settles[0].charge.created_at,
                },
            ),
            *usage_writes(connection.dialect.name, usage),
        ],
        checked=checked,
    )
    if not done:
        return None
    return [Settled(charged=True, released=c.reservation_id is not None) for c in settles]


def _apply(connection: Connection, commands: Sequence[LedgerCommand]) -> list[LedgerResult]:
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
        reserved = reserve(connection, sql, [c for _, c in reserves])
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


def _checkpoints_alone(
    connection: Connection, commands: Sequence[LedgerCommand]
) -> list[LedgerResult] | None:
    """A batch of stream checkpoints alone (a stream's first is what its first byte waits
    for), each stream once: one upsert of all their rows, as a statement in a transaction of
    its own on PostgreSQL (one round trip instead of three). None for any other batch."""
    if not all(isinstance(c, CheckpointCommand) for c in commands):
        return None
    checkpoints: list[CheckpointCommand] = commands  # type: ignore[assignment]  # checked above
    streams = [p.reservation_id for c in checkpoints for p in c.progress]
    if not streams or len(set(streams)) != len(streams):
        return None
    everything = CheckpointCommand(tuple(p for c in checkpoints for p in c.progress))
    if not all_or_nothing(connection, checkpoint_writes(ledger_statements(connection), everything)):
        return None
    return [Checkpointed(written=len(c.progress)) for c in checkpoints]


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


# ---- settlements and releases --------------------------------------------------------------


def _settle(
    connection: Connection, sql: LedgerStatements, commands: Sequence[SettleCommand]
) -> list[Settled]:
    # The charges (which are new), the reservations (which were still active) and what the
    # leases drawn on still hold (locked): on PostgreSQL one statement, or two when there are
    # both reservations and leases, on the same table (`run_all`).
    charges = [
        (sql.insert_charges, chunk) for chunk in chunks([_entry_values(c.charge) for c in commands])
    ]
    resolves = [(sql.resolve, params) for params in resolving([c.reservation_id for c in commands])]
    leases = held(connection, [c.lease_id for c in commands if c.lease_id])
    found = run_all(connection, [*charges, *resolves, *leases])
    inserted = {row[0] for rows in found[: len(charges)] for row in rows}
    active = {row[0] for rows in found[len(charges) : len(charges) + len(resolves)] for row in rows}
    left = {row[0]: int(row[1]) for rows in found[len(charges) + len(resolves) :] for row in rows}
    tally = _Tally()
    flags = [tally.add(index, command, inserted, active) for index, command in enumerate(commands)]
    balance_delta, account_release = tally.balance_delta, tally.account_release
    counter_used, first_contributor = tally.counter_used, tally.first_contributor

    drawn = draw(
        connection,
        [
            (c.lease_id, -c.charge.amount)
            for c, (charged, _) in zip(commands, flags, strict=True)
            if charged and c.lease_id
        ],
        left,
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
    give_back(connection, sql, {}, tally.counter_release)
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


class _Tally:
    """What a batch of settlements moves, summed per account and budget counter."""

    def __init__(self) -> None:
        self.balance_delta: dict[str, int] = defaultdict(int)
        self.account_release: dict[str, int] = defaultdict(int)
        self.counter_release: dict[CounterKey, int] = defaultdict(int)
        self.counter_used: dict[CounterKey, int] = defaultdict(int)
        self.first_contributor: dict[CounterKey, int] = {}

    def add(
        self, index: int, command: SettleCommand, inserted: set[str], active: set[str]
    ) -> tuple[bool, bool]:
        """Count one settlement; whether it charged (its charge row is new) and released
        (its reservation was still active)."""
        charged = command.charge.request_id in inserted
        inserted.discard(command.charge.request_id or "")
        released = command.reservation_id in active
        active.discard(command.reservation_id or "")
        project_id = command.charge.project_id
        if charged:
            self.balance_delta[project_id] += command.charge.amount
            for increment in command.usage_increments:
                key = (increment.budget_id, increment.period_start)
                self.counter_used[key] += increment.amount
                self.first_contributor.setdefault(key, index)
        if released:
            self.account_release[project_id] += command.account_hold
            for hold in command.holds:
                self.counter_release[(hold.budget_id, hold.period_start)] += hold.amount
        return charged, released


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
