"""A stream tracked again as it opens with a `PricedProbe` keeps (or replaces) its first
checkpoint by the model the probe names, without measuring what it delivered."""

from __future__ import annotations

import asyncio

import pytest

from oneflow_ai.billing.checkpoints import Delivered, PricedProbe
from oneflow_ai.storage.ledger_commands import Checkpointed
from tests.billing.test_checkpoints import _checkpoints, _delivered, _reservation, _Writer


@pytest.mark.parametrize("model", ["gpt-4o", "gpt-4o-mini"])
async def test_the_model_named_decides_without_measuring(model: str) -> None:
    writer = _Writer()
    checkpoints = _checkpoints(writer)
    reservation = _reservation("a")
    early = checkpoints.track(reservation, _delivered)  # priced on gpt-4o
    await asyncio.sleep(0)
    writer.pending[0].set_result(Checkpointed(written=1))
    measured: list[Delivered | None] = []

    def measure() -> Delivered | None:
        measured.append(delivered := _delivered(model))
        return delivered

    opened = checkpoints.track(reservation, PricedProbe(measure, lambda: model))
    assert opened is not None
    if model == "gpt-4o":  # the first checkpoint stands: nothing measured, nothing written
        assert opened is early and measured == []
        await asyncio.sleep(0)
        assert len(writer.commands) == 1
    else:  # another model answers: a first checkpoint of its own, waited for
        assert opened is not early
        await asyncio.sleep(0)
        assert [row.model for row in writer.commands[1].progress] == [model]
        assert not opened.done()
        writer.pending[1].set_result(Checkpointed(written=1))
    await asyncio.wait_for(opened, 1)
