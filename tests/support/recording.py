"""Hooks that remember what the pipeline handed them (for assertions).

`RecordingSink` records one `CallRecord` per call that reached a model: put it first in the
pipeline's hooks (`pipeline.hooks.insert(0, sink)`), so that its `after` runs last, once the
other hooks have settled the call."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from oneflow_ai.auth.principal import Principal
from oneflow_ai.billing.cost import Cost
from oneflow_ai.billing.pricing import PricingEngine
from oneflow_ai.domain.chat import StreamEvent
from oneflow_ai.domain.usage import Usage
from oneflow_ai.gateway.call import Call, Operation, Outcome
from oneflow_ai.gateway.hooks import Hook, RunningStream, StreamWatcher

__all__ = ["CallRecord", "RecordingHook", "RecordingSink"]


@dataclass(frozen=True, slots=True)
class CallRecord:
    """What one call consumed and cost, and how it went."""

    request_id: str
    principal: Principal
    operation: Operation
    model: str  # the catalog id that answered (or was last tried)
    provider: str
    usage: Usage
    cost: Cost
    outcome: Outcome
    latency_ms: float
    first_content_ms: float | None
    stream: bool
    attempts: int
    error_kind: str | None = None


class RecordingSink(Hook):
    name = "recording"

    def __init__(self) -> None:
        self.records: list[CallRecord] = []
        self._arrived = threading.Condition()
        self._pricing = PricingEngine()

    async def after(self, call: Call) -> None:
        route = call.route
        if route is None:  # no model was called
            return
        usage = call.usage if call.usage is not None else Usage()
        cost = call.cost if call.cost is not None else self._pricing.price(route.model, usage)
        record = CallRecord(
            request_id=call.request_id,
            principal=call.principal,
            operation=call.operation,
            model=route.model,
            provider=route.provider_name,
            usage=usage,
            cost=cost,
            outcome=call.outcome or "error",
            latency_ms=call.latency_ms,
            first_content_ms=call.first_content_ms,
            stream=call.stream,
            attempts=len(call.attempts),
            error_kind=call.error.kind if call.error is not None else None,
        )
        with self._arrived:
            self.records.append(record)
            self._arrived.notify_all()

    def wait_for(self, count: int, timeout: float = 5.0) -> list[CallRecord]:
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

    def stream_watcher(self, call: Call, progress: RunningStream) -> StreamWatcher:
        return self.events.extend

    async def after(self, call: Call) -> None:
        self.log.append(f"{self.name}.after:{call.outcome}")
