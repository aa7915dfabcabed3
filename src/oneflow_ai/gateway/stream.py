"""`ChatStream`: a streamed answer that has started, and its accounting when it ends.

The edge iterates its `batches()` (events that arrived together) and renders them in the
caller's dialect, one write per batch; iterating the stream itself gives single events. When
the iteration ends, `usage` and `cost` hold what the answer consumed: the provider's counts
when it reported them, otherwise OneFlow's estimate (`usage.estimated`). A provider failure in
the middle of the stream is raised from the iteration as a `GatewayError` after `usage`/`cost`
are set, so the edge can end the stream with an error event that still carries them. If the
caller goes away (the iteration is cancelled or closed), the provider stream is closed, which
cancels the upstream request, and the call is accounted as `cancelled`. A stream the gateway
must end (its graceful stop ran out of time: `interrupt`) ends like a provider failure: an
error event in the caller's dialect, charged for what was delivered.
"""

from __future__ import annotations

import asyncio
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Sequence,
)
from functools import partial
from typing import Any, Protocol

import structlog

from oneflow_ai.billing.cost import Cost
from oneflow_ai.domain.chat import (
    ChatResponse,
    FinishReason,
    StreamEvent,
    StreamFinish,
    StreamStart,
    StreamUsage,
    TextDelta,
    ToolCallDelta,
    WireBytes,
    WireDialect,
)
from oneflow_ai.domain.usage import Usage
from oneflow_ai.errors import GatewayError
from oneflow_ai.gateway.call import Call, Outcome
from oneflow_ai.gateway.estimate import TokenEstimator
from oneflow_ai.gateway.hooks import Hook, StreamWatcher
from oneflow_ai.gateway.stream_output import StreamOutput
from oneflow_ai.providers.registry import Route

__all__ = ["ChatStream", "StreamOwner", "one_batch", "open_batches", "response_events"]

log = structlog.get_logger("oneflow.gateway")


class StreamOwner(Protocol):
    """What a stream needs of the pipeline that opened it (`gateway/pipeline.py`)."""

    estimator: TokenEstimator
    open_streams: set[ChatStream]

    async def finish(self, call: Call, entered: Sequence[Hook]) -> None: ...

    def price(self, call: Call, usage: Usage) -> Cost: ...

    def spawn(self, work: Coroutine[Any, Any, None]) -> None: ...


