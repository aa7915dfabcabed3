"""The fake OpenAI Chat Completions endpoint (`POST /openai/v1/chat/completions`)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence

import orjson
from aiohttp import web

from oneflow_ai.providers.fakes.errors import ErrorAnswer, openai_error, openai_stream_error
from oneflow_ai.providers.fakes.exchange import (
    Exchange,
    FakeState,
    Stream,
    StreamFailed,
    now,
    random_id,
    sse,
)
from oneflow_ai.providers.fakes.faults import Fault
from oneflow_ai.providers.fakes.models import OPENAI_CHAT_MODELS, text_model
from oneflow_ai.providers.fakes.text import Completion, ToolCallPlan, compose, plan_tool_calls

__all__ = ["OpenAIChat", "check_openai_key", "openai_headers", "strings"]

_ARG_PIECES = re.compile(r"\s*\w+|\s*[^\w\s]+")
_DONE = b"data: [DONE]\n\n"
_INVALID_JSON = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
    "using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was "
    "sent was not valid JSON. If you have trouble figuring out how to fix this, please visit "
    "https://platform.openai.com/docs/api-reference)"
)
_HEALTHY = {
    "openai-version": "2020-10-01",
    "openai-organization": "org-fake",
    "x-ratelimit-limit-requests": "10000",
    "x-ratelimit-limit-tokens": "2000000",
    "x-ratelimit-remaining-requests": "9999",
    "x-ratelimit-remaining-tokens": "1999000",
    "x-ratelimit-reset-requests": "6ms",
    "x-ratelimit-reset-tokens": "30ms",
}


def openai_headers() -> dict[str, str]:
    return dict(_HEALTHY)


def check_openai_key(request: web.Request, accepted: str | None) -> ErrorAnswer | None:
    """The 401 OpenAI answers to a missing or wrong `Authorization: Bearer` key."""
    header = request.headers.get("Authorization", "")
    scheme, _, key = header.partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        return openai_error(401, "missing_api_key")
    if accepted is not None and key != accepted:
        masked = f"{key[:3]}{'*' * max(len(key) - 7, 3)}{key[-4:]}"
        return openai_error(401, "invalid_api_key", key=masked)
    return None


def strings(value: object) -> list[str]:
    """A string or a list of strings, as a list (anything else: empty)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [item for item in value if isinstance(item, str)]
    return []


def _text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, Mapping) and part.get("type") == "text"
        )
    return ""


def _prompt_tokens(state: FakeState, messages: Sequence[object], tools: object) -> int:
    count = state.config.count_tokens
    total = 3
    for message in messages:
        if not isinstance(message, Mapping):
            continue
        total += 3 + count(str(message.get("role", "")))
        content = message.get("content")
        total += count(_text(content))
        if isinstance(content, list):
            total += 85 * sum(
                1 for p in content if isinstance(p, Mapping) and p.get("type") == "image_url"
            )
        if "name" in message:
            total += 1 + count(str(message["name"]))
        calls = message.get("tool_calls")
        if isinstance(calls, list):
            for call in calls:
                function = call.get("function") if isinstance(call, Mapping) else None
                if isinstance(function, Mapping):
                    total += count(str(function.get("name", "")))
                    total += count(str(function.get("arguments", "")))
    if isinstance(tools, list) and tools:
        total += 12 + sum(count(orjson.dumps(tool).decode()) for tool in tools)
    return total


def _source(messages: Sequence[object]) -> tuple[str, bool]:
    """The text the answer echoes, and whether it is a user turn (which may call a tool)."""
    last = messages[-1] if messages else None
    if isinstance(last, Mapping) and last.get("role") == "tool":
        return _text(last.get("content")), False
    for message in reversed(messages):
        if isinstance(message, Mapping) and message.get("role") == "user":
            return _text(message.get("content")), message is last
    return "", False


def _tool_schemas(tools: object) -> dict[str, Mapping[str, object]]:
    schemas: dict[str, Mapping[str, object]] = {}
    if isinstance(tools, list):
        for tool in tools:
            function = tool.get("function") if isinstance(tool, Mapping) else None
            if isinstance(function, Mapping) and isinstance(function.get("name"), str):
                parameters = function.get("parameters")
                schemas[function["name"]] = parameters if isinstance(parameters, Mapping) else {}
    return schemas


def _tool_choice(choice: object) -> tuple[str | None, bool]:
    """(forced tool: name, "" for any, None for not forced), forbidden."""
    if choice == "none":
        return None, True
    if choice == "required":
        return "", False
    if isinstance(choice, Mapping):
        function = choice.get("function")
        if isinstance(function, Mapping) and isinstance(function.get("name"), str):
            return str(function["name"]), False
    return None, False


def _usage(prompt: int, completion: int) -> dict[str, object]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


