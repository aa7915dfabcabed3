"""Credits as a pipeline hook: reserve before the upstream call, settle or release after.

Before the call the request's worst case is reserved (`Ledger.reserve`): for a project with
limits (prepaid, or a hard budget or quota) that is a durable hold that may refuse the request
(402, or 429 for a tokens/requests quota; `RefusalHook` writes a refused request's usage record);
for a postpaid project it costs no I/O and its worst case is not even priced. The worst case
is the most expensive candidate (fallbacks included): its input tokens counted on its own
tokenizer, and `max_tokens` (or the model's output limit) of output.

While a stream runs, the ledger checkpoints what its caller has received (priced on the answering
model), so that a crash of this process still charges it (`billing.checkpoints`). During a
stream, when a limit applies, its output is checked as it arrives against what was reserved:
the stream's own running count (`gateway/stream_output.py`: the deltas are tokenized once, for
this and for the charge, and only once a bound of that count from their length reaches what
was reserved), or the provider's count when it reports a larger one; a stream that
would run past what was reserved ends with an error event (402) instead of running over: the
events that would overrun are not forwarded, and the charge is what the caller received.

After the call the charge is settled exactly once with the usage and cost the pipeline
determined (the provider's counts, or OneFlow's when a stream was cut off), or the hold is
released when nothing billable came back. The pipeline runs this before a stream's final event
and before a non-streamed answer leaves, so an answer its caller saw complete is charged.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from datetime import UTC, datetime

from oneflow_ai.billing.checkpoints import Delivered, PricedProbe, Probe
from oneflow_ai.billing.cost import Cost, fraction_of
from oneflow_ai.billing.errors import PricingError
from oneflow_ai.billing.ledger import Ledger
from oneflow_ai.billing.pricing import PricingEngine
from oneflow_ai.billing.reservation import Reservation
from oneflow_ai.domain.chat import (
    ChatRequest,
    StreamEvent,
    StreamUsage,
    TextDelta,
    ThinkingDelta,
    ToolCallDelta,
)
from oneflow_ai.domain.embeddings import EmbeddingRequest
from oneflow_ai.domain.media import ImageRequest
from oneflow_ai.domain.transcription import TranscriptionRequest
from oneflow_ai.domain.usage import Usage
from oneflow_ai.domain.usage_record import RequestOutcome, UsageRecord
from oneflow_ai.errors import GatewayError, InsufficientCreditsError, RateLimitedError
from oneflow_ai.gateway.call import Call
from oneflow_ai.gateway.estimate import TokenEstimator
from oneflow_ai.gateway.hooks import Hook, RunningStream, ShortCircuit, StreamWatcher
from oneflow_ai.gateway.request_route import request_route
from oneflow_ai.providers.registry import Route

__all__ = ["LedgerHook", "RefusalHook"]

_RESERVATION = "ledger.reservation"
_OUTPUT_EVENTS = (TextDelta, ToolCallDelta, ThinkingDelta)
#: The status a caller saw when it went away before the answer ended (nginx's convention).
CLIENT_CLOSED = 499


class _StreamWatch:
    """What the hook follows of a running stream whose output is checked: its reservation
    (a limited one), the stream (its running count of the output) and the largest output count
    the provider reported so far. `check` is the stream's watcher, called once per batch."""

    __slots__ = ("reported", "reservation", "stream")

    def __init__(self, reservation: Reservation, stream: RunningStream) -> None:
        self.reservation = reservation
        self.stream = stream
        self.reported = 0

    def check(self, batch: Sequence[StreamEvent]) -> None:
        # The stream's own running count (it tokenizes its deltas once, for this and for what
        # it charges, and has counted the batch already), or the provider's count when it
        # reports a larger one as it goes. Checked once per batch that has output or a count:
        # the count only grows, so the batch's last one decides as each event's would.
        reported = self.reported
        checked = False
        for event in batch:
            if isinstance(event, StreamUsage):
                if event.output_tokens is not None:
                    checked = True
                    if event.output_tokens > reported:
                        reported = event.output_tokens
            elif isinstance(event, _OUTPUT_EVENTS):
                checked = True
        self.reported = reported
        if not checked:
            return
        reservation, stream = self.reservation, self.stream
        if not (
            reservation.would_exceed(max(reported, stream.output_tokens_at_most()))
            # The bound could overrun: the stream's count (tokenized now) decides.
            and reservation.would_exceed(max(reported, stream.output_tokens()))
        ):
            return
        raise InsufficientCreditsError(
            "The answer was stopped: it would have cost more than the credits reserved "
            "for it (the project's balance or budget)",
            code="budget_exhausted",
        )


