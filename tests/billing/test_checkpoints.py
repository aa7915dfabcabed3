"""A stream's first checkpoint gates what its caller receives: `track` hands back a future
that is done only once the checkpoint is committed (or could not be), so a stream whose caller
received anything is charged at least its prompt, even if the process dies at once. It is
written when the upstream call starts; tracking the stream again when it opens waits for that
one, or writes a new one when another model answers."""

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


def _delivered(model: str = "gpt-4o") -> Delivered:
    usage = Usage(input_tokens=12, output_tokens=0, estimated=True)
    return Delivered(usage, PRICING.price(model, usage), "openai")


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


async def test_a_stream_that_opens_on_the_model_first_tried_waits_for_the_first_checkpoint() -> (
    None
):
    writer = _Writer()
    checkpoints = _checkpoints(writer)
    reservation = _reservation("a")
    early = checkpoints.track(reservation, _delivered)  # when the upstream call starts
    await asyncio.sleep(0)
    assert len(writer.commands) == 1
    opened = checkpoints.track(reservation, lambda: _delivered())  # the stream opens
    assert opened is early and not opened.done()
    await asyncio.sleep(0)
    assert len(writer.commands) == 1  # nothing written twice
    writer.pending[0].set_result(Checkpointed(written=1))
    await asyncio.wait_for(opened, 1)


async def test_a_stream_that_opens_before_its_first_checkpoint_is_queued_queues_one() -> None:
    writer = _Writer()
    checkpoints = _checkpoints(writer)
    reservation = _reservation("a")
    early = checkpoints.track(reservation, _delivered)
    opened = checkpoints.track(reservation, lambda: _delivered("gpt-4o-mini"))  # same turn
    assert opened is early
    await asyncio.sleep(0)
    [command] = writer.commands
    assert [row.model for row in command.progress] == ["gpt-4o-mini"]  # the probe of the open


async def test_a_fallback_model_gets_a_first_checkpoint_of_its_own() -> None:
    writer = _Writer()
    checkpoints = _checkpoints(writer)
    reservation = _reservation("a")
    early = checkpoints.track(reservation, _delivered)
    await asyncio.sleep(0)
    writer.pending[0].set_result(Checkpointed(written=1))
    opened = checkpoints.track(reservation, lambda: _delivered("gpt-4o-mini"))
    assert opened is not None and opened is not early
    await asyncio.sleep(0)
    assert [row.model for row in writer.commands[1].progress] == ["gpt-4o-mini"]
    await asyncio.sleep(0.01)
    assert not opened.done()  # priced on the model answering before anything is sent
    writer.pending[1].set_result(Checkpointed(written=1))
    await asyncio.wait_for(opened, 1)


async def test_a_first_checkpoint_that_could_not_be_priced_is_written_when_the_stream_opens() -> (
    None
):
    writer = _Writer()
    checkpoints = _checkpoints(writer)
    reservation = _reservation("a")
    early = checkpoints.track(reservation, lambda: None)
    await asyncio.sleep(0)
    assert writer.commands == [] and early is not None and early.done()
    opened = checkpoints.track(reservation, _delivered)
    assert opened is not None and not opened.done()
    await asyncio.sleep(0)
    assert len(writer.commands) == 1