class ChatStream:
    """Iterate it once; then read `usage`, `cost` and `finish_reason`."""

    def __init__(
        self,
        pipeline: StreamOwner,
        call: Call,
        entered: Sequence[Hook],
        head: list[StreamEvent],
        rest: AsyncIterator[list[StreamEvent]],
    ) -> None:
        self._pipeline = pipeline
        self._entered = tuple(entered)
        self._head = head
        self._rest = rest
        # Counted on the model answering (chosen before a stream is made), with no call of
        # the stream's own between its output counter and the estimator.
        assert call.route is not None
        estimator, entry = pipeline.estimator, call.route.entry
        self._output = output = StreamOutput(
            partial(estimator.text_tokens, model=entry),
            partial(estimator.text_tokens_at_most, model=entry),
        )
        #: OneFlow's running count of the output so far, the batch the hooks are seeing
        #: included (the same count as `delivered`'s: each piece of text is tokenized once).
        self.output_tokens: Callable[[], int] = output.running
        #: At least `output_tokens()`, without tokenizing (see `gateway/stream_output.py`).
        self.output_tokens_at_most: Callable[[], int] = output.running_at_most
        self._delivered_upto = 0  # pieces of `_output` the caller has received
        self._input_tokens: int | None = None
        self._classes: dict[str, int] = {}  # token classes the provider reported
        self._output_tokens: int | None = None
        self._task: asyncio.Task[object] | None = None  # the one iterating `batches()`
        self._interruption: GatewayError | None = None
        self.call = call
        #: The provider's dialect when its events come as they arrived (`WireBytes`: the
        #: caller speaks it), for the edge to forward them; None otherwise.
        self.passthrough: WireDialect | None = next(
            (event.dialect for event in head if isinstance(event, WireBytes)), None
        )
        self.usage: Usage | None = None
        self.cost: Cost | None = None
        self.finish_reason: FinishReason | None = None
        self._opening = [
            waiting
            for hook in self._entered
            if type(hook).on_stream_open is not Hook.on_stream_open
            and (waiting := hook.on_stream_open(call, self)) is not None
        ]
        # The hooks that watch this stream, each called once per batch.
        self._watchers: tuple[StreamWatcher, ...] = tuple(
            watcher
            for hook in self._entered
            if type(hook).stream_watcher is not Hook.stream_watcher
            and (watcher := hook.stream_watcher(call, self)) is not None
        )

    async def opened(self) -> ChatStream:
        """This stream, once what its hooks wait for before anything is sent has happened (the
        ledger's first checkpoint: a caller that receives anything is charged)."""
        if self._opening:
            opening, self._opening = self._opening, []
            try:
                if len(opening) == 1:  # no gathering (and no turn of the loop once it is done)
                    await _settled(opening[0])
                else:
                    await asyncio.gather(*opening, return_exceptions=True)
            except BaseException:  # the caller went away before the first byte
                await self._cancelled()
                raise
        return self

    @property
    def route(self) -> Route:
        assert self.call.route is not None
        return self.call.route

    @property
    def estimated_input_tokens(self) -> int:
        """Input tokens to announce before the provider's count is known."""
        return (
            self._input_tokens
            if self._input_tokens is not None
            else (self.call.estimated_input_tokens)
        )

    @property
    def opening_input_tokens(self) -> int | None:
        """The provider's input count if it came with the opening events (before iterating)."""
        for event in self._head:
            if isinstance(event, StreamUsage) and event.input_tokens is not None:
                return event.input_tokens
        return None

    def __aiter__(self) -> AsyncIterator[StreamEvent]:
        return self._flat()

    async def _flat(self) -> AsyncIterator[StreamEvent]:
        batches = self.batches()
        try:
            async for batch in batches:
                for event in batch:
                    yield event
        finally:
            await batches.aclose()

    async def batches(self) -> AsyncGenerator[list[StreamEvent], None]:
        """The events in batches as they arrived (the held-back opening events are the first)."""
        call = self.call
        self._task = asyncio.current_task()
        self._pipeline.open_streams.add(self)
        try:
            head, self._head = self._head, []
            if head:
                upto = self._observe(head)
                yield head
                self._delivered_upto = upto
            async for batch in self._rest:
                upto = self._observe(batch)
                yield batch
                self._delivered_upto = upto
        except GatewayError as exc:
            self._close_out("cut_off", exc)
            log.warning("stream_cut_off", model=self.route.model, error=exc.kind)
            await self._pipeline.finish(call, self._entered)
            raise
        except Exception as exc:
            log.exception("stream_failed", model=self.route.model)
            error = GatewayError("The answer broke off because of an internal error")
            self._close_out("cut_off", error)
            await self._pipeline.finish(call, self._entered)
            raise error from exc
        except asyncio.CancelledError as cancelled:
            interruption = self._interruption
            if interruption is None or not _uncancel():
                await self._cancelled()
                raise
            # The gateway ends it (its graceful stop ran out of time): like a cut-off stream.
            self._close_out("cut_off", interruption)
            log.warning("stream_interrupted", model=self.route.model, error=interruption.kind)
            await self._pipeline.finish(call, self._entered)
            await self._close_rest()
            raise interruption from cancelled
        except BaseException:
            await self._cancelled()
            raise
        finally:
            self._pipeline.open_streams.discard(self)
        self._close_out("ok")
        await self._pipeline.finish(call, self._entered)

    def interrupt(self, error: GatewayError) -> bool:
        """End the stream now with `error` (an error event in the caller's dialect, charged
        for what was delivered); false if it is not being iterated."""
        task = self._task
        if task is None or task.done() or self._interruption is not None:
            return False
        self._interruption = error
        task.cancel()
        return True

    async def _cancelled(self) -> None:
        """The caller went away: close the provider's stream (which drops its connection) and
        account for what was produced so far, even though this task is cancelled."""
        self._close_out("cancelled")
        self._pipeline.spawn(self._pipeline.finish(self.call, self._entered))
        await self._close_rest()

    async def _close_rest(self) -> None:
        close = getattr(self._rest, "aclose", None)
        if close is not None:
            await close()

    def delivered(self) -> Usage:
        """What the caller has received so far, as OneFlow counts it (estimated): the prompt
        (the provider's count once it gave one) and the text of the batches already written.
        Counted incrementally: each piece of text is tokenized once."""
        output_tokens = self._output.tokens(self._delivered_upto)
        input_tokens = self._input_tokens
        if input_tokens is None:
            input_tokens = self.call.prompt_tokens(self._pipeline.estimator, self.route.entry)
        prompt_classes = {k: v for k, v in self._classes.items() if k != "reasoning_tokens"}
        return Usage.of_classes(input_tokens, output_tokens, prompt_classes, estimated=True)

    def _observe(self, batch: list[StreamEvent]) -> int:
        """Record and check `batch`; the pieces of the output once it is delivered."""
        # The hooks see a batch before it is counted as delivered: one that ends the stream
        # (an answer about to overrun what the ledger reserved) stops it before any of the
        # batch is forwarded, so what is charged is exactly what the caller received. Its text
        # is recorded first, for the running count the hooks read (`output_tokens`), and taken
        # back when the batch is not forwarded.
        if self.passthrough is not None:  # hooks see the canonical events only
            batch = [event for event in batch if type(event) is not WireBytes]
        output = self._output
        upto = output.add_batch(batch)
        try:
            for watch in self._watchers:
                watch(batch)
        except BaseException:
            output.take_back()
            raise
        for event in batch:
            if isinstance(event, _ACCOUNTED):
                if isinstance(event, StreamFinish):
                    self.finish_reason = event.reason
                    continue
                if event.input_tokens is not None:
                    self._input_tokens = event.input_tokens
                if event.output_tokens is not None:
                    self._output_tokens = event.output_tokens
                self._classes.update(event.classes())
        return upto

    def _close_out(self, outcome: Outcome, error: GatewayError | None = None) -> None:
        call = self.call
        if self._input_tokens is not None and self._output_tokens is not None:
            usage = Usage.of_classes(self._input_tokens, self._output_tokens, self._classes)
        else:
            estimator = self._pipeline.estimator
            entry = self.route.entry
            input_tokens = self._input_tokens
            if input_tokens is None:
                input_tokens = call.prompt_tokens(estimator, entry)
            output_tokens = self._output_tokens
            if output_tokens is None:  # no usage came: OneFlow counts what it has not yet
                output_tokens = self._output.tokens()
            usage = Usage.of_classes(input_tokens, output_tokens, self._classes, estimated=True)
        self.usage = call.usage = usage
        self.cost = call.cost = self._pipeline.price(call, usage)
        call.outcome = outcome
        call.error = error


