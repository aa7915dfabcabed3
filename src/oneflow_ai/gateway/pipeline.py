"""The request pipeline: the one place that runs a request end to end.

    edge (authenticated Call) -> plan the candidates -> pre-hooks (in order) -> provider call
    (fallback down the candidates on a retryable failure) -> usage -> cost -> post-hooks (in
    reverse) -> usage sinks -> edge renders the answer in the caller's dialect

Streams run the same way, but the pipeline returns as soon as the first real content has
arrived (`open_chat_stream`): the opening events are held back until then, so a failure before
it is still an ordinary error answer or a fallback, invisible to the caller. The rest of the
accounting happens when the stream ends (`ChatStream`).

Extension points (`gateway.hooks`): `Hook`s around the call, `UsageSink`s for usage, a
`ModelSelector` for routing by strategy, a `TokenEstimator` for counts the provider did not give.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Sequence
from functools import partial
from typing import Any, TypeVar, cast

import structlog

from oneflow_ai.auth.permissions import ensure_model_allowed, may_use
from oneflow_ai.billing.cost import Cost, fraction_of
from oneflow_ai.billing.errors import PricingError
from oneflow_ai.billing.pricing import PricingEngine
from oneflow_ai.catalog import ModelEntry
from oneflow_ai.domain.audio import whole_seconds
from oneflow_ai.domain.chat import (
    ChatRequest,
    ChatResponse,
    StreamEvent,
    StreamFinish,
    TextDelta,
    ToolCallDelta,
)
from oneflow_ai.domain.embeddings import EmbeddingRequest, EmbeddingResponse
from oneflow_ai.domain.media import ImageRequest, ImageResponse, SpeechRequest, SpeechResponse
from oneflow_ai.domain.transcription import TranscriptionRequest, TranscriptionResponse
from oneflow_ai.domain.usage import Usage
from oneflow_ai.errors import (
    BadRequestError,
    GatewayError,
    ProviderError,
)
from oneflow_ai.gateway import embeddings
from oneflow_ai.gateway.call import Answer, Attempt, Call
from oneflow_ai.gateway.deployments import DeploymentPicker
from oneflow_ai.gateway.embeddings import check_embedding, embedding_unfit
from oneflow_ai.gateway.estimate import CharacterEstimator, TokenEstimator
from oneflow_ai.gateway.hooks import CallSummary, Hook, ShortCircuit, UsageSink
from oneflow_ai.gateway.planning import (
    EXPECTED_OUTPUT_TOKENS,
    ModelSelector,
    RouteQuery,
    fallback_entries,
    select_by_router,
)
from oneflow_ai.gateway.reasoning import for_model
from oneflow_ai.gateway.stream import ChatStream, response_events
from oneflow_ai.observability.telemetry import Telemetry
from oneflow_ai.providers.registry import ProviderRegistry, Route
from oneflow_ai.resilience.breaker_set import CircuitBreakers
from oneflow_ai.resilience.fallback import Attempt as FallbackAttempt
from oneflow_ai.resilience.fallback import AttemptRecord, run_with_fallbacks
from oneflow_ai.resilience.load import DeploymentLoad
from oneflow_ai.routing.reasons import RouteReason, failed_over, fell_back, requested
from oneflow_ai.routing.router import IntelligentRouter

__all__ = ["Pipeline"]

log = structlog.get_logger("oneflow.gateway")

R = TypeVar("R")
_CONTENT = (TextDelta, ToolCallDelta, StreamFinish)


class Pipeline:
    """Runs calls against the registry's providers, prices them and tells hooks and sinks.

    `hooks` and `usage_sinks` are lists: add to them at start-up (limits, ledger, metrics).
    """

    def __init__(
        self,
        registry: ProviderRegistry,
        pricing: PricingEngine,
        *,
        hooks: Iterable[Hook] = (),
        usage_sinks: Iterable[UsageSink] = (),
        selector: ModelSelector | None = None,
        estimator: TokenEstimator | None = None,
        telemetry: Telemetry | None = None,
        breakers: CircuitBreakers | None = None,
        load: DeploymentLoad | None = None,
    ) -> None:
        self.registry = registry
        self.pricing = pricing
        self.hooks: list[Hook] = list(hooks)
        self.usage_sinks: list[UsageSink] = list(usage_sinks)
        self.selector: ModelSelector = selector or partial(
            select_by_router, IntelligentRouter(pricing, circuits=breakers)
        )
        self.estimator: TokenEstimator = estimator or CharacterEstimator()
        self.telemetry = telemetry if telemetry is not None else Telemetry.disabled()
        self.breakers = breakers
        self.deployments = DeploymentPicker(registry, breakers=breakers, load=load)
        self._background: set[asyncio.Task[None]] = set()
        self.open_streams: set[ChatStream] = set()  # being iterated (see `interrupt_streams`)

    # ---- operations --------------------------------------------------------------------

    async def chat(self, call: Call) -> ChatResponse:
        request = cast(ChatRequest, call.request)

        async def invoke(route: Route) -> ChatResponse:
            return await route.chat().chat(for_model(request, route.entry), route.upstream_model)

        return await self._run(call, invoke, partial(self._chat_usage, call))

    async def generate_image(self, call: Call) -> ImageResponse:
        request = cast(ImageRequest, call.request)

        async def invoke(route: Route) -> ImageResponse:
            return await route.images().generate_image(request, route.upstream_model)

        return await self._run(call, invoke, lambda response: response.usage)

    async def synthesize_speech(self, call: Call) -> SpeechResponse:
        request = cast(SpeechRequest, call.request)

        async def invoke(route: Route) -> SpeechResponse:
            return await route.speech().synthesize_speech(request, route.upstream_model)

        return await self._run(call, invoke, lambda response: response.usage)

    async def embed(self, call: Call) -> EmbeddingResponse:
        request = cast(EmbeddingRequest, call.request)

        async def invoke(route: Route) -> EmbeddingResponse:
            asked = embeddings.for_model(request, route.entry)
            return await route.embeddings().embed(asked, route.upstream_model)

        return await self._run(call, invoke, partial(self._embedding_usage, call))

    async def transcribe(self, call: Call) -> TranscriptionResponse:
        request = cast(TranscriptionRequest, call.request)

        async def invoke(route: Route) -> TranscriptionResponse:
            return await route.transcriptions().transcribe(request, route.upstream_model)

        return await self._run(call, invoke, partial(_transcription_usage, request))

    async def open_chat_stream(self, call: Call) -> ChatStream:
        """Start a streamed answer; returns once its first content is in hand (or raises the
        error of the last candidate tried, before anything reached the caller)."""
        request = cast(ChatRequest, call.request)
        self._plan(call)
        entered: list[Hook] = []
        try:
            shortcut = await self._before(call, entered)
            if shortcut is not None:
                call.route = shortcut.route
                response = cast(ChatResponse, shortcut.response)
                events = response_events(response, shortcut.usage)
                return await ChatStream(self, call, entered, [], _iterate(events)).opened()

            async def invoke(
                route: Route,
            ) -> tuple[list[StreamEvent], AsyncIterator[list[StreamEvent]]]:
                fitted = for_model(request, route.entry)
                return await _open(route.chat().stream_chat(fitted, route.upstream_model))

            head, rest = await self._call_provider(call, invoke)
            call.first_content_ms = (time.perf_counter() - call.started_at) * 1000
            return await ChatStream(self, call, entered, head, rest).opened()
        except GatewayError as exc:
            call.error, call.outcome = exc, "error"
            await self.finish(call, entered)
            raise
        except Exception:
            call.outcome = "error"
            await self.finish(call, entered)
            raise
        except BaseException:
            call.outcome = "cancelled"
            self.spawn(self.finish(call, entered))
            raise

    # ---- the run -----------------------------------------------------------------------

    async def _run(
        self,
        call: Call,
        invoke: Callable[[Route], Awaitable[R]],
        usage_of: Callable[[R], Usage],
    ) -> R:
        self._plan(call)
        entered: list[Hook] = []
        try:
            shortcut = await self._before(call, entered)
            if shortcut is not None:
                call.route = shortcut.route
                response = cast(R, shortcut.response)
                usage = shortcut.usage or usage_of(response)
            else:
                response = await self._call_provider(call, invoke)
                usage = usage_of(response)
            if isinstance(response, Answer):
                call.answer = response
            call.usage, call.cost, call.outcome = usage, self.price(call, usage), "ok"
            return response
        except GatewayError as exc:
            call.error, call.outcome = exc, "error"
            raise
        except Exception:
            call.outcome = "error"
            raise
        finally:
            if call.outcome is None:
                call.outcome = "cancelled"
            await self.finish(call, entered)

    async def _before(self, call: Call, entered: list[Hook]) -> ShortCircuit | None:
        for hook in self.hooks:
            shortcut = await hook.before(call)
            entered.append(hook)
            if shortcut is not None:
                return shortcut
        return None

    async def _call_provider(self, call: Call, invoke: Callable[[Route], Awaitable[R]]) -> R:
        """Down the candidates until one answers (`resilience.fallback` decides what falls
        through); models whose circuit is open are skipped without a call. A model served by
        several deployments is one turn down its deployments (`DeploymentPicker`). Each
        upstream attempt is timed, traced and counted."""
        routes = {route.model: route for route in call.candidates}
        telemetry = self.telemetry
        deployments = self.deployments

        async def attempt(turn: FallbackAttempt) -> R:
            return await deployments.run(
                routes[turn.model],
                partial(one, turn),
                tokens=partial(self._need_tokens, call, routes[turn.model].entry),
            )

        async def one(turn: FallbackAttempt, route: Route) -> R:
            if call.attempts:  # an earlier candidate or deployment failed
                _log_fallback(call.attempts[-1], route)
            call.route = route
            started = time.perf_counter()
            with telemetry.upstream_attempt(
                provider=route.provider_name,
                model=route.model,
                operation=call.operation,
                attempt=turn.index + 1,
                stream=call.stream,
                max_tokens=getattr(call.request, "max_tokens", None),
            ):
                try:
                    result = await invoke(route)
                except ProviderError as exc:
                    call.attempts.append(
                        Attempt(route.model, route.provider_name, _since(started), exc, started)
                    )
                    raise
            call.attempts.append(
                Attempt(route.model, route.provider_name, _since(started), None, started)
            )
            return result

        def open_for(model: str) -> float:
            return deployments.open_for(routes[model])

        result = await run_with_fallbacks(list(routes), attempt, open_for=open_for)
        call.fallbacks = result.fallbacks  # call.route: the deployment that answered
        if result.fallbacks:
            call.route_reason = _fallback_reason(result.attempts)
        answered = call.route
        passed = [
            (a.provider, a.error.kind)
            for a in call.attempts
            if answered is not None and a.model == answered.model and a.error is not None
        ]
        if passed and answered is not None and call.route_reason is not None:
            call.route_reason = failed_over(call.route_reason, passed, answered.provider_name)
        return result.value

    async def finish(self, call: Call, entered: Sequence[Hook]) -> None:
        """Post-hooks in reverse order, then the usage sinks; failures are logged."""
        if call.finished_at is None:
            call.finished_at = time.perf_counter()
        for hook in reversed(entered):
            try:
                await hook.after(call)
            except Exception:
                log.exception("hook_failed", hook=hook.name, request_id=call.request_id)
        if call.route is None or not self.usage_sinks:
            return
        usage = call.usage if call.usage is not None else Usage()
        cost = call.cost if call.cost is not None else self.price(call, usage)
        record = CallSummary(
            request_id=call.request_id,
            principal=call.principal,
            operation=call.operation,
            model=call.route.model,
            provider=call.route.provider_name,
            usage=usage,
            cost=cost,
            outcome=call.outcome or "error",
            latency_ms=call.latency_ms,
            first_content_ms=call.first_content_ms,
            stream=call.stream,
            attempts=len(call.attempts),
            error_kind=call.error.kind if call.error is not None else None,
        )
        for sink in self.usage_sinks:
            try:
                await sink.record(record)
            except Exception:
                log.exception("usage_sink_failed", request_id=call.request_id)

    # ---- planning ----------------------------------------------------------------------

    def prompt_tokens(self, call: Call) -> int:
        """OneFlow's count of a chat call's input tokens on the model answering it (for
        announcing them before the provider's count arrives)."""
        entry = call.route.entry if call.route is not None else None
        return call.prompt_tokens(self.estimator, entry)

    def _plan(self, call: Call) -> None:
        if call.strategy is None:
            route = self.registry.resolve(call.model)
            ensure_model_allowed(call.principal, route.entry.id)
            self._check_concrete(call, route.entry)
            fallbacks = self._fallbacks(call, [route.entry])
            call.candidates = [route, *(self.registry.route(entry) for entry in fallbacks)]
            call.route_reason = requested(route.model)
            return
        if call.operation == "chat":  # a rough count before a model (and its tokenizer) is known
            call.estimated_input_tokens = call.prompt_tokens(self.estimator, None)
        usable = [
            entry
            for entry in self.registry.available(call.modality)
            if entry.is_priced and may_use(call.principal, entry.id)
        ]
        eligible = [entry for entry in usable if self._fits(call, entry)]
        if call.operation == "embedding" and eligible:
            call.estimated_input_tokens = call.prompt_tokens(self.estimator, eligible[0])
        chosen = self.selector(self._query(call, call.strategy), eligible)
        if not chosen.models:
            if call.operation == "embedding" and usable:
                embedding_unfit(call, usable, self.estimator)
            raise BadRequestError(
                f"No available {call.modality} model can serve this request",
                param="model",
                code="no_model_available",
            )
        models = [*chosen.models, *self._fallbacks(call, chosen.models)]
        call.candidates = [self.registry.route(entry) for entry in models]
        call.route_reason = chosen.reason

    def _fallbacks(self, call: Call, chosen: Sequence[ModelEntry]) -> list[ModelEntry]:
        def usable(entry: ModelEntry) -> bool:
            if not self.registry.is_available(entry):
                return False
            request = call.request
            if isinstance(request, ImageRequest) and entry.pricing is not None:
                return entry.pricing.image_price(request.size, request.quality) is not None
            if call.operation == "chat" and not call.estimated_input_tokens:
                call.estimated_input_tokens = call.prompt_tokens(self.estimator, None)
            return self._fits(call, entry)

        return fallback_entries(self.registry.catalog, call, chosen, usable=usable)

    def _need_tokens(self, call: Call, entry: ModelEntry) -> int:
        """What a chat call may use on `entry` (prompt plus the most it may answer), for the
        headroom its deployments reported; 0 for other calls."""
        request = call.request
        if not isinstance(request, ChatRequest):
            return 0
        return call.prompt_tokens(self.estimator, entry) + (request.max_tokens or 0)

    def _check_concrete(self, call: Call, entry: ModelEntry) -> None:
        if entry.modality != call.modality:
            raise BadRequestError(
                f"The model '{entry.id}' is a {entry.modality} model; this endpoint needs a "
                f"{call.modality} model",
                param="model",
            )
        if not entry.is_priced:
            raise BadRequestError(
                f"The model '{entry.id}' has no price in the catalog and cannot be billed",
                param="model",
            )
        if call.operation == "embedding":
            check_embedding(call, entry, self.estimator, strategy=False)
        if call.operation == "image" and entry.pricing is not None:
            request = cast(ImageRequest, call.request)
            if entry.pricing.image_price(request.size, request.quality) is None:
                sizes = sorted({row.size for row in entry.pricing.per_image if row.size})
                qualities = sorted({row.quality for row in entry.pricing.per_image if row.quality})
                param = "quality" if request.size in sizes or request.size is None else "size"
                raise BadRequestError(
                    f"The model '{entry.id}' does not make images of size "
                    f"'{request.size}' and quality '{request.quality}' "
                    f"(sizes: {', '.join(sizes)}; qualities: {', '.join(qualities) or 'any'})",
                    param=param,
                )

    def _fits(self, call: Call, entry: ModelEntry) -> bool:
        if call.operation == "embedding":
            try:
                check_embedding(call, entry, self.estimator, strategy=True)
            except BadRequestError:
                return False
            return True
        if call.operation != "chat" or entry.context_window is None:
            return True
        request = cast(ChatRequest, call.request)
        return call.estimated_input_tokens + (request.max_tokens or 0) <= entry.context_window

    def _query(self, call: Call, strategy: str) -> RouteQuery:
        request = call.request
        if isinstance(request, ChatRequest):
            return RouteQuery(
                "text",
                strategy,
                input_tokens=call.estimated_input_tokens,
                output_tokens=request.max_tokens or EXPECTED_OUTPUT_TOKENS,
            )
        if isinstance(request, ImageRequest):
            return RouteQuery(
                "image",
                strategy,
                images=request.n,
                image_size=request.size,
                image_quality=request.quality,
            )
        if isinstance(request, EmbeddingRequest):
            return RouteQuery("embedding", strategy, input_tokens=call.estimated_input_tokens)
        if isinstance(request, TranscriptionRequest):
            return RouteQuery("transcription", strategy, audio_seconds=request.max_seconds)
        return RouteQuery("audio", strategy, characters=len(request.input))

    # ---- usage and cost ----------------------------------------------------------------

    def _chat_usage(self, call: Call, response: ChatResponse) -> Usage:
        if response.usage is not None:
            return response.usage
        entry = call.route.entry if call.route is not None else None
        text = response.text + "".join(c.name + c.arguments for c in response.tool_calls)
        return Usage(
            input_tokens=call.prompt_tokens(self.estimator, entry),
            output_tokens=self.estimator.text_tokens(text, entry),
            estimated=True,
        )

    def _embedding_usage(self, call: Call, response: EmbeddingResponse) -> Usage:
        if response.usage.input_tokens:
            return response.usage
        entry = call.route.entry if call.route is not None else None
        return Usage(input_tokens=call.prompt_tokens(self.estimator, entry), estimated=True)

    def price(self, call: Call, usage: Usage) -> Cost:
        """The cost of `usage` on the call's model (zero, logged, if it cannot be priced); for
        an answer from the response cache, the configured fraction of it."""
        assert call.route is not None
        try:
            cost = self.pricing.price(call.route.model, usage)
        except PricingError:
            log.exception("pricing_failed", model=call.route.model, request_id=call.request_id)
            return self.pricing.price(call.route.model, Usage(estimated=usage.estimated))
        cache = call.cache
        if cache is not None and cache.hit:  # an answer from the cache: a fraction of its cost
            charged = fraction_of(cost, cache.fraction)
            cache.saved_micro_credits = cost.micro_credits - charged.micro_credits
            return charged
        return cost

    # ---- background work ---------------------------------------------------------------

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` to completion even if the current task is being cancelled."""
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def interrupt_streams(self, error: GatewayError) -> int:
        """End every stream still open with `error` (at the end of a graceful stop): each ends
        with an error event in its caller's dialect and is charged for what it delivered."""
        return sum(stream.interrupt(error) for stream in list(self.open_streams))

    async def drain(self) -> None:
        """Wait for background work (at shutdown)."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)


def _transcription_usage(request: TranscriptionRequest, response: TranscriptionResponse) -> Usage:
    """The audio's length in whole seconds: as OneFlow read it from the file, else as the
    provider reported it, else what was reserved (an estimate)."""
    duration = request.duration if request.duration is not None else response.duration
    if duration is None:
        usage = Usage(audio_seconds=request.max_seconds, estimated=True)
    else:
        usage = Usage(audio_seconds=whole_seconds(duration))
    response.usage = usage
    return usage


def _log_fallback(failed: Attempt, route: Route) -> None:
    kind = failed.error.kind if failed.error is not None else "error"
    log.info(
        "fallback",
        failed_model=failed.model,
        failed_provider=failed.provider,
        error=kind,
        next_model=route.model,
        next_provider=route.provider_name,
    )


def _fallback_reason(records: Sequence[AttemptRecord]) -> RouteReason:
    """Which models the chain moved past before the answering one (the last record), and why."""
    *passed, answered = records
    steps = [
        (r.model, getattr(r.error, "kind", "error") if r.outcome == "failed" else None)
        for r in passed
    ]
    return fell_back(steps, answered.model)


def _since(started: float) -> float:
    return (time.perf_counter() - started) * 1000


async def _open(
    batches: AsyncIterator[list[StreamEvent]],
) -> tuple[list[StreamEvent], AsyncIterator[list[StreamEvent]]]:
    """Read a provider stream up to and including the batch with its first content event."""
    head: list[StreamEvent] = []
    try:
        async for batch in batches:
            head.extend(batch)
            if any(isinstance(event, _CONTENT) for event in batch):
                break
    except BaseException:
        await _aclose(batches)
        raise
    return head, batches


async def _iterate(events: list[StreamEvent]) -> AsyncIterator[list[StreamEvent]]:
    yield events


async def _aclose(batches: AsyncIterator[list[StreamEvent]]) -> None:
    close = getattr(batches, "aclose", None)
    if close is not None:
        await close()
