"""`WriterThread`: the SQLite ledger writer's own thread (`storage/group_commit.py`), and
`resolve`, which settles a loop's future that may be done already."""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import TypeVar

__all__ = ["WriterThread", "resolve"]

T = TypeVar("T")


class WriterThread:
    """The SQLite writer's own thread: runs one call at a time, in order, off the event loop.

    What ``loop.run_in_executor`` on a one-thread pool does, for less: a call costs the loop one
    ``SimpleQueue.put`` and the thread one ``call_soon_threadsafe`` with the outcome, with no
    ``concurrent.futures.Future`` (its condition, its callbacks, ``wrap_future``'s chaining) in
    between. The thread starts with the first call and ends at :meth:`stop`, after the call in
    flight, if any, has run to its end. It is a daemon so that a writer never closed (or
    abandoned with a transaction in flight) cannot hold the interpreter's exit; a transaction cut
    short that way is rolled back by SQLite, as when the process is killed.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._calls: queue.SimpleQueue[
            tuple[Callable[[], object], asyncio.AbstractEventLoop, asyncio.Future[object]] | None
        ] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def run(self, call: Callable[[], T]) -> asyncio.Future[T]:
        """Queue ``call``; the future resolves with its result (or fails with its error)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name=self._name, daemon=True)
            self._thread.start()
        self._calls.put((call, loop, future))  # type: ignore[arg-type]
        return future

    def stop(self) -> None:
        """End the thread once the calls queued before this one have run."""
        if self._thread is not None:
            self._calls.put(None)

    def _work(self) -> None:
        while (item := self._calls.get()) is not None:
            call, loop, future = item
            result: object = None
            error: BaseException | None = None
            try:
                result = call()
            except BaseException as exc:
                error = exc
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                loop.call_soon_threadsafe(resolve, future, result, error)
            del item, call, future, result, error  # nothing of a batch kept while idle


def resolve(future: asyncio.Future[T], result: T, error: BaseException | None) -> None:
    """Settle ``future`` unless it is done already (its waiter was cancelled: a stopped or
    abandoned writer; or a gathering ended by a full batch before its timer fired)."""
    if future.done():
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)
