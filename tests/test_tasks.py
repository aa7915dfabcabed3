from __future__ import annotations

import asyncio

from oneflow_ai.tasks import stop


async def test_stop_a_task_that_swallows_its_cancellation() -> None:
    swallowed = 0

    async def stubborn() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:  # as a library that hides cancellation would
                swallowed += 1
                if swallowed == 3:
                    raise

    task = asyncio.get_running_loop().create_task(stubborn())
    await asyncio.sleep(0)
    await asyncio.wait_for(stop(task, poll=0.01), timeout=5)
    assert task.cancelled() and swallowed == 3


async def test_stop_is_quiet_about_finished_and_failed_tasks() -> None:
    async def boom() -> None:
        raise RuntimeError("boom")

    failed = asyncio.get_running_loop().create_task(boom())
    await asyncio.sleep(0)
    await stop(failed)
    await stop(None)
    assert isinstance(failed.exception(), RuntimeError)