def _reservation(call: Call) -> Reservation | None:
    """The call's reservation (made by `LedgerHook.before`), if it has one."""
    reservation = call.state.get(_RESERVATION)
    return reservation if isinstance(reservation, Reservation) else None


class LedgerHook(Hook):
    name = "ledger"

    def __init__(self, ledger: Ledger, pricing: PricingEngine, estimator: TokenEstimator) -> None:
        self._ledger = ledger
        self._pricing = pricing
        self._estimator = estimator

    async def before(self, call: Call) -> ShortCircuit | None:
        primary = call.candidates[0]
        principal = call.principal
        reservation = call.state[_RESERVATION] = await self._ledger.reserve(
            request_id=call.request_id,
            project_id=principal.project_id,
            max_cost=lambda: self._worst_case(call),
            model=primary.model,
            provider=primary.provider_name,
            user_id=principal.user_id,
            key_id=principal.key_id,
        )
        if call.stream and isinstance(call.request, ChatRequest) and not _cached(call):
            # The stream's first checkpoint commits while the provider prepares its first
            # event (`billing/checkpoints.py`); `on_stream_open` waits for it.
            self._ledger.track(reservation, self._prompt_probe(call, primary))
        return None

    def _prompt_probe(self, call: Call, route: Route) -> Probe:
        """What a stream on ``route`` has delivered when it opens: its prompt."""
        pricing, estimator = self._pricing, self._estimator

        def probe() -> Delivered | None:
            prompt = call.prompt_tokens(estimator, route.entry)
            return _delivered(pricing, route, Usage(input_tokens=prompt, estimated=True))

        return probe

    def on_stream_open(self, call: Call, progress: RunningStream) -> Awaitable[object] | None:
        reservation = _reservation(call)
        if reservation is None:
            return None
        pricing = self._pricing

        def probe() -> Delivered | None:
            route = call.route
            return None if route is None else _delivered(pricing, route, progress.delivered())

        def model() -> str | None:
            route = call.route
            return None if route is None else route.entry.id

        return self._ledger.track(reservation, PricedProbe(probe, model))

    def stream_watcher(self, call: Call, progress: RunningStream) -> StreamWatcher | None:
        """A limited reservation's check of the stream's output (see the module docstring)."""
        reservation = _reservation(call)
        if reservation is None or not reservation.limited or _cached(call):
            return None  # unlimited, or an answer replayed from the cache: its charge is known
        return _StreamWatch(reservation, progress).check

    async def after(self, call: Call) -> None:
        reservation = _reservation(call)
        if reservation is None:
            return
        error = call.error
        if call.outcome == "cancelled":
            status = CLIENT_CLOSED
        elif error is not None:
            status = error.status
        else:
            status = 200
        outcome = RequestOutcome(
            status=status,
            error=error.kind if error is not None else None,
            latency_ms=round(call.latency_ms),
            ttft_ms=round(call.first_content_ms) if call.first_content_ms is not None else None,
            stream=call.stream,
            route=request_route(call),
            cache_hit=call.cache is not None and call.cache.hit,
            credits_saved=call.cache.saved_micro_credits if call.cache is not None else 0,
        )
        route, usage = call.route, call.usage
        if route is None or usage is None or call.outcome == "error":
            await self._ledger.release(reservation, outcome)
            return
        await self._ledger.settle(
            reservation,
            usage,
            model=route.model,
            provider=route.provider_name,
            outcome=outcome,
            cost=call.cost,
        )

    def _worst_case(self, call: Call) -> Cost:
        """The most expensive candidate's worst case (fallbacks may answer instead); for an
        answer from the response cache, what it will be charged."""
        cache = call.cache
        if cache is not None and cache.hit and cache.model is not None and cache.usage:
            return fraction_of(self._pricing.price(cache.model, cache.usage), cache.fraction)
        request = call.request
        cache_writes = isinstance(request, ChatRequest) and asks_cache_writes(request)
        costs: list[Cost] = []
        for route in call.candidates:
            entry = route.entry
            if isinstance(request, ChatRequest):
                prompt_tokens = call.prompt_tokens(self._estimator, entry)
                costs.append(
                    self._pricing.max_cost(
                        entry.id, prompt_tokens, request.max_tokens, cache_writes=cache_writes
                    )
                )
            elif isinstance(request, ImageRequest):
                costs.append(
                    self._pricing.max_cost(
                        entry.id,
                        images=request.n,
                        image_size=request.size,
                        image_quality=request.quality,
                    )
                )
            elif isinstance(request, EmbeddingRequest):
                prompt_tokens = call.prompt_tokens(self._estimator, entry)
                costs.append(self._pricing.max_cost(entry.id, prompt_tokens))
            elif isinstance(request, TranscriptionRequest):
                seconds = request.max_seconds
                costs.append(self._pricing.max_cost(entry.id, audio_seconds=seconds))
            else:
                costs.append(self._pricing.max_cost(entry.id, characters=len(request.input)))
        return max(costs, key=lambda cost: cost.micro_credits)