async def _settled(waiting: Awaitable[object]) -> None:
    """Wait for ``waiting`` to end, whatever its outcome (what the caller receives does not
    depend on it); returns at once, without a turn of the loop, when it has ended already."""
    if isinstance(waiting, asyncio.Future) and waiting.done():
        if not waiting.cancelled():
            waiting.exception()  # retrieved: never logged as an exception nobody read
        return
    try:
        await waiting
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():  # this task is cancelled, not `waiting`
            raise
    except Exception:  # taken as `asyncio.gather(..., return_exceptions=True)` takes it
        return


def _uncancel() -> bool:
    """Take back the cancellation the gateway itself asked for (the task carries on)."""
    task = asyncio.current_task()
    if task is None or not task.cancelling():
        return False
    task.uncancel()
    return True


def response_events(response: ChatResponse, usage: Usage | None = None) -> list[StreamEvent]:
    """A complete answer as the events of a stream (for answers given by a pre-hook)."""
    events: list[StreamEvent] = [StreamStart(response.id, response.model)]
    if response.text:
        events.append(TextDelta(response.text))
    for index, call in enumerate(response.tool_calls):
        events.append(ToolCallDelta(index, call.arguments, call.id, call.name))
    events.append(StreamFinish(response.finish_reason))
    usage = usage or response.usage
    if usage is not None:
        events.append(StreamUsage.of(usage))
    return events


_CONTENT = (TextDelta, ToolCallDelta, StreamFinish)
#: The events a stream's accounting reads (besides the output's text).
_ACCOUNTED = (StreamUsage, StreamFinish)


async def open_batches(
    batches: AsyncIterator[list[StreamEvent]],
) -> tuple[list[StreamEvent], AsyncIterator[list[StreamEvent]]]:
    """Read a provider stream up to and including the batch with its first content event (the
    events held back before a stream is answered); the rest of it, to iterate on."""
    head: list[StreamEvent] = []
    try:
        async for batch in batches:
            head.extend(batch)
            if any(isinstance(event, _CONTENT) for event in batch):
                break
    except BaseException:
        close = getattr(batches, "aclose", None)
        if close is not None:
            await close()
        raise
    return head, batches


async def one_batch(events: list[StreamEvent]) -> AsyncIterator[list[StreamEvent]]:
    """`events` as a stream of one batch (an answer given by a pre-hook, replayed)."""
    yield events
