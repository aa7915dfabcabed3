"""Apply one batch of ledger commands in one transaction (the group-commit writer's ``apply``).

Phases run in a fixed order: heartbeat and reaping, top-ups and adjustments, reservations,
settlements, releases, usage records. Every phase starts with a write, so on SQLite the
transaction takes the write lock first (no read-to-write upgrade can fail half-way).

Hard limits are atomic conditional updates (both databases)::

    UPDATE ledger_accounts SET reserved = reserved + :x
     WHERE project_id = :p AND (mode = 'postpaid' OR balance - reserved >= :x)
    UPDATE budget_counters SET reserved = reserved + :x
     WHERE budget_id = :b AND period_start = :d
       AND used + reserved + :x <= (SELECT limit_value FROM budgets WHERE id = :b ...)

The row lock each update takes is held to commit, so no interleaving of transactions, in
this process or another replica, can hold more than the balance or the limit. A reservation
refused by its n-th hold gives back the holds it took before, in the same transaction.

Cached totals move with the rows they sum: an entry's amount is added to its account's
``balance`` and a hold to ``reserved`` in the same statement set, which is what makes
``balance == SUM(entries.amount)`` and ``reserved == SUM(active holds)`` invariants.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import delete, insert, literal, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from oneflow_ai.domain.usage_record import UsageRecord
from oneflow_ai.storage.dialect import chunks, upsert_insert
from oneflow_ai.storage.ledger_commands import (
    AccountRow,
    CounterChange,
    EntryCommand,
    EntryRow,
    HoldRow,
    LedgerCommand,
    LedgerResult,
    ReapCommand,
    Reaped,
    RecordCommand,
    Recorded,
    ReleaseCommand,
    Released,
    ReserveCommand,
    Reserved,
    SettleCommand,
    Settled,
)
from oneflow_ai.storage.tables import (
    Budget,
    BudgetCounter,
    LedgerAccount,
    LedgerEntry,
    LedgerOwner,
    LedgerReservation,
    ReservationHold,
    table_of,
)
from oneflow_ai.storage.usage_store import insert_usage

__all__ = ["apply_batch", "post_entry"]

accounts = table_of(LedgerAccount)
entries = table_of(LedgerEntry)
owners = table_of(LedgerOwner)
reservations = table_of(LedgerReservation)
holds_table = table_of(ReservationHold)
budgets = table_of(Budget)
counters = table_of(BudgetCounter)

CounterKey = tuple[str, date]


async def apply_batch(
    connection: AsyncConnection, commands: Sequence[LedgerCommand]
) -> list[LedgerResult]:
    """Apply ``commands`` in the open transaction; one result per command, in order."""
    results: list[LedgerResult | None] = [None] * len(commands)
    usage: list[UsageRecord] = []

    for i, command in enumerate(commands):
        if isinstance(command, ReapCommand):
            results[i] = await _reap(connection, command)
    for i, command in enumerate(commands):
        if isinstance(command, EntryCommand):
            results[i] = await post_entry(connection, command.entry, command.mode)

    reserves = [(i, c) for i, c in enumerate(commands) if isinstance(c, ReserveCommand)]
    if reserves:
        for i, outcome in zip(
            (i for i, _ in reserves),
            await _reserve(connection, [c for _, c in reserves]),
            strict=True,
        ):
            results[i] = outcome

    settles = [(i, c) for i, c in enumerate(commands) if isinstance(c, SettleCommand)]
    if settles:
        for i, settled in zip(
            (i for i, _ in settles),
            await _settle(connection, [c for _, c in settles]),
            strict=True,
        ):
            results[i] = settled

    releases = [(i, c) for i, c in enumerate(commands) if isinstance(c, ReleaseCommand)]
    if releases:
        active = await _resolve(connection, [c.reservation_id for _, c in releases])
        account_release: dict[str, int] = defaultdict(int)
        counter_release: dict[CounterKey, int] = defaultdict(int)
        for i, command in releases:
            released = command.reservation_id is not None and command.reservation_id in active
            active.discard(command.reservation_id or "")
            if released:
                account_release[command.project_id] += command.account_hold
                for hold in command.holds:
                    counter_release[(hold.budget_id, hold.period_start)] += hold.amount
            results[i] = Released(released=released)
        await _release_holds(connection, account_release, counter_release)

    for i, command in enumerate(commands):
        if isinstance(command, RecordCommand):
            results[i] = Recorded()
        record = getattr(command, "record", None)
        if record is not None:
            usage.append(record)
    await insert_usage(connection, usage)

    if any(result is None for result in results):
        raise TypeError("apply_batch got a command it does not know")
    return [result for result in results if result is not None]


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
        "price_table_version": entry.price_table_version,
        "estimated": entry.estimated,
        "user_id": entry.user_id,
        "key_id": entry.key_id,
        "note": entry.note,
        "created_at": entry.created_at,
    }


async def post_entry(
    connection: AsyncConnection, entry: EntryRow, mode: str | None = None
) -> AccountRow:
    """Append a top-up or adjustment and move the account's balance with it."""
    await connection.execute(insert(entries), [_entry_values(entry)])
    statement = upsert_insert(connection, accounts).values(
        project_id=entry.project_id,
        mode=mode or "postpaid",
        balance=entry.amount,
        reserved=0,
        updated_at=entry.created_at,
    )
    changes: dict[str, Any] = {
        "balance": accounts.c.balance + statement.excluded.balance,
        "updated_at": statement.excluded.updated_at,
    }
    if mode is not None:
        changes["mode"] = statement.excluded.mode
    statement = statement.on_conflict_do_update(index_elements=["project_id"], set_=changes)
    row = (
        await connection.execute(
            statement.returning(
                accounts.c.project_id, accounts.c.mode, accounts.c.balance, accounts.c.reserved
            )
        )
    ).one()
    return AccountRow(project_id=row[0], mode=row[1], balance=row[2], reserved=row[3])