class OpenAIChat:
    def __init__(self, state: FakeState) -> None:
        self.state = state

    async def completions(self, request: web.Request) -> web.StreamResponse:
        state = self.state
        raw = await request.read()
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = None
        valid = isinstance(body, dict)
        data: dict[str, object] = body if isinstance(body, dict) else {}
        model = data.get("model")
        model_name = model if isinstance(model, str) else ""
        streaming = data.get("stream") is True
        exchange = Exchange(
            state,
            request,
            provider="openai",
            endpoint="chat",
            model=model_name,
            stream=streaming,
            body=body if valid else raw.decode("utf-8", "replace"),
            request_id=random_id("req_", 32),
        )

        def error(fault: Fault) -> ErrorAnswer:
            return openai_error(
                fault.status,
                fault.error_type,
                fault.message,
                retry_after=fault.retry_after,
                model=model_name or "unknown",
            )

        interfered = await exchange.interfere(error)
        if interfered is not None:
            return interfered
        refused = check_openai_key(request, state.config.api_key)
        if refused is not None:
            return exchange.error(refused)
        if not valid:
            return exchange.error(openai_error(400, "invalid_request_error", _INVALID_JSON))
        problem = self._validate(data, model_name)
        if isinstance(problem, ErrorAnswer):
            return exchange.error(problem)
        served_model, limit = problem
        messages = data["messages"]
        assert isinstance(messages, list)
        prompt_tokens = _prompt_tokens(state, messages, data.get("tools"))
        if prompt_tokens > served_model_context(model_name, state):
            return exchange.error(
                openai_error(
                    400,
                    "context_length_exceeded",
                    context=served_model_context(model_name, state),
                    tokens=prompt_tokens,
                )
            )
        source, user_turn = _source(messages)
        forced, forbidden = _tool_choice(data.get("tool_choice"))
        plans = plan_tool_calls(
            source if user_turn else "",
            _tool_schemas(data.get("tools")),
            forced=forced,
            forbidden=forbidden,
        )
        stops = strings(data.get("stop"))
        completion = compose(
            source,
            words=exchange.reply_words,
            max_tokens=limit,
            stop=stops,
            counter=state.config.count_tokens,
        )
        n = data.get("n")
        choices = n if isinstance(n, int) else 1
        answer = _Answer(exchange, served_model, prompt_tokens, completion, plans, choices, state)
        if streaming:
            options = data.get("stream_options")
            options = options if isinstance(options, Mapping) else {}
            return await answer.stream(
                include_usage=options.get("include_usage") is True,
                obfuscation=options.get("include_obfuscation") is not False,
            )
        await exchange.generation_delay(len(completion.chunks))
        return exchange.json(answer.body(), openai_headers())

    def _validate(
        self, data: Mapping[str, object], model: str
    ) -> ErrorAnswer | tuple[str, int | None]:
        if not model:
            return openai_error(400, "invalid_request_error", "You must provide a model parameter.")
        messages = data.get("messages")
        if messages is None:
            return openai_error(
                400,
                "missing_required_parameter",
                "Missing required parameter: 'messages'.",
                param="messages",
            )
        if not isinstance(messages, list) or not messages:
            return openai_error(
                400,
                "empty_array",
                "Invalid 'messages': empty array. Expected an array with minimum length 1, "
                "but got an empty array instead.",
                param="messages",
            )
        served = text_model(OPENAI_CHAT_MODELS, model, any_model=self.state.config.any_model)
        if served is None:
            return openai_error(404, "model_not_found", model=model)
        if data.get("stream_options") is not None and data.get("stream") is not True:
            return openai_error(
                400,
                "invalid_request_error",
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                param="stream_options",
            )
        limit = data.get("max_completion_tokens")
        name = "max_completion_tokens"
        if limit is None:
            limit, name = data.get("max_tokens"), "max_tokens"
        if limit is not None:
            if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
                return openai_error(
                    400,
                    "integer_below_min_value",
                    f"Invalid '{name}': integer below minimum value. Expected a value >= 1, "
                    f"but got {limit} instead.",
                    param=name,
                )
            if limit > served.max_output:
                return openai_error(
                    400,
                    "invalid_value",
                    f"max_tokens is too large: {limit}. This model supports at most "
                    f"{served.max_output} completion tokens, whereas you provided {limit}.",
                    param=name,
                )
        n = data.get("n")
        if n is not None and (not isinstance(n, int) or not 1 <= n <= 128):
            return openai_error(
                400, "invalid_value", f"Invalid 'n': expected 1..128, got {n}.", param="n"
            )
        return served.id, limit


def served_model_context(model: str, state: FakeState) -> int:
    served = text_model(OPENAI_CHAT_MODELS, model, any_model=state.config.any_model)
    return served.context_window if served is not None else 0


class _Answer:
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
    ) -> None:
        self.exchange = exchange
        self.model = model
        self.prompt_tokens = prompt_tokens
        self.completion = completion
        self.calls = [(random_id("call_", 24), plan) for plan in plans]
        self.choices = choices
        self.id = random_id("chatcmpl-", 29)
        self.created = now()
        self.fingerprint = "fp_" + random_id("", 10).lower()
        count = state.config.count_tokens
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
            "usage": _usage(self.prompt_tokens, self.completion_tokens),
            "service_tier": "default",
            "system_fingerprint": self.fingerprint,
        }

    def _chunk(
        self, choices: list[dict[str, object]], include_usage: bool, obfuscation: bool
    ) -> bytes:
        chunk: dict[str, object] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "service_tier": "default",
            "system_fingerprint": self.fingerprint,
            "choices": choices,
        }
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
        stream = await exchange.open_stream("text/event-stream", openai_headers())

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
            usage = {
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "service_tier": "default",
                "system_fingerprint": self.fingerprint,
                "choices": [],
                "usage": _usage(self.prompt_tokens, self.completion_tokens),
            }
            await stream.closing(sse(orjson.dumps(usage)))
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
