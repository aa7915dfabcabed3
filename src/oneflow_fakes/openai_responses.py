"""The fake OpenAI Responses endpoint (`POST /openai/v1/responses`), plain and streamed.

Answers as OpenAI's Responses API does: a `response` object (`output` items: a `message` with
`output_text`, or `function_call` items; `usage` with `input_tokens`/`output_tokens` and their
details), or the typed stream (`response.created`, `response.in_progress`,
`response.output_item.added`, `response.content_part.added`, `response.output_text.delta`,
..., `response.function_call_arguments.delta`/`.done`, `response.output_item.done`,
`response.completed`), every event with its `sequence_number`. The reply text and tool calls
follow the same rules as chat (`text.py`); text deltas carry OpenAI's `obfuscation` padding
unless `stream_options.include_obfuscation` is false. It stores nothing: a
`previous_response_id` it is given is not found (as OpenAI answers for a response stored
elsewhere or with `store: false`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from aiohttp import web

from oneflow_fakes.errors import ErrorAnswer, openai_error
from oneflow_fakes.exchange import (
    Exchange,
    FakeState,
    Stream,
    StreamFailed,
    now,
    random_id,
    read_json,
)
from oneflow_fakes.models import OPENAI_CHAT_MODELS, text_model
from oneflow_fakes.openai_common import open_call, openai_headers
from oneflow_fakes.text import Completion, ToolCallPlan, compose, plan_tool_calls, text_of

__all__ = ["OpenAIResponses"]

_BUILT_IN = ("web_search", "web_search_preview", "file_search", "code_interpreter")


def _invalid(message: str, param: str | None = None, code: str = "invalid_value") -> ErrorAnswer:
    answer = openai_error(400, "invalid_request_error", message, param=param)
    error = answer.body["error"]
    assert isinstance(error, dict)
    error["code"] = code
    return answer


def _items(data: Mapping[str, object]) -> list[dict[str, Any]] | ErrorAnswer:
    value = data.get("input")
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": value}]
    if not isinstance(value, list):
        return _invalid("Invalid type for 'input': expected a string or an array.", "input")
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            return _invalid(f"Invalid type for 'input[{i}]': expected an object.", f"input[{i}]")
    return list(value)


def _source(items: Sequence[dict[str, Any]]) -> tuple[str, bool]:
    """The text the answer echoes, and whether it is a user turn (which may call a tool)."""
    last = items[-1] if items else None
    if last is not None and last.get("type") == "function_call_output":
        return text_of(last.get("output")), False
    for item in reversed(items):
        if item.get("type", "message") == "message" and item.get("role") == "user":
            return _text(item.get("content")), item is last
    return "", False


def _text(content: object) -> str:
    if isinstance(content, list):
        return "".join(
            str(p.get("text", "")) for p in content if isinstance(p, dict) and "text" in p
        )
    return text_of(content)


def _input_tokens(state: FakeState, data: Mapping[str, object], items: list[dict[str, Any]]) -> int:
    count = state.count_tokens
    total = 3 + count(str(data.get("instructions") or ""))
    for item in items:
        total += 3 + count(_text(item.get("content")))
        total += count(str(item.get("arguments") or "")) + count(text_of(item.get("output")))
    tools = data.get("tools")
    if isinstance(tools, list) and tools:
        total += 12 + sum(count(orjson.dumps(tool).decode()) for tool in tools)
    return total


def _schemas(tools: object) -> dict[str, Mapping[str, object]]:
    schemas: dict[str, Mapping[str, object]] = {}
    for tool in tools if isinstance(tools, list) else ():
        if isinstance(tool, dict) and tool.get("type") == "function":
            parameters = tool.get("parameters")
            schemas[str(tool.get("name"))] = parameters if isinstance(parameters, dict) else {}
    return schemas


def _tool_choice(choice: object) -> tuple[str | None, bool]:
    if choice == "none":
        return None, True
    if choice == "required":
        return "", False
    if isinstance(choice, dict) and choice.get("type") == "function":
        return str(choice.get("name")), False
    return None, False


class OpenAIResponses:
    def __init__(self, state: FakeState) -> None:
        self.state = state

    async def create(self, request: web.Request) -> web.StreamResponse:
        state = self.state
        body = await read_json(request)
        data = body.data
        model_name = body.string("model")
        streaming = data.get("stream") is True
        exchange, ended = await open_call(
            state, request, body, endpoint="responses", model=model_name
        )
        if ended is not None:
            return ended
        if not body.is_object:
            return exchange.error(_invalid("We could not parse the JSON body of your request."))
        problem = self._validate(data, model_name)
        if isinstance(problem, ErrorAnswer):
            return exchange.error(problem)
        served, limit = problem
        items = _items(data)
        if isinstance(items, ErrorAnswer):
            return exchange.error(items)
        source, user_turn = _source(items)
        forced, forbidden = _tool_choice(data.get("tool_choice"))
        plans = plan_tool_calls(
            source if user_turn else "",
            _schemas(data.get("tools")),
            forced=forced,
            forbidden=forbidden,
        )
        completion = compose(
            source, words=exchange.reply_words, max_tokens=limit, counter=state.count_tokens
        )
        answer = _Answer(
            exchange, served, data, _input_tokens(state, data, items), completion, plans
        )
        if streaming:
            return await answer.stream()
        await exchange.generation_delay(len(completion.chunks))
        return exchange.json(answer.response("completed", final=True), openai_headers())

    def _validate(
        self, data: Mapping[str, object], model: str
    ) -> ErrorAnswer | tuple[str, int | None]:
        if not model:
            return _invalid(
                "Missing required parameter: 'model'.", "model", "missing_required_parameter"
            )
        if data.get("input") is None:
            return _invalid(
                "Missing required parameter: 'input'.", "input", "missing_required_parameter"
            )
        previous = data.get("previous_response_id")
        if previous is not None:
            return openai_error(
                400, "invalid_request_error", f"Previous response with id '{previous}' not found.",
                param="previous_response_id",
            )  # fmt: skip
        served = text_model(OPENAI_CHAT_MODELS, model, any_model=self.state.config.any_model)
        if served is None:
            return openai_error(404, "model_not_found", model=model)
        tools = data.get("tools")
        if tools is not None and not isinstance(tools, list):
            return _invalid("Invalid type for 'tools': expected an array.", "tools")
        for i, tool in enumerate(tools or ()):
            kind = tool.get("type") if isinstance(tool, dict) else None
            if kind != "function" and kind not in _BUILT_IN:
                return _invalid(f"Invalid value: '{kind}'.", f"tools[{i}].type")
            if kind == "function" and not isinstance(tool.get("name"), str):
                return _invalid(
                    "Missing required parameter: 'tools[{i}].name'.", f"tools[{i}].name"
                )
        limit = data.get("max_output_tokens")
        if limit is not None:
            if not isinstance(limit, int) or isinstance(limit, bool) or limit < 16:
                return _invalid(
                    f"Invalid 'max_output_tokens': integer below minimum value. Expected a "
                    f"value >= 16, but got {limit} instead.",
                    "max_output_tokens",
                    "integer_below_min_value",
                )
            if limit > served.max_output:
                return _invalid(f"max_output_tokens is too large: {limit}.", "max_output_tokens")
        return served.id, limit


class _Answer:
    """One response, as a body or as its typed stream."""

    def __init__(
        self,
        exchange: Exchange,
        model: str,
        data: Mapping[str, object],
        input_tokens: int,
        completion: Completion,
        plans: list[ToolCallPlan],
    ) -> None:
        self.exchange = exchange
        self.model = model
        self.data = data
        self.input_tokens = input_tokens
        self.completion = completion
        self.id = random_id("resp_", 48).lower()
        self.created = now()
        self.message_id = random_id("msg_", 48).lower()
        self.calls = [(random_id("fc_", 48).lower(), random_id("call_", 24), p) for p in plans]
        count = exchange.state.count_tokens
        if self.calls:
            self.output_tokens = sum(
                3 + count(p.name) + count(p.arguments_json) for *_, p in self.calls
            )
        else:
            self.output_tokens = completion.tokens
        self.sequence = 0

    @property
    def incomplete(self) -> bool:
        return not self.calls and self.completion.finish == "length"

    def _message(self, status: str, text: str | None) -> dict[str, object]:
        content = [] if text is None else [_part(text)]
        return {
            "id": self.message_id, "type": "message", "status": status,
            "content": content, "role": "assistant",
        }  # fmt: skip

    def _call(self, index: int, status: str, arguments: str | None = None) -> dict[str, object]:
        item_id, call_id, plan = self.calls[index]
        return {
            "id": item_id, "type": "function_call", "status": status,
            "arguments": plan.arguments_json if arguments is None else arguments,
            "call_id": call_id, "name": plan.name,
        }  # fmt: skip

    def output(self) -> list[dict[str, object]]:
        if self.calls:
            return [self._call(i, "completed") for i in range(len(self.calls))]
        status = "incomplete" if self.incomplete else "completed"
        return [self._message(status, self.completion.text)]

    def response(self, status: str, *, final: bool) -> dict[str, object]:
        data = self.data
        if final and self.incomplete:
            status = "incomplete"
        text = data.get("text") if isinstance(data.get("text"), dict) else {}
        assert isinstance(text, dict)
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created,
            "status": status,
            "background": False,
            "error": None,
            "incomplete_details": {"reason": "max_output_tokens"}
            if final and self.incomplete
            else None,
            "instructions": data.get("instructions"),
            "max_output_tokens": data.get("max_output_tokens"),
            "max_tool_calls": None,
            "model": self.model,
            "output": self.output() if final else [],
            "parallel_tool_calls": data.get("parallel_tool_calls") is not False,
            "previous_response_id": None,
            "reasoning": {"effort": None, "summary": None},
            "service_tier": "default",
            "store": data.get("store") is not False,
            "temperature": data.get("temperature", 1.0),
            "text": {"format": text.get("format") or {"type": "text"}, "verbosity": "medium"},
            "tool_choice": data.get("tool_choice") or "auto",
            "tools": data.get("tools") or [],
            "top_p": data.get("top_p", 1.0),
            "truncation": data.get("truncation") or "disabled",
            "usage": self.usage() if final else None,
            "user": data.get("user"),
            "metadata": data.get("metadata") or {},
        }

    def usage(self) -> dict[str, object]:
        return {
            "input_tokens": self.input_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": self.output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": self.input_tokens + self.output_tokens,
        }

    def _event(self, kind: str, **fields: object) -> bytes:
        data = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"

    async def stream(self) -> web.StreamResponse:
        exchange = self.exchange
        fault = exchange.fault
        stream = await exchange.open_stream("text/event-stream", openai_headers())

        def failure() -> bytes:
            return self._event(
                "error",
                code=fault.error_type or "server_error",
                message=fault.message or "The server had an error while processing your request.",
                param=None,
            )

        created = self.response("in_progress", final=False)
        await stream.opening(
            self._event("response.created", response=created)
            + self._event("response.in_progress", response=created)
        )
        try:
            if self.calls:
                await self._stream_calls(stream, failure)
            else:
                await self._stream_text(stream, failure)
        except StreamFailed:
            return await stream.failed()
        final = self.response("completed", final=True)
        kind = "response.incomplete" if self.incomplete else "response.completed"
        await stream.closing(self._event(kind, response=final))
        return await stream.finish()

    async def _stream_text(self, stream: Stream, failure: Any) -> None:
        ids = {"item_id": self.message_id, "output_index": 0, "content_index": 0}
        opening = self._message("in_progress", None)
        await stream.opening(
            self._event("response.output_item.added", output_index=0, item=opening)
            + self._event("response.content_part.added", **ids, part=_part(""))
        )
        hide = self.data.get("stream_options")
        obfuscate = not (isinstance(hide, dict) and hide.get("include_obfuscation") is False)
        for piece in self.completion.chunks:
            extra = {"obfuscation": random_id("", 8)} if obfuscate else {}
            delta = self._event(
                "response.output_text.delta", **ids, delta=piece, logprobs=[], **extra
            )
            await stream.content(delta, failure)
        text = self.completion.text
        status = "incomplete" if self.incomplete else "completed"
        done = self._message(status, text)
        await stream.closing(
            self._event("response.output_text.done", **ids, text=text, logprobs=[])
            + self._event("response.content_part.done", **ids, part=_part(text))
            + self._event("response.output_item.done", output_index=0, item=done)
        )

    async def _stream_calls(self, stream: Stream, failure: Any) -> None:
        for index, (item_id, _call_id, plan) in enumerate(self.calls):
            added = self._event(
                "response.output_item.added", output_index=index,
                item=self._call(index, "in_progress", ""),
            )  # fmt: skip
            if index == 0:
                await stream.opening(added)
            else:
                await stream.content(added, failure)
            await stream.content(
                self._event(
                    "response.function_call_arguments.delta", item_id=item_id,
                    output_index=index, delta=plan.arguments_json,
                ),
                failure,
            )  # fmt: skip
            await stream.closing(
                self._event(
                    "response.function_call_arguments.done", item_id=item_id,
                    output_index=index, arguments=plan.arguments_json,
                )
                + self._event(
                    "response.output_item.done", output_index=index,
                    item=self._call(index, "completed"),
                )
            )  # fmt: skip


def _part(text: str) -> dict[str, object]:
    return {"type": "output_text", "annotations": [], "logprobs": [], "text": text}
