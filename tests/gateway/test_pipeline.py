"""The pipeline's contract with hooks, selectors and fallbacks.

The providers here are small in-process adapters whose answers each test scripts; the
pipeline, registry, pricing and catalog are the real ones.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import pytest

from oneflow_ai.auth.principal import MASTER
from oneflow_ai.billing.pricing import PricingEngine
from oneflow_ai.catalog import Catalog, ModelEntry, packaged_catalog
from oneflow_ai.domain.chat import (
    ChatRequest,
    ChatResponse,
    Message,
    StreamEvent,
    StreamFinish,
    StreamStart,
    StreamUsage,
    TextDelta,
    TextPart,
)
from oneflow_ai.domain.usage import Usage
from oneflow_ai.errors import (
    GatewayError,
    ProviderBadRequestError,
    ProviderUnavailableError,
    RateLimitedError,
)
from oneflow_ai.gateway.call import Call
from oneflow_ai.gateway.hooks import Hook, ShortCircuit
from oneflow_ai.gateway.pipeline import Pipeline
from oneflow_ai.gateway.planning import RouteQuery, Selection
from oneflow_ai.providers.registry import ProviderRegistry
from oneflow_ai.routing.reasons import RouteReason
from tests.support.recording import RecordingHook, RecordingSink


class ScriptedChat:
    """A chat adapter answering from a script: a response, or an error to raise."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.answers: list[ChatResponse | GatewayError] = []
        self.streams: list[list[StreamEvent | GatewayError]] = []
        self.calls: list[str] = []

    async def aclose(self) -> None:
        return None

    async def chat(self, request: ChatRequest, model: str) -> ChatResponse:
        self.calls.append(model)
        answer = self.answers.pop(0)
        if isinstance(answer, GatewayError):
            raise answer
        return answer

    async def stream_chat(
        self, request: ChatRequest, model: str
    ) -> AsyncIterator[list[StreamEvent]]:
        self.calls.append(model)
        for item in self.streams.pop(0):
            if isinstance(item, GatewayError):
                raise item
            yield [item]


def _answer(text: str = "ok", usage: Usage | None = None) -> ChatResponse:
    return ChatResponse("id-1", "m", text, "stop", usage or Usage(input_tokens=10, output_tokens=2))


def _call(model: str = "gpt-4o", strategy: str | None = None, stream: bool = False) -> Call:
    request = ChatRequest(model, [Message("user", [TextPart("Hello there")])], stream=stream)
    return Call("req-1", MASTER, "chat", request, model, strategy=strategy, stream=stream)


@pytest.fixture
def openai() -> ScriptedChat:
    return ScriptedChat("openai")


@pytest.fixture
def anthropic() -> ScriptedChat:
    return ScriptedChat("anthropic")


def _text_catalog() -> Catalog:
    """The packaged catalog's text models (these adapters can only chat)."""
    full = packaged_catalog()
    return Catalog(
        price_table_version=full.price_table_version,
        prices_as_of=full.prices_as_of,
        sources=full.sources,
        models=[entry for entry in full.models if entry.modality == "text"],
    )


@pytest.fixture
def pipeline(openai: ScriptedChat, anthropic: ScriptedChat) -> Pipeline:
    catalog = _text_catalog()
    registry = ProviderRegistry(catalog)
    registry.register(openai)
    registry.register(anthropic)
    return Pipeline(registry, PricingEngine(catalog))


def test_registration_checks_capabilities(openai: ScriptedChat) -> None:
    # The full catalog has DALL-E models on OpenAI: a chat-only adapter cannot serve them.
    with pytest.raises(TypeError, match=r"dall-e-3.*ImageCapable"):
        ProviderRegistry(packaged_catalog()).register(openai)
    with pytest.raises(TypeError, match="does not implement Provider"):
        ProviderRegistry(packaged_catalog()).register(object())  # type: ignore[arg-type]


async def test_pre_hooks_in_order_post_hooks_in_reverse(
    pipeline: Pipeline, openai: ScriptedChat
) -> None:
    log: list[str] = []
    sink = RecordingSink()
    pipeline.hooks += [RecordingHook("limits", log), RecordingHook("billing", log)]
    pipeline.hooks.insert(0, sink)
    openai.answers.append(_answer())
    call = _call()
    response = await pipeline.chat(call)
    assert response.text == "ok"
    assert log == ["limits.before", "billing.before", "billing.after:ok", "limits.after:ok"]
    assert call.cost is not None and call.cost.model == "gpt-4o"
    (record,) = sink.records
    assert record.usage == Usage(input_tokens=10, output_tokens=2) and record.attempts == 1


async def test_a_pre_hook_may_answer_instead_of_the_provider(
    pipeline: Pipeline, openai: ScriptedChat
) -> None:
    log: list[str] = []

    class Cache(Hook):
        name = "cache"

        async def before(self, call: Call) -> ShortCircuit:
            log.append("cache.before")
            return ShortCircuit(call.candidates[0], _answer("cached"), Usage(input_tokens=1))

        async def after(self, call: Call) -> None:
            log.append("cache.after")

    pipeline.hooks += [RecordingHook("first", log), Cache(), RecordingHook("never", log)]
    call = _call()
    response = await pipeline.chat(call)
    assert response.text == "cached" and openai.calls == []
    assert log == ["first.before", "cache.before", "cache.after", "first.after:ok"]
    assert call.usage == Usage(input_tokens=1)


