"""A stream tracked again as it opens with a `PricedProbe` keeps (or replaces) its first
checkpoint by the model the probe names, without measuring what it delivered."""

from __future__ import annotations

import asyncio

from oneflow_ai.billing.checkpoints import Delivered, PricedProbe
from oneflow_ai.storage.ledger_commands import Checkpointed
from tests.billing.test_checkpoints import _checkpoints, _delivered, _reservation, _Writer


async def test_the_same_model_keeps_the_first_checkpoint_without_measuring() -> None:
    writer = _Writer()
    checkpoints = _checkpoints(writer)
    reservation = _reservation("a")
    early = checkpoints.track(reservation, _delivered)
    await asyncio.sleep(0)
    measured: list[Delivered | None] = []

    def measure() -> Delivered | None:
        measured.append(delivered := _delivered())
        return delivered

    opened = checkpoints.track(reservation, PricedProbe(measure, lambda: "gpt-4o"))
    assert opened is early and measured == []
    writer.pending[0].set_result(Checkpointed(written=1))
    await asyncio.wait_for(opened, 1)
    assert len(writer.commands) == 1


async def test_another_model_gets_a_first_checkpoint_of_its_own() -> None:
    writer = _Writer()
    checkpoints = _checkpoints(writer)
    reservation = _reservation("a")
    early = checkpoints.track(reservation, _delivered)
    await asyncio.sleep(0)
    writer.pending[0].set_result(Checkpointed(written=1))
    probe = PricedProbe(lambda: _delivered("gpt-4o-mini"), lambda: "gpt-4o-mini")
    opened = checkpoints.track(reservation, probe)
    assert opened is not None and opened is not early
    await asyncio.sleep(0)
    assert [row.model for row in writer.commands[1].progress] == ["gpt-4o-mini"]
    assert not opened.done()
    writer.pending[1].set_result(Checkpointed(written=1))
    await asyncio.wait_for(opened, 1)
