"""The ledger's spool: commands survive as written, are replayed in order, a torn last line
(a crash in the middle of a write) is skipped, an unreadable one is kept aside, and a replay
that fails half-way leaves everything for the next one."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from oneflow_ai.domain.usage_record import AttemptSummary, RequestRoute, UsageRecord
from oneflow_ai.storage.ledger_commands import (
    EntryRow,
    HoldRow,
    RecordCommand,
    ReleaseCommand,
    SettleCommand,
)
from oneflow_ai.storage.spool import SettlementSpool, SpooledCommand, decode, encode

AT = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def _settle(n: int) -> SettleCommand:
    return SettleCommand(
        charge=EntryRow(
            project_id="p",
            kind="charge",
            amount=-1_250 * n,
            created_at=AT,
            request_id=f"r{n}",
            model="gpt-4o",
            provider="openai",
            input_tokens=10,
            output_tokens=n,
        ),
        reservation_id=f"res{n}",
        account_hold=5_000,
        holds=(HoldRow("b1", date(2026, 12, 1), 7),),
        usage_increments=(HoldRow("b1", date(2026, 12, 1), 11),),
        record=UsageRecord(
            request_id=f"r{n}",
            occurred_at=AT,
            status=200,
            micro_credits=1_250,
            route=RequestRoute(
                model_requested="auto",
                strategy="cost",
                fallbacks=1,
                candidates=("gpt-4o", "claude-3-haiku-20240307"),
                attempts=(AttemptSummary("gpt-4o", "openai", 12, "overloaded", 529),),
            ),
        ),
    )


def test_every_command_comes_back_as_it_was_written() -> None:
    record = RecordCommand(UsageRecord(request_id="x", occurred_at=AT, status=402), once=True)
    release = ReleaseCommand("res", "p", 10, (), None)
    for command in (_settle(3), record, release):
        assert decode(encode(command)) == command


async def test_replay_applies_in_order_and_empties_the_spool(tmp_path: Path) -> None:
    spool = SettlementSpool(tmp_path / "spool.jsonl")
    for n in range(5):
        await spool.append(_settle(n))
    assert spool.pending == 5
    applied: list[SpooledCommand] = []

    async def apply(commands: Sequence[SpooledCommand]) -> None:
        applied.extend(commands)

    assert await spool.replay(apply) == 5
    assert applied == [_settle(n) for n in range(5)]
    assert spool.pending == 0 and not spool.path.exists() and not spool.replaying_path.exists()
    assert await spool.replay(apply) == 0
    await spool.close()


async def test_a_failed_replay_keeps_everything_and_a_restart_finds_it(tmp_path: Path) -> None:
    path = tmp_path / "spool.jsonl"
    spool = SettlementSpool(path)
    for n in range(3):
        await spool.append(_settle(n))

    async def unreachable(commands: Sequence[SpooledCommand]) -> None:
        raise ConnectionError("still away")

    with pytest.raises(ConnectionError):
        await spool.replay(unreachable)
    await spool.append(_settle(3))  # written meanwhile: after the ones being replayed
    await spool.close()

    restarted = SettlementSpool(path)  # a new process finds both files
    assert restarted.pending == 4
    applied: list[SpooledCommand] = []

    async def apply(commands: Sequence[SpooledCommand]) -> None:
        applied.extend(commands)

    assert await restarted.replay(apply) == 4
    assert applied == [_settle(n) for n in range(4)]
    await restarted.close()


async def test_a_torn_last_line_is_skipped_and_a_bad_line_kept_aside(tmp_path: Path) -> None:
    path = tmp_path / "spool.jsonl"
    path.write_bytes(encode(_settle(1)) + b"not json\n" + encode(_settle(2)) + b'{"$": "Sett')
    spool = SettlementSpool(path)
    applied: list[SpooledCommand] = []

    async def apply(commands: Sequence[SpooledCommand]) -> None:
        applied.extend(commands)

    await spool.replay(apply)
    assert applied == [_settle(1), _settle(2)]
    assert (tmp_path / "spool.jsonl.rejected").read_bytes() == b"not json\n"
    await spool.close()
