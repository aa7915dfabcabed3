"""The fake Anthropic Messages endpoint (`POST /anthropic/v1/messages`)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence

import orjson
from aiohttp import web

from oneflow_fakes.errors import ErrorAnswer, anthropic_error
from oneflow_fakes.exchange import (
    Exchange,
    FakeState,
    Stream,
    StreamFailed,
    random_id,
    read_json,
    sse,
)
from oneflow_fakes.models import ANTHROPIC_MODELS, TextModel, text_model
from oneflow_fakes.openai_common import strings
from oneflow_fakes.text import Completion, ToolCallPlan, compose, plan_tool_calls, text_of
from oneflow_fakes.thinking import altered_thinking, sign, thinking_budget, thinking_text
from oneflow_fakes.usage_marker import UsageMarker, read_marker

__all__ = ["AnthropicMessages"]

MAX_BODY = 32 * 1024 * 1024
_ARG_PIECES = re.compile(r"\s*\w+|\s*[^\w\s]+")
_IMAGE_TOKENS = 1600


def _tool_result(content: object) -> str | None:
    """The text of the tool results in a user turn, or None when it has none."""
    if not isinstance(content, list):
        return None
    results = [
        block for block in content if isinstance(block, dict) and block.get("type") == "tool_result"
    ]
    if not results:
        return None
    return " ".join(text_of(block.get("content")) for block in results)


def _source(messages: Sequence[object]) -> tuple[str, bool]:
    last = messages[-1] if messages else None
    if isinstance(last, dict) and last.get("role") == "user":
        result = _tool_result(last.get("content"))
        if result is not None:
            return result, False
        return text_of(last.get("content")), True
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return text_of(message.get("content")), False
    return "", False


def _input_tokens(state: FakeState, data: Mapping[str, object]) -> int:
    count = state.count_tokens
    total = count(text_of(data.get("system")))
    messages = data.get("messages")
    for message in messages if isinstance(messages, list) else ():
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        total += 3 + count(text_of(content))
        if isinstance(content, list):
            for block in content:
                if not isinstance(block, dict):
                    continue
                kind = block.get("type")
                if kind == "image":
                    total += _IMAGE_TOKENS
                elif kind == "tool_use":
                    total += count(orjson.dumps(block.get("input", {})).decode())
                elif kind == "tool_result":
                    total += count(text_of(block.get("content")))
    tools = data.get("tools")
    if isinstance(tools, list) and tools:
        total += 300 + sum(count(orjson.dumps(tool).decode()) for tool in tools)
    return max(total, 1)


def _tool_schemas(tools: object) -> dict[str, Mapping[str, object]]:
    schemas: dict[str, Mapping[str, object]] = {}
    if isinstance(tools, list):
        for tool in tools:
            if isinstance(tool, dict) and isinstance(tool.get("name"), str):
                schema = tool.get("input_schema")
                schemas[str(tool["name"])] = schema if isinstance(schema, dict) else {}
    return schemas


def _tool_choice(choice: object) -> tuple[str | None, bool]:
    if not isinstance(choice, dict):
        return None, False
    kind = choice.get("type")
    if kind == "none":
        return None, True
    if kind == "any":
        return "", False
    if kind == "tool" and isinstance(choice.get("name"), str):
        return str(choice["name"]), False
    return None, False


def check_anthropic_key(request: web.Request, accepted: str | None) -> ErrorAnswer | None:
    """Anthropic takes `x-api-key` or `Authorization: Bearer`, and needs `anthropic-version`."""
    key = request.headers.get("x-api-key", "").strip()
    if not key:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        key = token.strip() if scheme.lower() == "bearer" else ""
    if not key:
        return anthropic_error(401, "authentication_error", "x-api-key header is required")
    if accepted is not None and key != accepted:
        return anthropic_error(401, "authentication_error", "invalid x-api-key")
    if not request.headers.get("anthropic-version"):
        return anthropic_error(
            400, "invalid_request_error", "anthropic-version: header is required"
        )
    return None


class AnthropicMessages:
    def __init__(self, state: FakeState) -> None:
        self.state = state

    async def messages(self, request: web.Request) -> web.StreamResponse:
        state = self.state
        body = await read_json(request)
        data = body.data
        model_name = body.string("model")
        request_id = random_id("req_01", 22)
        exchange = Exchange(
            state,
            request,
            provider="anthropic",
            endpoint="chat",
            model=model_name,
            stream=data.get("stream") is True,
            body=body.recorded,
            request_id=request_id,
        )
        interfered = await exchange.interfere(
            anthropic_error, request_id=request_id, model=model_name or "unknown"
        )
        if interfered is not None:
            return interfered
        if len(body.raw) > MAX_BODY:
            return exchange.error(anthropic_error(413, request_id=request_id))
        refused = check_anthropic_key(request, state.config.api_key)
        if refused is None and not body.is_object:
            refused = anthropic_error(
                400, "invalid_request_error", "The request body is not valid JSON."
            )
        served: TextModel | ErrorAnswer | None = refused
        if refused is None:
            served = self._validate(data, model_name)
        if isinstance(served, ErrorAnswer):
            served.body["request_id"] = request_id
            return exchange.error(served)
        assert served is not None
        input_tokens = _input_tokens(state, data)
        if input_tokens > served.context_window:
            problem = f"prompt is too long: {input_tokens} tokens > {served.context_window} maximum"
            return exchange.error(
                anthropic_error(400, "invalid_request_error", problem, request_id=request_id)
            )
        messages = data["messages"]
        assert isinstance(messages, list)
        source, user_turn = _source(messages)
        forced, forbidden = _tool_choice(data.get("tool_choice"))
        plans = plan_tool_calls(
            source if user_turn else "",
            _tool_schemas(data.get("tools")),
            forced=forced,
            forbidden=forbidden,
        )
        stops = strings(data.get("stop_sequences"))
        max_tokens = data["max_tokens"]
        assert isinstance(max_tokens, int)
        if plans:
            names = ", ".join(plan.name for plan in plans)
            source, stops = f"I will use {names} for this", []
        completion = compose(
            source,
            words=exchange.reply_words if not plans else 8,
            max_tokens=max_tokens,
            stop=stops,
            counter=state.count_tokens,
        )
        budget = thinking_budget(data.get("thinking"), max_tokens, served.reasoning)
        thinking = thinking_text(source, budget) if isinstance(budget, int) else None
        answer = _Answer(
            exchange,
            served.id,
            input_tokens,
            completion,
            plans,
            state,
            read_marker(body.raw),
            thinking,
        )
        if data.get("stream") is True:
            return await answer.stream()
        await exchange.generation_delay(len(completion.chunks))
        return exchange.json(answer.body())

    def _validate(self, data: Mapping[str, object], model: str) -> TextModel | ErrorAnswer:
        for name in ("model", "max_tokens", "messages"):
            if name not in data:
                return anthropic_error(400, "invalid_request_error", f"{name}: Field required")
        messages = data["messages"]
        if not isinstance(messages, list) or not messages:
            return anthropic_error(
                400, "invalid_request_error", "messages: at least one message is required"
            )
        served = text_model(ANTHROPIC_MODELS, model, any_model=self.state.config.any_model)
        if served is None:
            return anthropic_error(404, "not_found_error", model=model)
        max_tokens = data["max_tokens"]
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            return anthropic_error(
                400, "invalid_request_error", "max_tokens: Input should be greater than 0"
            )
        if max_tokens > served.max_output:
            return anthropic_error(
                400,
                "invalid_request_error",
                f"max_tokens: {max_tokens} > {served.max_output}, which is the maximum allowed "
                f"number of output tokens for {served.id}",
            )
        budget = thinking_budget(data.get("thinking"), max_tokens, served.reasoning)
        problem = budget if isinstance(budget, str) else altered_thinking(messages)
        if problem is not None:
            return anthropic_error(400, "invalid_request_error", problem)
        return served


class _Answer:
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
            start = {"type": "content_block_start", "index": 0, "content_block": opening}
            await stream.opening(_event("content_block_start", start))
            await stream.opening(_event("ping", {"type": "ping"}))
            thought = {"type": "thinking_delta", "thinking": self.thinking}
            await stream.content(_delta(0, thought), failure)
            await stream.opening(
                _delta(0, {"type": "signature_delta", "signature": sign(self.thinking)})
            )
            await stream.opening(
                _event("content_block_stop", {"type": "content_block_stop", "index": 0})
            )
            index += 1
        if self.completion.chunks:
            text_block: dict[str, object] = {"type": "text", "text": ""}
            await stream.opening(
                _event(
                    "content_block_start",
                    {"type": "content_block_start", "index": index, "content_block": text_block},
                )
            )
            if index == 0:
                await stream.opening(_event("ping", {"type": "ping"}))
            for piece in self.completion.chunks:
                delta = {"type": "text_delta", "text": piece}
                await stream.content(_delta(index, delta), failure)
            await stream.opening(
                _event("content_block_stop", {"type": "content_block_stop", "index": index})
            )
            index += 1
        for call_id, plan in self.calls:
            block: dict[str, object] = {
                "type": "tool_use",
                "id": call_id,
                "name": plan.name,
                "input": {},
            }
            await stream.opening(
                _event(
                    "content_block_start",
                    {"type": "content_block_start", "index": index, "content_block": block},
                )
            )
            if index == 0:
                await stream.opening(_event("ping", {"type": "ping"}))
            pieces = ["", *_ARG_PIECES.findall(plan.arguments_json)]
            for piece in pieces:
                delta = {"type": "input_json_delta", "partial_json": piece}
                await stream.content(_delta(index, delta), failure)
            await stream.opening(
                _event("content_block_stop", {"type": "content_block_stop", "index": index})
            )
            index += 1


def _event(name: str, data: object) -> bytes:
    return sse(orjson.dumps(data), name)


def _delta(index: int, delta: Mapping[str, object]) -> bytes:
    return _event(
        "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
    )