def _delivered(pricing: PricingEngine, route: Route, usage: Usage) -> Delivered | None:
    """``usage`` delivered on ``route``, priced; None when the model has no price."""
    try:
        return Delivered(usage, pricing.price(route.model, usage), route.provider_name)
    except PricingError:
        return None


def _cached(call: Call) -> bool:
    """Whether the answer is replayed from the response cache."""
    return call.cache is not None and call.cache.hit


def asks_cache_writes(request: ChatRequest) -> bool:
    """Whether the caller's body marks any part of its prompt for the provider's cache
    (Anthropic's `cache_control`): only such a request can be billed cache writes."""
    raw = request.raw
    return raw is not None and request.raw_dialect == "anthropic" and _mentions(raw)


def _mentions(value: object, depth: int = 0) -> bool:
    if depth > 8:
        return False
    if isinstance(value, dict):
        return "cache_control" in value or any(_mentions(v, depth + 1) for v in value.values())
    if isinstance(value, list):
        return any(_mentions(v, depth + 1) for v in value)
    return False


class RefusalHook(Hook):
    """Usage records for calls refused before any upstream call (a rate limit, the credits, a
    budget or a quota): an error in the usage totals like any other. It runs before the hooks
    that refuse, so its `after` sees their refusals; a call that got a reservation has its
    record from `LedgerHook` instead."""

    name = "refusals"

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    async def after(self, call: Call) -> None:
        refused = call.error
        if (
            not isinstance(refused, InsufficientCreditsError | RateLimitedError)
            or call.attempts
            or _RESERVATION in call.state
            or not call.candidates
        ):
            return
        primary, principal = call.candidates[0], call.principal
        record = UsageRecord(
            request_id=call.request_id,
            occurred_at=datetime.now(UTC),
            status=refused.status,
            project_id=principal.project_id,
            user_id=principal.user_id,
            key_id=principal.key_id,
            model=primary.model,
            provider=primary.provider_name,
            error=refused.kind,
            stream=call.stream,
            latency_ms=round(call.latency_ms),
            route=request_route(call),
        )
        try:
            await self._ledger.record(record)
        except GatewayError:  # the ledger is unavailable: logged there; the refusal stands
            return
