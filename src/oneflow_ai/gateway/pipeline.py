"""The request pipeline: the one place that runs a request end to end.

    edge (authenticated Call) -> plan the candidates (`planner.py`) -> pre-hooks (in order)
    -> provider call down the candidates, falling back on a retryable failure (`chain.py`)
    -> usage -> cost -> post-hooks (in reverse) -> edge renders the answer in
    the caller's dialect

Streams run the same way, but the pipeline returns as soon as the first real content has
arrived (`open_chat_stream`): the opening events are held back until then, so a failure before
it is still an ordinary error answer or a fallback, invisible to the caller. The rest of the
accounting happens when the stream ends (`ChatStream`).

Extension points: `Hook`s around the call (`gateway.hooks`: limits, the ledger, the response
cache, feedback), a `ModelSelector` for routing by strategy, a `TokenEstimator` for counts the
provider did not give.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Sequence
from functools import partial
from typing import Any, TypeVar

import structlog

from oneflow_ai.billing.cost import Cost, fraction_of
from oneflow_ai.billing.errors import PricingError
from oneflow_ai.billing.pricing import PricingEngine
from oneflow_ai.domain.audio import whole_seconds
from oneflow_ai.domain.chat import (
    ChatRequest,
    ChatResponse,
    StreamEvent,
)
from oneflow_ai.domain.embeddings import EmbeddingRequest, EmbeddingResponse
from oneflow_ai.domain.media import ImageRequest, ImageResponse, SpeechRequest, SpeechResponse
from oneflow_ai.domain.transcription import TranscriptionRequest, TranscriptionResponse
from oneflow_ai.domain.usage import Usage
from oneflow_ai.errors import (
    GatewayError,
)
from oneflow_ai.gateway import embeddings
from oneflow_ai.gateway.call import Answer, Call
from oneflow_ai.gateway.chain import Chain
from oneflow_ai.gateway.deployments import DeploymentPicker
from oneflow_ai.gateway.estimate import CharacterEstimator, TokenEstimator
from oneflow_ai.gateway.hooks import Hook, ShortCircuit
from oneflow_ai.gateway.planner import Planner
from oneflow_ai.gateway.planning import (
    ModelSelector,
    select_by_router,
)
from oneflow_ai.gateway.reasoning import for_model
from oneflow_ai.gateway.stream import ChatStream, one_batch, open_batches, response_events
from oneflow_ai.observability.telemetry import Telemetry
from oneflow_ai.providers.registry import ProviderRegistry, Route
from oneflow_ai.resilience.breaker_set import CircuitBreakers
from oneflow_ai.resilience.load import DeploymentLoad
from oneflow_ai.routing.router import IntelligentRouter

__all__ = ["Pipeline"]

log = structlog.get_logger("oneflow.gateway")

R = TypeVar("R")

#: `Hook`'s own `before` and `after`, which do nothing.
_NO_BEFORE = Hook.before
_NO_AFTER = Hook.after


class _HookPlan:
    """The hooks of a pipeline as a call runs them: those with a `before` of their own (with
    their place in the list), and those with an `after` of their own, in reverse order."""

    __slots__ = ("afters", "befores", "hooks")

    def __init__(self, hooks: Sequence[Hook]) -> None:
        self.hooks = list(hooks)  # a copy: `Pipeline.hooks` is compared with it
        self.befores = tuple(
            (index, hook)
            for index, hook in enumerate(self.hooks)
            if type(hook).before is not _NO_BEFORE
        )
        self.afters = tuple(
            hook for hook in reversed(self.hooks) if type(hook).after is not _NO_AFTER
        )


class Pipeline:
    """Runs calls against the registry's providers, prices them and tells hooks and sinks.

    `hooks` is a list, in order: add to it at start-up (limits, ledger, cache, feedback).
    """

    def __init__(
        self,
        registry: ProviderRegistry,
        pricing: PricingEngine,
        *,
        hooks: Iterable[Hook] = (),
        selector: ModelSelector | None = None,
        estimator: TokenEstimator | None = None,
        telemetry: Telemetry | None = None,
        breakers: CircuitBreakers | None = None,
        load: DeploymentLoad | None = None,
    ) -> None:
        self.registry = registry
        self.pricing = pricing
        self.hooks: list[Hook] = list(hooks)
        self._plan = _HookPlan(self.hooks)
        self.estimator: TokenEstimator = estimator or CharacterEstimator()
        self.planner = Planner(
            registry,
            selector or partial(select_by_router, IntelligentRouter(pricing, circuits=breakers)),
            self.estimator,
        )
        self.telemetry = telemetry if telemetry is not None else Telemetry.disabled()
        self.breakers = breakers
        self.deployments = DeploymentPicker(registry, breakers=breakers, load=load)
        self._chain = Chain(self.deployments, self.telemetry, self.planner.need_tokens)
        self._background: set[asyncio.Task[None]] = set()
        self.open_streams: set[ChatStream] = set()  # being iterated (see `interrupt_streams`)

    @property
    def selector(self) -> ModelSelector:
        """How a strategy chooses its models (the planner's)."""
        return self.planner.selector

    @selector.setter
    def selector(self, selector: ModelSelector) -> None:
        self.planner.selector = selector

    # ---- operations --------------------------------------------------------------------

    async def chat(self, call: Call) -> ChatResponse:
        request = call.payload(ChatRequest)

        async def invoke(route: Route) -> ChatResponse:
            return await route.chat().chat(for_model(request, route.entry), route.upstream_model)

        return await self._run(call, invoke, partial(self._chat_usage, call), ChatResponse)

    async def generate_image(self, call: Call) -> ImageResponse:
        request = call.payload(ImageRequest)

        async def invoke(route: Route) -> ImageResponse:
            return await route.images().generate_image(request, route.upstream_model)

        return await self._run(call, invoke, lambda response: response.usage, ImageResponse)

    async def synthesize_speech(self, call: Call) -> SpeechResponse:
        request = call.payload(SpeechRequest)

        async def invoke(route: Route) -> SpeechResponse:
            return await route.speech().synthesize_speech(request, route.upstream_model)

        return await self._run(call, invoke, lambda response: response.usage, SpeechResponse)

    async def embed(self, call: Call) -> EmbeddingResponse:
        request = call.payload(EmbeddingRequest)

        async def invoke(route: Route) -> EmbeddingResponse:
            asked = embeddings.for_model(request, route.entry)
            return await route.embeddings().embed(asked, route.upstream_model)

        return await self._run(
            call, invoke, partial(self._embedding_usage, call), EmbeddingResponse
        )

    async def transcribe(self, call: Call) -> TranscriptionResponse:
        request = call.payload(TranscriptionRequest)

        async def invoke(route: Route) -> TranscriptionResponse:
            return await route.transcriptions().transcribe(request, route.upstream_model)

        return await self._run(
            call, invoke, partial(_transcription_usage, request), TranscriptionResponse
        )

    async def open_chat_stream(self, call: Call) -> ChatStream:
        """Start a streamed answer; returns once its first content is in hand (or raises the
        error of the last candidate tried, before anything reached the caller)."""
        request = call.payload(ChatRequest)
        self.planner.plan(call)
        entered: list[Hook] = []
        try:
            shortcut = await self._before(call, entered)
            if shortcut is not None:
                call.route = shortcut.route
                response = shortcut.response
                assert isinstance(response, ChatResponse)  # a chat call's answer
                events = response_events(response, shortcut.usage)
                return await ChatStream(self, call, entered, [], one_batch(events)).opened()

            async def invoke(
                route: Route,
            ) -> tuple[list[StreamEvent], AsyncIterator[list[StreamEvent]]]:
                fitted = for_model(request, route.entry)
                return await open_batches(route.chat().stream_chat(fitted, route.upstream_model))

            head, rest = await self._chain(call, invoke)
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
        kind: type[R],
    ) -> R:
        """Plan, run the hooks around the provider call, price the answer (of type `kind`)."""
        self.planner.plan(call)
        entered: list[Hook] = []
        response: R
        try:
            shortcut = await self._before(call, entered)
            if shortcut is not None:
                call.route = shortcut.route
                given = shortcut.response
                if not isinstance(given, kind):
                    raise TypeError(f"a {call.operation} call answered with {given!r}")
                response = given
                usage = shortcut.usage or usage_of(response)
            else:
                response = await self._chain(call, invoke)
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

    def _hook_plan(self) -> _HookPlan:
        """Which hooks have a `before` and an `after` of their own: decided once for the list of
        hooks (again only when it changes: hooks are added at start-up, and by tests)."""
        plan = self._plan
        if plan.hooks != self.hooks:
            plan = self._plan = _HookPlan(self.hooks)
        return plan

    async def _before(self, call: Call, entered: list[Hook]) -> ShortCircuit | None:
        """The pre-hooks, in order; `entered` gets the hooks entered (a prefix of the hooks:
        up to the one that short-circuits, before the one that raises)."""
        plan = self._hook_plan()
        hooks = plan.hooks
        for index, hook in plan.befores:
            # Only hooks with a `before` of their own are awaited (several have only an
            # `after`): no coroutine made and awaited for nothing.
            try:
                shortcut = await hook.before(call)
            except BaseException:
                entered.extend(hooks[:index])
                raise
            if shortcut is not None:
                entered.extend(hooks[: index + 1])
                return shortcut
        entered.extend(hooks)
        return None

    async def finish(self, call: Call, entered: Sequence[Hook]) -> None:
        """Post-hooks in reverse order; their failures are logged."""
        if call.finished_at is None:
            call.finished_at = time.perf_counter()
        plan = self._hook_plan()
        if len(entered) == len(plan.hooks):  # every hook (`entered` is a prefix of them)
            afters: Iterable[Hook] = plan.afters
        else:
            afters = [hook for hook in reversed(entered) if type(hook).after is not _NO_AFTER]
        for hook in afters:
            try:
                await hook.after(call)
            except Exception:
                log.exception("hook_failed", hook=hook.name, request_id=call.request_id)

    # ---- planning ----------------------------------------------------------------------

    def prompt_tokens(self, call: Call) -> int:
        """OneFlow's count of a chat call's input tokens on the model answering it (for
        announcing them before the provider's count arrives)."""
        entry = call.route.entry if call.route is not None else None
        return call.prompt_tokens(self.estimator, entry)

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
