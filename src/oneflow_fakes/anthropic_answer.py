"""One Anthropic Messages answer, as a `message` body or as a stream of events."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

import orjson
from aiohttp import web

from oneflow_fakes.errors import anthropic_error
from oneflow_fakes.exchange import Exchange, FakeState, Stream, StreamFailed, random_id, sse
from oneflow_fakes.text import Completion, ToolCallPlan
from oneflow_fakes.thinking import sign
from oneflow_fakes.usage_marker import UsageMarker

__all__ = ["MessagesAnswer"]

_ARG_PIECES = re.compile(r"\s*\w+|\s*[^\w\s]+")


class MessagesAnswer:
    """One Anthropic answer, as a `message` body or as a stream of events."""

    def __init__(
        self,
        exchange: Exchange,
        model: str,
        input_tokens: int,
        completion: Completion,
        plans: list[ToolCallPlan],
        state: FakeState,
        marker: UsageMarker,
        thinking: str | None = None,
    ) -> None:
        self.exchange = exchange
        self.marker = marker
        self.thinking = thinking
        self.model = model
        self.input_tokens = input_tokens
        self.completion = completion
        self.calls = [(random_id("toolu_01", 22), plan) for plan in plans]
        self.id = random_id("msg_01", 22)
        count = state.count_tokens
        self.output_tokens = (
            completion.tokens
            + sum(8 + count(p.name) + count(p.arguments_json) for _, p in self.calls)
            + marker.reasoning
            + (count(thinking) if thinking else 0)
        )
        if thinking is not None:
            self.output_tokens += count(thinking)

    @property
    def stop_reason(self) -> str:
        if self.calls:
            return "tool_use"
        return {"length": "max_tokens", "stop_sequence": "stop_sequence"}.get(
            self.completion.finish, "end_turn"
        )

    def _usage(self, output_tokens: int) -> dict[str, object]:
        """Usage with the cache classes the request's marker asked for (`output_tokens`
        already holds its reasoning tokens)."""
        usage = self.marker.anthropic(self.input_tokens, None)
        usage["output_tokens"] = output_tokens
        return usage

    def body(self) -> dict[str, object]:
        content: list[dict[str, object]] = []
        if self.thinking is not None:
            content.append(
                {"type": "thinking", "thinking": self.thinking, "signature": sign(self.thinking)}
            )
        if self.completion.chunks:
            content.append({"type": "text", "text": self.completion.text})
        for call_id, plan in self.calls:
            content.append(
                {"type": "tool_use", "id": call_id, "name": plan.name, "input": plan.arguments}
            )
        return {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": content,
            "stop_reason": self.stop_reason,
            "stop_sequence": self.completion.stop_sequence,
            "usage": self._usage(self.output_tokens),
        }

    async def stream(self) -> web.StreamResponse:
        exchange = self.exchange
        fault = exchange.fault
        stream = await exchange.open_stream("text/event-stream")

        def failure() -> bytes:
            body = anthropic_error(None, fault.error_type or "overloaded_error", fault.message).body
            return _event("error", body)

        start = {
            "type": "message_start",
            "message": {
                "id": self.id,
                "type": "message",
                "role": "assistant",
                "model": self.model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": self._usage(1),
            },
        }
        await stream.opening(_event("message_start", start))
        try:
            await self._blocks(stream, failure)
        except StreamFailed:
            return await stream.failed()
        delta = {
            "type": "message_delta",
            "delta": {
                "stop_reason": self.stop_reason,
                "stop_sequence": self.completion.stop_sequence,
            },
            "usage": {"output_tokens": self.output_tokens},
        }
        await stream.closing(_event("message_delta", delta))
        await stream.closing(_event("message_stop", {"type": "message_stop"}))
        return await stream.finish()

    async def _blocks(self, stream: Stream, failure: Callable[[], bytes]) -> None:
        index = 0
        if self.thinking is not None:
            opening = {"type": "thinking", "thinking": ""}
            thought = {"type": "thinking_delta", "thinking": self.thinking}
            await _block(stream, 0, opening, [thought], failure)
            await stream.opening(
                _delta(0, {"type": "signature_delta", "signature": sign(self.thinking)})
            )
            await _block_stop(stream, 0)
            index += 1
        if self.completion.chunks:
            text_block: dict[str, object] = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": piece} for piece in self.completion.chunks]
            await _block(stream, index, text_block, deltas, failure)
            await _block_stop(stream, index)
            index += 1
        for call_id, plan in self.calls:
            block: dict[str, object] = {
                "type": "tool_use",
                "id": call_id,
                "name": plan.name,
                "input": {},
            }
            pieces = ["", *_ARG_PIECES.findall(plan.arguments_json)]
            deltas = [{"type": "input_json_delta", "partial_json": piece} for piece in pieces]
            await _block(stream, index, block, deltas, failure)
            await _block_stop(stream, index)
            index += 1


async def _block(
    stream: Stream,
    index: int,
    block: Mapping[str, object],
    deltas: list[dict[str, str]],
    failure: Callable[[], bytes],
) -> None:
    """A content block's start (and a ping after the first), then its deltas."""
    start = {"type": "content_block_start", "index": index, "content_block": block}
    await stream.opening(_event("content_block_start", start))
    if index == 0:
        await stream.opening(_event("ping", {"type": "ping"}))
    for delta in deltas:
        await stream.content(_delta(index, delta), failure)


async def _block_stop(stream: Stream, index: int) -> None:
    await stream.opening(
        _event("content_block_stop", {"type": "content_block_stop", "index": index})
    )


def _event(name: str, data: object) -> bytes:
    return sse(orjson.dumps(data), name)


def _delta(index: int, delta: Mapping[str, object]) -> bytes:
    return _event(
        "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
    )
