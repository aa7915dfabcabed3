"""The ledger hook on a stream: a limited reservation is checked on the stream's own running
count of its output, so the deltas are tokenized once (for the limit, the checkpoints and the
charge together); a stream that would run past what was reserved ends with a 402, charged
for what the caller received."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, cast

import pytest

from oneflow_ai.auth.principal import MASTER
from oneflow_ai.billing.checkpoints import Delivered
from oneflow_ai.billing.ledger import Ledger
from oneflow_ai.billing.pricing import PricingEngine
from oneflow_ai.billing.reservation import Reservation
from oneflow_ai.catalog import ModelEntry
from oneflow_ai.domain.chat import (
    ChatRequest,
    Message,
    StreamEvent,
    StreamFinish,
    StreamStart,
    StreamUsage,
    TextDelta,
    TextPart,
    ThinkingDelta,
    ToolCallDelta,
)
from oneflow_ai.domain.usage import Usage
from oneflow_ai.errors import GatewayError, InsufficientCreditsError
from oneflow_ai.gateway.call import Call
from oneflow_ai.gateway.estimate import CharacterEstimator
from oneflow_ai.gateway.ledger_hook import LedgerHook
from oneflow_ai.gateway.pipeline import Pipeline
from oneflow_ai.providers.registry import ProviderRegistry
from tests.gateway.test_pipeline import ScriptedChat, _text_catalog


class CountingEstimator(CharacterEstimator):
    """Four characters a token; remembers every text it was asked to count."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def text_tokens(self, text: str, model: ModelEntry | None) -> int:
        self.texts.append(text)
        return super().text_tokens(text, model)


class HoldingLedger:
    """A ledger that holds room for `limit` output tokens and remembers the outcome."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.probe: Callable[[], Delivered | None] | None = None
        self.settled: list[Usage] = []

    async def reserve(self, **request: Any) -> Reservation:
        return Reservation(
            id="r-1",
            request_id=request["request_id"],
            project_id=request["project_id"],
            model=request["model"],
            provider=request["provider"],
            max_cost=None,
            created_at=datetime.now(UTC),
            limited=True,
            output_token_limit=self.limit,
        )

    def track(self, reservation: Reservation, probe: Callable[[], Delivered | None]) -> None:
        self.probe = probe

    async def settle(self, reservation: Reservation, usage: Usage, **_: object) -> None:
        self.settled.append(usage)

    async def release(self, reservation: Reservation, outcome: object) -> None:
        raise AssertionError("a stream that delivered something is settled")


def _world(limit: int) -> tuple[Pipeline, ScriptedChat, HoldingLedger, CountingEstimator]:
    catalog = _text_catalog()
    registry = ProviderRegistry(catalog)
    openai = ScriptedChat("openai")
    registry.register(openai)
    pricing = PricingEngine(catalog)
    estimator = CountingEstimator()
    ledger = HoldingLedger(limit)
    hook = LedgerHook(cast(Ledger, ledger), pricing, estimator)
    return Pipeline(registry, pricing, hooks=[hook], estimator=estimator), openai, ledger, estimator


def _call() -> Call:
    request = ChatRequest("gpt-4o", [Message("user", [TextPart("Hello there")])], stream=True)
    return Call("req-1", MASTER, "chat", request, "gpt-4o", stream=True)


async def test_a_limited_stream_tokenizes_each_delta_once() -> None:
    pipeline, openai, ledger, estimator = _world(limit=100)
    deltas: list[StreamEvent] = [
        TextDelta("Hello"),
        ThinkingDelta("hmm, "),
        TextDelta(" there"),
        ToolCallDelta(0, '{"city": "Paris"}', "call-1", "weather"),
    ]
    openai.streams.append([StreamStart("a", "gpt-4o"), *deltas, StreamFinish("stop")])
    stream = await pipeline.open_chat_stream(_call())
    received = []
    checkpoints = []
    async for event in stream:
        received.append(event)
        assert ledger.probe is not None
        checkpoint = ledger.probe()  # a checkpoint reads the same count: what was delivered
        assert checkpoint is not None
        checkpoints.append(checkpoint.usage.output_tokens)
    assert [event for event in received if event in deltas] == deltas
    # The opening batch is [start, "Hello"]; each later event is a batch of its own.
    assert checkpoints == [0, 0, 2, 4, 6, 12]
    # Every piece of output text was tokenized exactly once, by the one counter.
    assert estimator.texts == ["Hello", "hmm, ", " there", '{"city": "Paris"}weather']
    (usage,) = ledger.settled
    assert usage == stream.usage and usage.estimated
    assert usage.output_tokens == 2 + 2 + 2 + 6  # batch by batch, four characters a token


async def test_a_stream_that_would_overrun_ends_with_a_402_charged_as_delivered() -> None:
    pipeline, openai, ledger, estimator = _world(limit=3)
    text = ["abcd", "efgh", "ijkl", "mnop", "qrst"]
    openai.streams.append(
        [StreamStart("a", "gpt-4o"), *(TextDelta(piece) for piece in text), StreamFinish("stop")]
    )
    stream = await pipeline.open_chat_stream(_call())
    received: list[str] = []
    with pytest.raises(InsufficientCreditsError) as raised:
        async for event in stream:
            if isinstance(event, TextDelta):
                received.append(event.text)
    assert isinstance(raised.value, GatewayError) and raised.value.status == 402
    assert received == ["abcd", "efgh", "ijkl"]  # the fourth would overrun: not forwarded
    (usage,) = ledger.settled
    assert usage.output_tokens == 3  # what the caller received
    assert estimator.texts == ["abcd", "efgh", "ijkl", "mnop"]  # each once, none again


async def test_a_limited_stream_far_from_its_limit_tokenizes_nothing_while_it_runs() -> None:
    pipeline, openai, ledger, estimator = _world(limit=1000)
    openai.streams.append(
        [
            StreamStart("a", "gpt-4o"),
            *(TextDelta(piece) for piece in ["abcd", "efgh", "ijkl"]),
            StreamFinish("stop"),
            StreamUsage(input_tokens=5, output_tokens=3),
        ]
    )
    stream = await pipeline.open_chat_stream(_call())
    async for _ in stream:
        assert estimator.texts == []  # the bound (12 bytes) is far below the 1000 reserved
    assert estimator.texts == []  # the provider's usage is what is charged
    (usage,) = ledger.settled
    assert usage.output_tokens == 3 and not usage.estimated


async def test_a_stream_near_its_limit_is_counted_exactly_before_it_is_stopped() -> None:
    pipeline, openai, ledger, _ = _world(limit=4)
    text = ["abcd", "efgh", "ijkl", "mnop", "qrst", "uvwx"]
    openai.streams.append(
        [StreamStart("a", "gpt-4o"), *(TextDelta(piece) for piece in text), StreamFinish("stop")]
    )
    stream = await pipeline.open_chat_stream(_call())
    received: list[str] = []
    with pytest.raises(InsufficientCreditsError):
        async for event in stream:
            if isinstance(event, TextDelta):
                received.append(event.text)
    # The bound (4 bytes a piece) passes 4 tokens at the second piece; the exact count (one
    # token a piece) lets four pieces through.
    assert received == ["abcd", "efgh", "ijkl", "mnop"]
    (usage,) = ledger.settled
    assert usage.output_tokens == 4
