"""Clocks tests move by hand, for code that takes its time from an injected callable."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

__all__ = ["FakeClock", "ManualClock"]


class FakeClock:
    """Wall time for expiry decisions, monotonic time for caches."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
        self.mono = 1000.0

    def __call__(self) -> datetime:
        return self.now

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
        self.mono += seconds


class ManualClock:
    """A float clock (seconds)."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
