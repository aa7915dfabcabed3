"""What a stream waits for before its first byte (`gateway/stream.py`): whatever its outcome,
at once when it has ended already, and never past the cancellation of the stream's own task."""

from __future__ import annotations

import asyncio

import pytest

from oneflow_ai.gateway.stream import _settled


async def test_an_ended_wait_costs_no_turn_of_the_loop() -> None:
    loop = asyncio.get_running_loop()
    done, failed, cancelled = loop.create_future(), loop.create_future(), loop.create_future()
    done.set_result(None)
    failed.set_exception(RuntimeError("the database is away"))
    cancelled.cancel()
    turns = 0

    def tick() -> None:
        nonlocal turns
        turns += 1

    loop.call_soon(tick)
    for waiting in (done, failed, cancelled):
        await _settled(waiting)
    assert turns == 0


async def test_a_wait_that_fails_or_is_cancelled_later_ends_quietly() -> None:
    loop = asyncio.get_running_loop()
    failed, cancelled = loop.create_future(), loop.create_future()
    loop.call_soon(failed.set_exception, RuntimeError("the database is away"))
    loop.call_soon(cancelled.cancel)
    await asyncio.wait_for(_settled(failed), 1)
    await asyncio.wait_for(_settled(cancelled), 1)


async def test_the_cancellation_of_the_waiting_task_goes_through() -> None:
    waiting = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(_settled(waiting))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
