"""A stream's first checkpoint gates what its caller receives: `track` hands back a future
that is done only once the checkpoint is committed (or could not be), so a stream whose caller
received anything is charged at least its prompt, even if the process dies at once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from oneflow_ai.billing import PricingEngine
from oneflow_ai.billing.checkpoints import Checkpoints, Delivered
from oneflow_ai.billing.reservation import Reservation
from oneflow_ai.domain.usage import Usage
from oneflow_ai.storage.ledger_commands import CheckpointCommand, Checkpointed, LedgerResult

PRICING = PricingEngine()


def _reservation(request_id: str) -> Reservation:
    return Reservation(
        id=f"res-{request_id}",
        request_id=request_id,
        project_id="p1",
        model="gpt-4o",
        provider="openai",
        max_cost=None,
        created_at=datetime.now(UTC),
        limited=True,
    )


def _delivered() -> Delivered:
    usage = Usage(input_tokens=12, output_tokens=0, estimated=True)
    return Delivered(usage, PRICING.price("gpt-4o", usage), "openai")


class _Writer:
    """A group-commit writer whose commits the test decides."""

    def __init__(self) -> None:
        self.commands: list[CheckpointCommand] = []
        self.pending: list[asyncio.Future[LedgerResult]] = []

    def submit(self, command: CheckpointCommand) -> asyncio.Future[LedgerResult]:
        self.commands.append(command)
        future: asyncio.Future[LedgerResult] = asyncio.get_running_loop().create_future()
        self.pending.append(future)
        return future


def _checkpoints(writer: _Writer) -> Checkpoints:
    return Checkpoints(
        writer.submit,
        owner="test",
        interval=60.0,
        reservation_ttl=300.0,
        clock=lambda: datetime.now(UTC),
    )


async def test_the_first_checkpoint_is_waited_for_until_it_commits() -> None:
    writer = _Writer()
    checkpoints = _checkpoints(writer)
    first = checkpoints.track(_reservation("a"), _delivered)
    second = checkpoints.track(_reservation("b"), _delivered)
    assert first is not None and second is not None
    await asyncio.sleep(0)  # the loop turn that writes the streams that just started
    assert len(writer.commands) == 1 and len(writer.commands[0].progress) == 2
    await asyncio.sleep(0.01)
    assert not first.done() and not second.done()  # nothing may reach the callers yet
    writer.pending[0].set_result(Checkpointed(written=2))
    await asyncio.wait_for(asyncio.gather(first, second), 1)


async def test_a_checkpoint_that_fails_does_not_hold_the_stream() -> None:
    writer = _Writer()
    checkpoints = _checkpoints(writer)
    opened = checkpoints.track(_reservation("a"), _delivered)
    assert opened is not None
    await asyncio.sleep(0)
    writer.pending[0].set_exception(ConnectionError("database away"))
    await asyncio.wait_for(opened, 1)  # the spool and the next round take over


async def test_nothing_to_wait_for_without_checkpoints() -> None:
    writer = _Writer()
    disabled = Checkpoints(
        writer.submit, owner="t", interval=0, reservation_ttl=1, clock=lambda: datetime.now(UTC)
    )
    assert disabled.track(_reservation("a"), _delivered) is None
