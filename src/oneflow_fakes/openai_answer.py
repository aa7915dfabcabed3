"""One OpenAI chat answer, as a `chat.completion` body or as a stream of chunks."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

import orjson
from aiohttp import web

from oneflow_fakes.errors import openai_stream_error
from oneflow_fakes.exchange import (
    Exchange,
    FakeState,
    Stream,
    StreamFailed,
    now,
    random_id,
    sse,
)
from oneflow_fakes.openai_common import openai_headers
from oneflow_fakes.text import Completion, ToolCallPlan
from oneflow_fakes.usage_marker import UsageMarker

__all__ = ["ChatAnswer"]

_ARG_PIECES = re.compile(r"\s*\w+|\s*[^\w\s]+")
_DONE = b"data: [DONE]\n\n"


class ChatAnswer:
    """One chat answer, as a body or as a stream of chunks."""

    def __init__(
        self,
        exchange: Exchange,
        model: str,
        prompt_tokens: int,
        completion: Completion,
        plans: list[ToolCallPlan],
        choices: int,
        state: FakeState,
        marker: UsageMarker | None = None,
    ) -> None:
        self.exchange = exchange
        self.marker = marker or UsageMarker()
        self.state = state
        self.model = model
        self.prompt_tokens = prompt_tokens
        self.completion = completion
        self.calls = [(random_id("call_", 24), plan) for plan in plans]
        self.choices = choices
        self.id = random_id("chatcmpl-", 29)
        self.created = now()
        self.fingerprint = "fp_" + random_id("", 10).lower()
        count = state.count_tokens
        if self.calls:
            per_choice = sum(3 + count(p.name) + count(p.arguments_json) for _, p in self.calls)
        else:
            per_choice = completion.tokens
        self.completion_tokens = per_choice * choices

    @property
    def finish_reason(self) -> str:
        if self.calls:
            return "tool_calls"
        return "length" if self.completion.finish == "length" else "stop"

    def body(self) -> dict[str, object]:
        message: dict[str, object] = {
            "role": "assistant",
            "content": None if self.calls else self.completion.text,
            "refusal": None,
            "annotations": [],
        }
        if self.calls:
            message["tool_calls"] = [
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": plan.name, "arguments": plan.arguments_json},
                }
                for call_id, plan in self.calls
            ]
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [
                {
                    "index": i,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": self.finish_reason,
                }
                for i in range(self.choices)
            ],
            "usage": self.usage(),
            "service_tier": "default",
            "system_fingerprint": self.fingerprint,
        }

    def usage(self) -> dict[str, object]:
        """The answer's usage, with the token classes its request's marker asked for."""
        return self.marker.openai(self.prompt_tokens, self.completion_tokens)

    def _envelope(self, choices: list[dict[str, object]]) -> dict[str, object]:
        """A stream chunk's fields around its choices."""
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "service_tier": "default",
            "system_fingerprint": self.fingerprint,
            "choices": choices,
        }

    def _chunk(
        self, choices: list[dict[str, object]], include_usage: bool, obfuscation: bool
    ) -> bytes:
        chunk = self._envelope(choices)
        if include_usage:
            chunk["usage"] = None
        if obfuscation:
            chunk["obfuscation"] = random_id("", 6)
        return sse(orjson.dumps(chunk))

    @staticmethod
    def _choice(
        index: int, delta: Mapping[str, object], finish: str | None = None
    ) -> dict[str, object]:
        return {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}

    async def stream(self, *, include_usage: bool, obfuscation: bool) -> web.StreamResponse:
        exchange = self.exchange
        fault = exchange.fault
        remaining = self.state.openai_remaining()
        stream = await exchange.open_stream("text/event-stream", openai_headers(remaining))

        def chunk(choices: list[dict[str, object]]) -> bytes:
            return self._chunk(choices, include_usage, obfuscation)

        def failure() -> bytes:
            return sse(orjson.dumps(openai_stream_error(fault.error_type, fault.message)))

        try:
            await self._stream_body(stream, chunk, failure)
        except StreamFailed:
            return await stream.failed()
        await stream.closing(
            chunk([self._choice(i, {}, self.finish_reason) for i in range(self.choices)])
        )
        if include_usage:
            final = self._envelope([])
            final["usage"] = self.usage()
            await stream.closing(sse(orjson.dumps(final)))
        await stream.closing(_DONE)
        return await stream.finish()

    async def _stream_body(
        self,
        stream: Stream,
        chunk: Callable[[list[dict[str, object]]], bytes],
        failure: Callable[[], bytes],
    ) -> None:
        indexes = range(self.choices)
        if not self.calls:
            opening = {"role": "assistant", "content": "", "refusal": None}
            await stream.opening(chunk([self._choice(i, opening) for i in indexes]))
            for piece in self.completion.chunks:
                await stream.content(
                    chunk([self._choice(i, {"content": piece}) for i in indexes]), failure
                )
            return
        for position, (call_id, plan) in enumerate(self.calls):
            head: dict[str, object] = {
                "index": position,
                "id": call_id,
                "type": "function",
                "function": {"name": plan.name, "arguments": ""},
            }
            delta: dict[str, object] = {"tool_calls": [head]}
            if position == 0:
                delta = {"role": "assistant", "content": None, "tool_calls": [head]}
                await stream.opening(chunk([self._choice(i, delta) for i in indexes]))
            else:
                await stream.content(chunk([self._choice(i, delta) for i in indexes]), failure)
            for piece in _ARG_PIECES.findall(plan.arguments_json):
                arguments = {"tool_calls": [{"index": position, "function": {"arguments": piece}}]}
                await stream.content(chunk([self._choice(i, arguments) for i in indexes]), failure)