async def test_a_pre_hook_may_refuse_the_call(pipeline: Pipeline, openai: ScriptedChat) -> None:
    log: list[str] = []

    class Limiter(Hook):
        async def before(self, call: Call) -> None:
            raise RateLimitedError("slow down", retry_after=2)

    pipeline.hooks += [RecordingHook("outer", log), Limiter(), RecordingHook("inner", log)]
    sink = RecordingSink()
    pipeline.hooks.insert(0, sink)
    with pytest.raises(RateLimitedError):
        await pipeline.chat(_call())
    assert openai.calls == [] and log == ["outer.before", "outer.after:error"]
    assert sink.records == []  # no model was called, nothing to bill


async def test_one_sided_hooks_run_their_side_in_order(
    pipeline: Pipeline, openai: ScriptedChat
) -> None:
    """A hook with only an `after` is entered all the same (its `after` runs, in reverse
    order), and one with only a `before` runs it in its place."""
    log: list[str] = []

    class AfterOnly(Hook):
        async def after(self, call: Call) -> None:
            log.append("after-only.after")

    class BeforeOnly(Hook):
        async def before(self, call: Call) -> None:
            log.append("before-only.before")

    pipeline.hooks += [
        AfterOnly(),
        RecordingHook("outer", log),
        BeforeOnly(),
        Hook(),
        RecordingHook("inner", log),
    ]
    openai.answers.append(_answer())
    await pipeline.chat(_call())
    assert log == [
        "outer.before",
        "before-only.before",
        "inner.before",
        "inner.after:ok",
        "outer.after:ok",
        "after-only.after",
    ]


def _two_models(query: RouteQuery, candidates: Sequence[ModelEntry]) -> Selection:
    by_id = {entry.id: entry for entry in candidates}
    models = [by_id["gpt-4o"], by_id["claude-3-haiku-20240307"]]
    return Selection(models, RouteReason.of(query.strategy, "two models"))


async def test_a_retryable_failure_falls_back_to_the_next_candidate(
    pipeline: Pipeline, openai: ScriptedChat, anthropic: ScriptedChat
) -> None:
    pipeline.selector = _two_models
    openai.answers.append(ProviderUnavailableError("down", provider="openai"))
    anthropic.answers.append(_answer("from claude"))
    call = _call("auto", strategy="balanced")
    response = await pipeline.chat(call)
    assert response.text == "from claude"
    assert [(a.model, a.error is not None) for a in call.attempts] == [
        ("gpt-4o", True),
        ("claude-3-haiku-20240307", False),
    ]
    assert call.route is not None and call.route.provider_name == "anthropic"
    assert call.cost is not None and call.cost.model == "claude-3-haiku-20240307"


async def test_a_bad_request_does_not_fall_back(
    pipeline: Pipeline, openai: ScriptedChat, anthropic: ScriptedChat
) -> None:
    pipeline.selector = _two_models
    openai.answers.append(ProviderBadRequestError("bad", provider="openai"))
    with pytest.raises(ProviderBadRequestError):
        await pipeline.chat(_call("auto", strategy="balanced"))
    assert anthropic.calls == []


async def test_stream_falls_back_before_content_and_hooks_see_every_event(
    pipeline: Pipeline, openai: ScriptedChat, anthropic: ScriptedChat
) -> None:
    pipeline.selector = _two_models
    log: list[str] = []
    watcher = RecordingHook("metrics", log)
    pipeline.hooks.append(watcher)
    # OpenAI opens its stream, then fails before any content: the caller never sees it.
    openai.streams.append([StreamStart("a", "gpt-4o"), ProviderUnavailableError("overloaded")])
    events: list[StreamEvent | GatewayError] = [
        StreamStart("b", "claude"),
        StreamUsage(input_tokens=20),
        TextDelta("Hel"),
        TextDelta("lo"),
        StreamFinish("stop"),
        StreamUsage(output_tokens=5),
    ]
    anthropic.streams.append(events)
    call = _call("auto", strategy="balanced", stream=True)
    stream = await pipeline.open_chat_stream(call)
    assert stream.route.model == "claude-3-haiku-20240307"
    assert log == ["metrics.before"]  # the stream is open: post-hooks wait for its end
    received = [event async for event in stream]
    assert received == events
    assert watcher.events == events
    assert log == ["metrics.before", "metrics.after:ok"]
    assert stream.usage == Usage(input_tokens=20, output_tokens=5)
    assert stream.finish_reason == "stop"


async def test_stream_without_provider_usage_is_estimated(
    pipeline: Pipeline, openai: ScriptedChat
) -> None:
    openai.streams.append([StreamStart("a", "gpt-4o"), TextDelta("12345678"), StreamFinish("stop")])
    stream = await pipeline.open_chat_stream(_call(stream=True))
    _ = [event async for event in stream]
    assert stream.usage is not None and stream.usage.estimated
    assert stream.usage.output_tokens == 2  # 8 characters
    assert stream.cost is not None and stream.cost.estimated


async def test_unknown_model_and_wrong_modality_are_refused_before_any_call(
    pipeline: Pipeline, openai: ScriptedChat
) -> None:
    with pytest.raises(GatewayError) as unknown:
        await pipeline.chat(_call("gpt-9"))
    assert (unknown.value.status, unknown.value.param) == (404, "model")
    assert openai.calls == []
