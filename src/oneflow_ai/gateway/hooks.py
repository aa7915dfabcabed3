"""Extension points of the pipeline: hooks around a call, and the one usage interface.

Hooks (limits, billing reservations, caching, metrics, ...) subclass `Hook` and override what
they need. For every call the pipeline runs

1. `before(call)` of each hook **in order**, once the model candidates are planned. A hook may
   refuse the call by raising a `GatewayError` (a 429, a 402) or answer it itself by returning
   a `ShortCircuit` (a cached answer); the hooks after it do not run, and no provider is called.
2. the provider call (with fallbacks down `call.candidates`);
3. for streams, `on_stream_open(call, delivered)` of each hook once the stream has started
   (`delivered()` tells, whenever asked, what the caller has received so far; it may return
   an awaitable that the stream waits for before anything reaches the caller), then
   `on_stream_event(call, event)` of each hook for every event as it arrives (synchronous and
   cheap: it runs on the hot path);
4. `after(call)` of every hook whose `before` ran, **in reverse order**, whatever happened:
   `call.outcome`, `call.usage`, `call.cost`, `call.error` and `call.attempts` tell the story.
   For a stream this is when the stream has ended.

Then every `UsageSink` receives one `CallSummary` for each call that reached a model, streaming
included (the application registers none: billing and analytics get their records from the
ledger hook, `gateway/ledger_hook.py`). Exceptions in `after` and in sinks are logged, never
shown to the caller, whose answer is already made.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from oneflow_ai.auth.principal import Principal
from oneflow_ai.billing.cost import Cost
from oneflow_ai.domain.chat import ChatResponse, StreamEvent
from oneflow_ai.domain.embeddings import EmbeddingResponse
from oneflow_ai.domain.media import ImageResponse, SpeechResponse
from oneflow_ai.domain.usage import Usage
from oneflow_ai.gateway.call import Call, Operation, Outcome
from oneflow_ai.providers.registry import Route

__all__ = ["CallSummary", "Hook", "ShortCircuit", "UsageSink"]


@dataclass(frozen=True, slots=True)
class ShortCircuit:
    """An answer a pre-hook gives instead of a provider call, as if `route` had answered.

    Its `usage` (None: what `response` reports) is what gets billed."""

    route: Route
    response: ChatResponse | ImageResponse | SpeechResponse | EmbeddingResponse
    usage: Usage | None = None


class Hook:
    """Base class of pipeline hooks: every method does nothing unless overridden."""

    name: str = "hook"

    async def before(self, call: Call) -> ShortCircuit | None:
        return None

    def on_stream_open(
        self, call: Call, delivered: Callable[[], Usage]
    ) -> Awaitable[object] | None:
        return None

    def on_stream_event(self, call: Call, event: StreamEvent) -> None:
        return None

    async def after(self, call: Call) -> None:
        return None


@dataclass(frozen=True, slots=True)
class CallSummary:
    """What one call consumed and cost, as a `UsageSink` receives it (the ledger's own record
    of a call is `domain/usage_record.py`'s `UsageRecord`).

    `usage.estimated` (and `cost.estimated`) is true when OneFlow counted the tokens itself
    because the provider reported none (a stream cut off or cancelled early).
    """

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


@runtime_checkable
class UsageSink(Protocol):
    """Receives one `CallSummary` per call that reached a model. Keep it quick (batch writes):
    it runs before a non-streamed answer is returned."""

    async def record(self, record: CallSummary) -> None: ...
