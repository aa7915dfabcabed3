"""Recovery writes of the ledger: stream checkpoints, heartbeats and reaping what dead
owners left (one phase each of :func:`oneflow_ai.storage.ledger_batch.apply_batch`)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy.engine import Connection
from sqlalchemy.sql import Executable

from oneflow_ai.storage.dialect import chunks
from oneflow_ai.storage.direct_sql import run
from oneflow_ai.storage.ledger_commands import (
    CheckpointCommand,
    Checkpointed,
    HoldRow,
    Interrupted,
    ReapCommand,
    Reaped,
)
from oneflow_ai.storage.ledger_holds import CounterKey, give_back, resolve
from oneflow_ai.storage.ledger_statements import LedgerStatements

__all__ = ["checkpoint", "checkpoint_writes", "reap"]


def checkpoint(
    connection: Connection, sql: LedgerStatements, command: CheckpointCommand
) -> Checkpointed:
    written = 0
    for statement, rows in checkpoint_writes(sql, command):
        run(connection, statement, rows)
        written += len(rows)
    return Checkpointed(written=written)


def checkpoint_writes(
    sql: LedgerStatements, command: CheckpointCommand
) -> list[tuple[Executable, list[dict[str, Any]]]]:
    """The upserts `checkpoint` runs, each with its rows (one per stream)."""
    rows = [
        {
            "id": p.reservation_id,
            "amount": 0,
            "max_micro_credits": 0,
            "request_id": p.request_id,
            "project_id": p.project_id,
            "user_id": p.user_id,
            "key_id": p.key_id,
            "model": p.model,
            "provider": p.provider,
            "owner": p.owner,
            "created_at": p.created_at,
            "expires_at": p.expires_at,
            "input_tokens": p.input_tokens,
            "output_tokens": p.output_tokens,
            "micro_credits": p.micro_credits,
            "price_table_version": p.price_table_version,
            "at": p.at,
        }
        for p in sorted(command.progress, key=lambda p: p.reservation_id)
    ]
    return [(sql.checkpoint, chunk) for chunk in chunks(rows)]


# ---- reaping -------------------------------------------------------------------------------


def reap(connection: Connection, sql: LedgerStatements, command: ReapCommand) -> Reaped:
    params = {
        "owner": command.owner,
        "now": command.now,
        "stale": command.stale_before,
        "previous_of": command.previous_of,
    }
    if command.retire:
        run(connection, sql.retire, {"owner": command.owner})
    else:
        run(
            connection,
            sql.heartbeat,
            {"owner": command.owner, "now": command.now, "instance": command.instance},
        )
    interrupted = _interrupted(
        connection,
        sql,
        sql.dead_or_own_checkpoints if command.release_own else sql.dead_checkpoints,
        params,
    )
    candidates = (
        run(
            connection,
            sql.dead_or_own_reservations if command.release_own else sql.dead_reservations,
            params,
        )
    ).all()
    released = 0
    for chunk in chunks(candidates):
        by_id = {row[0]: (row[1], int(row[2])) for row in chunk}
        held = (run(connection, sql.holds_of, {"ids": list(by_id)})).all()
        gone = resolve(connection, sql, list(by_id))
        account_release: dict[str, int] = defaultdict(int)
        counter_release: dict[CounterKey, int] = defaultdict(int)
        for reservation_id in gone:
            project_id, amount = by_id[reservation_id]
            account_release[project_id] += amount
        for reservation_id, budget_id, period_start, amount in held:
            if reservation_id in gone:
                counter_release[(budget_id, period_start)] += int(amount)
        give_back(connection, sql, account_release, counter_release)
        released += len(gone)
    # Dead owners hold nothing any more (their reservations were released just above; those
    # with a checkpoint are settled next, and their rows say whose they were).
    run(connection, sql.purge_owners, params)
    return Reaped(released=released, interrupted=interrupted)


def _interrupted(
    connection: Connection, sql: LedgerStatements, statement: Any, params: dict[str, Any]
) -> tuple[Interrupted, ...]:
    """The checkpointed reservations of dead owners, with their holds (left in place: the
    settlement that charges them releases them, once)."""
    rows = run(connection, statement, params).all()
    if not rows:
        return ()
    held: dict[str, list[HoldRow]] = defaultdict(list)
    for chunk in chunks([row[0] for row in rows]):
        for reservation_id, budget_id, period_start, amount in run(
            connection, sql.holds_of, {"ids": chunk}
        ).all():
            held[reservation_id].append(HoldRow(budget_id, period_start, int(amount)))
    return tuple(
        Interrupted(
            reservation_id=row[0],
            project_id=row[1],
            account_hold=int(row[2]),
            request_id=row[3],
            user_id=row[4],
            key_id=row[5],
            model=row[6],
            provider=row[7],
            input_tokens=int(row[8] or 0),
            output_tokens=int(row[9] or 0),
            micro_credits=int(row[10] or 0),
            price_table_version=row[11],
            created_at=row[12],
            holds=tuple(sorted(held.get(row[0], ()))),
        )
        for row in rows
    )
