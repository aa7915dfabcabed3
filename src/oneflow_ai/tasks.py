"""Stopping background tasks reliably.

A background loop (a Redis sync, a heartbeat, a listener) is stopped by cancelling it. Some
libraries catch the `CancelledError` raised inside them (redis-py turns a cancelled read into a
connection error, which a loop's `except Exception` then swallows), and the loop goes on as if
nothing happened: awaiting it would hang a shutdown forever. `stop` cancels again until the task
is really done.
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["stop"]


async def stop(task: asyncio.Task[Any] | None, *, poll: float = 0.05) -> None:
    """Cancel `task` and wait until it has finished, re-cancelling if it swallowed the
    cancellation. Its own exception, if any, is not raised here."""
    if task is None:
        return
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=poll)
    if not task.cancelled():
        task.exception()  # retrieved: never "exception was never retrieved"