# ---- reservations --------------------------------------------------------------------------


async def _reserve(
    connection: AsyncConnection, commands: Sequence[ReserveCommand]
) -> list[Reserved]:
    needed = sorted({(h.budget_id, h.period_start) for c in commands for h in c.holds})
    for budget_id, period_start in needed:
        await _ensure_counter(connection, budget_id, period_start)
    outcomes: list[Reserved] = []
    rows: list[dict[str, Any]] = []
    hold_rows: list[dict[str, Any]] = []
    for command in commands:
        outcome = await _take_holds(connection, command)
        outcomes.append(outcome)
        if not outcome.accepted:
            continue
        rows.append(
            {
                "id": command.reservation_id,
                "request_id": command.request_id,
                "project_id": command.project_id,
                "user_id": command.user_id,
                "key_id": command.key_id,
                "model": command.model,
                "provider": command.provider,
                "amount": command.account_hold,
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
    for chunk in chunks(rows):
        await connection.execute(insert(reservations), chunk)
    for chunk in chunks(hold_rows):
        await connection.execute(insert(holds_table), chunk)
    return outcomes


async def _ensure_counter(connection: AsyncConnection, budget_id: str, period: date) -> None:
    source = select(
        budgets.c.id, literal(period, counters.c.period_start.type), literal(0), literal(0)
    ).where(budgets.c.id == budget_id)
    statement = upsert_insert(connection, counters).from_select(
        ["budget_id", "period_start", "used", "reserved"], source
    )
    await connection.execute(statement.on_conflict_do_nothing())


async def _take_holds(connection: AsyncConnection, command: ReserveCommand) -> Reserved:
    amount = command.account_hold
    if amount > 0:
        taken = await connection.execute(
            update(accounts)
            .where(
                accounts.c.project_id == command.project_id,
                or_(
                    accounts.c.mode == "postpaid",
                    accounts.c.balance - accounts.c.reserved >= amount,
                ),
            )
            .values(reserved=accounts.c.reserved + amount, updated_at=command.created_at)
        )
        if taken.rowcount == 0:
            return Reserved(accepted=False, refused_by="account")
    applied: list[HoldRow] = []
    for hold in sorted(command.holds):
        limit = (
            select(budgets.c.limit_value)
            .where(budgets.c.id == hold.budget_id, budgets.c.mode == "hard")
            .scalar_subquery()
        )
        taken = await connection.execute(
            update(counters)
            .where(
                counters.c.budget_id == hold.budget_id,
                counters.c.period_start == hold.period_start,
                counters.c.used + counters.c.reserved + hold.amount <= limit,
            )
            .values(reserved=counters.c.reserved + hold.amount)
        )
        if taken.rowcount == 1:
            applied.append(hold)
            continue
        if not await _is_hard(connection, hold.budget_id):
            continue  # deleted or made soft since the caller looked: it no longer holds
        await _release_holds(
            connection,
            {command.project_id: amount},
            {(h.budget_id, h.period_start): h.amount for h in applied},
        )
        return Reserved(accepted=False, refused_by=hold.budget_id)
    return Reserved(accepted=True, holds=tuple(applied))


async def _is_hard(connection: AsyncConnection, budget_id: str) -> bool:
    found = await connection.execute(
        select(budgets.c.id).where(budgets.c.id == budget_id, budgets.c.mode == "hard")
    )
    return found.first() is not None


async def _release_holds(
    connection: AsyncConnection,
    account_release: dict[str, int],
    counter_release: dict[CounterKey, int],
) -> None:
    for project_id, amount in sorted(account_release.items()):
        if amount:
            await connection.execute(
                update(accounts)
                .where(accounts.c.project_id == project_id)
                .values(reserved=accounts.c.reserved - amount)
            )
    for (budget_id, period_start), amount in sorted(counter_release.items()):
        if amount:
            await connection.execute(
                update(counters)
                .where(counters.c.budget_id == budget_id, counters.c.period_start == period_start)
                .values(reserved=counters.c.reserved - amount)
            )


async def _resolve(connection: AsyncConnection, ids: Sequence[str | None]) -> set[str]:
    """Delete the given reservations; return those that were still active."""
    wanted = sorted({i for i in ids if i is not None})
    active: set[str] = set()
    for chunk in chunks(wanted):
        deleted = await connection.execute(
            delete(reservations).where(reservations.c.id.in_(chunk)).returning(reservations.c.id)
        )
        active.update(row[0] for row in deleted)
    return active


# ---- settlements ---------------------------------------------------------------------------


async def _settle(connection: AsyncConnection, commands: Sequence[SettleCommand]) -> list[Settled]:
    charges = [c.charge for c in commands]
    statement = (
        upsert_insert(connection, entries)
        .on_conflict_do_nothing(index_elements=["request_id"], index_where=text("kind = 'charge'"))
        .returning(entries.c.request_id)
    )
    inserted: set[str] = set()
    for chunk in chunks([_entry_values(c) for c in charges]):
        result = await connection.execute(statement, chunk)
        inserted.update(row[0] for row in result)
    active = await _resolve(connection, [c.reservation_id for c in commands])

    balance_delta: dict[str, int] = defaultdict(int)
    account_release: dict[str, int] = defaultdict(int)
    counter_release: dict[CounterKey, int] = defaultdict(int)
    counter_used: dict[CounterKey, int] = defaultdict(int)
    first_contributor: dict[CounterKey, int] = {}
    flags: list[tuple[bool, bool]] = []
    for index, command in enumerate(commands):
        request_id = command.charge.request_id or ""
        charged = request_id in inserted
        inserted.discard(request_id)
        released = command.reservation_id is not None and command.reservation_id in active
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

    for project_id in sorted(set(balance_delta) | set(account_release)):
        await _move_account(
            connection,
            project_id,
            balance_delta.get(project_id, 0),
            account_release.get(project_id, 0),
            commands[0].charge.created_at,
        )
    await _release_holds(connection, {}, counter_release)
    changes: dict[int, list[CounterChange]] = defaultdict(list)
    for key in sorted(counter_used):
        change = await _add_used(connection, key, counter_used[key])
        if change is not None:
            changes[first_contributor[key]].append(change)
    return [
        Settled(charged=charged, released=released, counters=tuple(changes.get(index, ())))
        for index, (charged, released) in enumerate(flags)
    ]


async def _move_account(
    connection: AsyncConnection, project_id: str, delta: int, release: int, at: datetime
) -> None:
    if release:
        await connection.execute(
            update(accounts)
            .where(accounts.c.project_id == project_id)
            .values(
                balance=accounts.c.balance + delta,
                reserved=accounts.c.reserved - release,
                updated_at=at,
            )
        )
        return
    if not delta:
        return
    statement = upsert_insert(connection, accounts).values(
        project_id=project_id, mode="postpaid", balance=delta, reserved=0, updated_at=at
    )
    await connection.execute(
        statement.on_conflict_do_update(
            index_elements=["project_id"],
            set_={
                "balance": accounts.c.balance + statement.excluded.balance,
                "updated_at": statement.excluded.updated_at,
            },
        )
    )


async def _add_used(
    connection: AsyncConnection, key: CounterKey, amount: int
) -> CounterChange | None:
    budget_id, period_start = key
    source = select(
        budgets.c.id,
        literal(period_start, counters.c.period_start.type),
        literal(amount),
        literal(0),
    ).where(budgets.c.id == budget_id)
    statement = upsert_insert(connection, counters).from_select(
        ["budget_id", "period_start", "used", "reserved"], source
    )
    upsert = statement.on_conflict_do_update(
        index_elements=["budget_id", "period_start"],
        set_={"used": counters.c.used + statement.excluded.used},
    ).returning(counters.c.used)
    row = (await connection.execute(upsert)).first()
    if row is None:  # the budget was deleted meanwhile
        return None
    used_after = int(row[0])
    return CounterChange(budget_id, period_start, used_after - amount, used_after)


# ---- reaping -------------------------------------------------------------------------------


async def _reap(connection: AsyncConnection, command: ReapCommand) -> Reaped:
    if command.retire:
        await connection.execute(delete(owners).where(owners.c.owner == command.owner))
    else:
        statement = upsert_insert(connection, owners).values(
            owner=command.owner, started_at=command.now, heartbeat_at=command.now
        )
        await connection.execute(
            statement.on_conflict_do_update(
                index_elements=["owner"], set_={"heartbeat_at": statement.excluded.heartbeat_at}
            )
        )
    alive = select(owners.c.owner).where(owners.c.heartbeat_at >= command.stale_before)
    dead = or_(
        reservations.c.expires_at < command.now,
        (reservations.c.owner != command.owner) & reservations.c.owner.not_in(alive),
    )
    if command.release_own:
        dead = or_(dead, reservations.c.owner == command.owner)
    candidates = (
        await connection.execute(
            select(reservations.c.id, reservations.c.project_id, reservations.c.amount).where(dead)
        )
    ).all()
    released = 0
    for chunk in chunks(candidates):
        by_id = {row[0]: (row[1], int(row[2])) for row in chunk}
        held = (
            await connection.execute(
                select(
                    holds_table.c.reservation_id,
                    holds_table.c.budget_id,
                    holds_table.c.period_start,
                    holds_table.c.amount,
                ).where(holds_table.c.reservation_id.in_(list(by_id)))
            )
        ).all()
        gone = await _resolve(connection, list(by_id))
        account_release: dict[str, int] = defaultdict(int)
        counter_release: dict[CounterKey, int] = defaultdict(int)
        for reservation_id in gone:
            project_id, amount = by_id[reservation_id]
            account_release[project_id] += amount
        for reservation_id, budget_id, period_start, amount in held:
            if reservation_id in gone:
                counter_release[(budget_id, period_start)] += int(amount)
        await _release_holds(connection, account_release, counter_release)
        released += len(gone)
    # Dead owners hold nothing any more (their reservations were released just above).
    await connection.execute(
        delete(owners).where(
            owners.c.heartbeat_at < command.stale_before, owners.c.owner != command.owner
        )
    )
    return Reaped(released=released)
