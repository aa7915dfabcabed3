"""A usage sink and a hook that remember what the pipeline handed them (for assertions)."""

from __future__ import annotations

import threading

from oneflow_ai.domain.chat import StreamEvent
from oneflow_ai.gateway.call import Call
from oneflow_ai.gateway.hooks import CallSummary, Hook

__all__ = ["RecordingHook", "RecordingSink"]


class RecordingSink:
    def __init__(self) -> None:
        self.records: list[CallSummary] = []
        self._arrived = threading.Condition()

    async def record(self, record: CallSummary) -> None:
        with self._arrived:
            self.records.append(record)
            self._arrived.notify_all()

    def wait_for(self, count: int, timeout: float = 5.0) -> list[CallSummary]:
        """The records once at least `count` have arrived (streams finish after the answer)."""
        with self._arrived:
            self._arrived.wait_for(lambda: len(self.records) >= count, timeout)
        assert len(self.records) >= count, f"{len(self.records)} usage records, expected {count}"
        return list(self.records)


class RecordingHook(Hook):
    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.log = log
        self.events: list[StreamEvent] = []

    async def before(self, call: Call) -> None:
        self.log.append(f"{self.name}.before")

    def on_stream_event(self, call: Call, event: StreamEvent) -> None:
        self.events.append(event)

    async def after(self, call: Call) -> None:
        self.log.append(f"{self.name}.after:{call.outcome}")
