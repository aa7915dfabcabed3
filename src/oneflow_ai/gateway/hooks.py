"""Extension points of the pipeline: hooks around a call.

Hooks (limits, billing reservations, caching, metrics, ...) subclass `Hook` and override what
they need. For every call the pipeline runs

1. `before(call)` of each hook **in order**, once the model candidates are planned. A hook may
   refuse the call by raising a `GatewayError` (a 429, a 402) or answer it itself by returning
   a `ShortCircuit` (a cached answer); the hooks after it do not run, and no provider is called.
2. the provider call (with fallbacks down `call.candidates`);
3. for streams, `on_stream_open(call, progress)` of each hook once the stream has started
   (`progress.delivered()` tells, whenever asked, what the caller has received so far, and
   `progress.output_tokens()` the stream's running count of its output, the events being
   seen included: the stream's own count, so that no hook tokenizes the deltas again; it may
   return an awaitable that the stream waits for before anything reaches the caller), then
   `stream_watcher(call, progress)` of each hook, once: what it returns (None: the hook does
   not watch this stream) is called with every batch of canonical events as it arrives (never
   the provider's own bytes of a same-dialect stream; synchronous and cheap: it runs on the
   hot path, once per batch and hook that watches, with no per-event call of its own);
4. `after(call)` of every hook whose `before` ran, **in reverse order**, whatever happened:
   `call.outcome`, `call.usage`, `call.cost`, `call.error` and `call.attempts` tell the story.
   For a stream this is when the stream has ended.

Exceptions in `after` are logged, never shown to the caller, whose answer is already made.
What a call consumed reaches billing and analytics through the ledger hook
(`gateway/ledger_hook.py`), its metrics and latency through the feedback hook.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from oneflow_ai.domain.chat import ChatResponse, StreamEvent
from oneflow_ai.domain.embeddings import EmbeddingResponse
from oneflow_ai.domain.media import ImageResponse, SpeechResponse
from oneflow_ai.domain.usage import Usage
from oneflow_ai.gateway.call import Call
from oneflow_ai.providers.registry import Route

__all__ = ["Hook", "RunningStream", "ShortCircuit", "StreamWatcher"]

#: What a hook calls with each batch of a stream's canonical events (`Hook.stream_watcher`).
StreamWatcher = Callable[[Sequence[StreamEvent]], None]


class RunningStream(Protocol):
    """What a hook may ask of a running stream (`gateway/stream.py`)."""

    def delivered(self) -> Usage:
        """What the caller has received so far, as OneFlow counts it (estimated)."""
        ...

    def output_tokens(self) -> int:
        """OneFlow's running count of the output so far, the batch being seen included."""
        ...

    def output_tokens_at_most(self) -> int:
        """At least `output_tokens()`, known without tokenizing: a check against a limit
        asks for the count only once this bound reaches the limit."""
        ...


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

    def on_stream_open(self, call: Call, progress: RunningStream) -> Awaitable[object] | None:
        return None

    def stream_watcher(self, call: Call, progress: RunningStream) -> StreamWatcher | None:
        return None

    async def after(self, call: Call) -> None:
        return None
