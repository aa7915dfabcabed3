"""A graceful stop: what a replica does between SIGTERM and its exit (a rolling deploy).

1. The signal arrives: ``/ready`` answers 503 (``draining``) at once, so that load balancers
   take the replica out, while it keeps accepting and serving requests for
   ``SHUTDOWN_DELAY_SECONDS`` (the time they take to notice; 0 when a Kubernetes ``preStop``
   hook has already waited).
2. Then the signal goes on to the server (uvicorn): it stops accepting connections, closes idle
   ones, and waits for the requests and streams under way.
3. ``SHUTDOWN_GRACE_SECONDS`` later, every stream still open is ended with a well-formed error
   event in its caller's dialect (503, ``shutting_down``) and charged for what it delivered;
   the server waits a few more seconds for those last events to leave.
4. The application shuts down: the ledger settles and flushes (its spool too, when the database
   answers), and the process exits.

SIGINT (Ctrl-C in a terminal) skips the delay; a second signal goes to the server at once
(uvicorn exits without waiting on a second Ctrl-C).
The stop is taken over only in the main thread of a process whose server handles the signals
itself (uvicorn does), never in tests that run the app in a thread.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

import structlog

from oneflow_ai.errors import ServiceUnavailableError

__all__ = ["END_MARGIN", "GracefulStop", "shutting_down_error"]

log = structlog.get_logger("oneflow")

#: Seconds the server waits, past the grace period, for the streams ended at its deadline to
#: write their last event and be charged.
END_MARGIN = 5.0

Handler = Callable[[int, FrameType | None], Any]


def shutting_down_error() -> ServiceUnavailableError:
    return ServiceUnavailableError(
        "The gateway is shutting down and ended this answer; retry the request",
        code="shutting_down",
        retry_after=1,
    )


class GracefulStop:
    """See the module documentation."""

    def __init__(self, *, delay: float, grace: float) -> None:
        self.delay = delay
        self.grace = grace
        self.draining = False
        self.interrupt: Callable[[], int] | None = None  # ends the open streams
        self._previous: dict[int, Handler] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timers: list[asyncio.TimerHandle] = []

    def install(self) -> bool:
        """Take over SIGTERM and SIGINT from the server; false when it cannot (not the main
        thread, or no server handling them)."""
        if threading.current_thread() is not threading.main_thread():
            return False
        self._loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous = signal.getsignal(sig)
            if callable(previous):
                self._previous[sig] = previous
                signal.signal(sig, self._on_signal)
                _extend_server_grace(previous, self.grace + END_MARGIN)
        return bool(self._previous)

    def uninstall(self) -> None:
        for sig, previous in self._previous.items():
            if signal.getsignal(sig) == self._on_signal:
                signal.signal(sig, previous)
        self._previous.clear()
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()

    def _on_signal(self, sig: int, frame: FrameType | None) -> None:
        previous = self._previous.get(sig)
        if self.draining or self._loop is None:
            if previous is not None:
                previous(sig, frame)  # a second signal: the server's own handling, at once
            return
        self.draining = True
        delay = self.delay if sig == signal.SIGTERM else 0.0
        self._loop.call_soon_threadsafe(self._begin, sig, frame, delay)

    def _begin(self, sig: int, frame: FrameType | None, delay: float) -> None:
        assert self._loop is not None
        log.warning(
            "graceful_stop",
            signal=signal.Signals(sig).name,
            accepting_for_seconds=delay,
            grace_seconds=self.grace,
        )
        self._timers.append(self._loop.call_later(delay, self._stop_accepting, sig, frame))

    def _stop_accepting(self, sig: int, frame: FrameType | None) -> None:
        assert self._loop is not None
        previous = self._previous.get(sig)
        if previous is not None:
            previous(sig, frame)  # uvicorn: stop accepting, wait for what is under way
        self._timers.append(self._loop.call_later(self.grace, self._deadline))

    def _deadline(self) -> None:
        ended = self.interrupt() if self.interrupt is not None else 0
        log.warning("graceful_stop_deadline", streams_ended=ended)


def _extend_server_grace(handler: Handler, seconds: float) -> None:
    """uvicorn's own wait for requests under way (``timeout_graceful_shutdown``) must outlast
    the grace period, or it would cancel the streams before they can end well."""
    config = getattr(getattr(handler, "__self__", None), "config", None)
    if config is not None and hasattr(config, "timeout_graceful_shutdown"):
        config.timeout_graceful_shutdown = seconds
