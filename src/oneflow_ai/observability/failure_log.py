"""`FailureLog`: failures of one kind counted, the first logged and then at most one line per
interval (a dependency that is away fails every request; its log must not)."""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog

__all__ = ["FailureLog"]

#: Seconds between two lines of one `FailureLog`.
LOG_INTERVAL = 60.0


class FailureLog:
    def __init__(
        self,
        logger: structlog.stdlib.BoundLogger,
        event: str,
        *,
        hint: str,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = logger
        self._event = event
        self._hint = hint
        self._now = monotonic
        self._logged_at: float | None = None
        self.failures = 0

    def failed(self, exc: BaseException, **fields: object) -> None:
        """Count a failure; log it (its first line, `fields`, the count so far) unless a line
        was logged less than `LOG_INTERVAL` ago."""
        self.failures += 1
        now = self._now()
        if self._logged_at is not None and now - self._logged_at < LOG_INTERVAL:
            return
        self._logged_at = now
        self._log.warning(
            self._event,
            **fields,
            error=str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
            failures=self.failures,
            hint=self._hint,
        )
