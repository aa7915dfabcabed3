"""The fake OpenAI Chat Completions endpoint (`POST /openai/v1/chat/completions`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

import orjson
from aiohttp import web

from oneflow_fakes.errors import ErrorAnswer, openai_error
from oneflow_fakes.exchange import Exchange, FakeState, JsonBody, read_json
from oneflow_fakes.models import OPENAI_CHAT_MODELS, TextModel, text_model
from oneflow_fakes.openai_answer import ChatAnswer
from oneflow_fakes.openai_common import (
    missing_parameter,
    open_call,
    openai_headers,
    strings,
    unsupported_value,
)
from oneflow_fakes.text import compose, plan_tool_calls, text_of
from oneflow_fakes.thinking import EFFORTS, REASONING_TOKENS
from oneflow_fakes.usage_marker import UsageMarker, read_marker

__all__ = ["OpenAIChat"]

_INVALID_JSON = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
    "using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was "
    "sent was not valid JSON. If you have trouble figuring out how to fix this, please visit "
    "https://platform.openai.com/docs/api-reference)"
)


def _prompt_tokens(state: FakeState, messages: Sequence[object], tools: object) -> int:
    count = state.count_tokens
    total = 3
    for message in messages:
        if not isinstance(message, dict):
            continue
        total += 3 + count(str(message.get("role", "")))
        content = message.get("content")
        total += count(text_of(content))
        if isinstance(content, list):
            total += 85 * sum(
                1 for p in content if isinstance(p, dict) and p.get("type") == "image_url"
            )
        if "name" in message:
            total += 1 + count(str(message["name"]))
        calls = message.get("tool_calls")
        if isinstance(calls, list):
            for call in calls:
                function = call.get("function") if isinstance(call, dict) else None
                if isinstance(function, dict):
                    total += count(str(function.get("name", "")))
                    total += count(str(function.get("arguments", "")))
    if isinstance(tools, list) and tools:
        total += 12 + sum(count(orjson.dumps(tool).decode()) for tool in tools)
    return total


def _source(messages: Sequence[object]) -> tuple[str, bool]:
    """The text the answer echoes, and whether it is a user turn (which may call a tool)."""
    last = messages[-1] if messages else None
    if isinstance(last, dict) and last.get("role") == "tool":
        return text_of(last.get("content")), False
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return text_of(message.get("content")), message is last
    return "", False


def _tool_schemas(tools: object) -> dict[str, Mapping[str, object]]:
    schemas: dict[str, Mapping[str, object]] = {}
    if isinstance(tools, list):
        for tool in tools:
            function = tool.get("function") if isinstance(tool, dict) else None
            if isinstance(function, dict) and isinstance(function.get("name"), str):
                parameters = function.get("parameters")
                schemas[function["name"]] = parameters if isinstance(parameters, dict) else {}
    return schemas


def _tool_choice(choice: object) -> tuple[str | None, bool]:
    """(forced tool: name, "" for any, None for not forced), forbidden."""
    if choice == "none":
        return None, True
    if choice == "required":
        return "", False
    if isinstance(choice, dict):
        function = choice.get("function")
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            return str(function["name"]), False
    return None, False


class OpenAIChat:
    def __init__(self, state: FakeState) -> None:
        self.state = state

    async def completions(self, request: web.Request) -> web.StreamResponse:
        state = self.state
        body = await read_json(request)
        data = body.data
        # Azure OpenAI names the model in the URL (its deployment), not in the body.
        model_name = request.match_info.get("deployment") or body.string("model")
        streaming = data.get("stream") is True
        exchange, ended = await open_call(state, request, body, endpoint="chat", model=model_name)
        if ended is not None:
            return ended
        if not body.is_object:
            return exchange.error(openai_error(400, "invalid_request_error", _INVALID_JSON))
        problem = self._validate(data, model_name)
        if isinstance(problem, ErrorAnswer):
            return exchange.error(problem)
        if state.openai_remaining() == 0:
            return exchange.error(openai_error(429, "rate_limit_exceeded"))
        state.openai_requests += 1
        answer = self._answer(exchange, body, model_name, *problem)
        if isinstance(answer, ErrorAnswer):
            return exchange.error(answer)
        if streaming:
            options = data.get("stream_options")
            options = options if isinstance(options, dict) else {}
            return await answer.stream(
                include_usage=options.get("include_usage") is True,
                obfuscation=options.get("include_obfuscation") is not False,
            )
        await exchange.generation_delay(len(answer.completion.chunks))
        return exchange.json(answer.body(), openai_headers(state.openai_remaining()))

    def _answer(
        self,
        exchange: Exchange,
        body: JsonBody,
        model_name: str,
        served_model: str,
        limit: int | None,
    ) -> ChatAnswer | ErrorAnswer:
        """The answer to a valid request, or a 400 when the prompt exceeds the context."""
        state, data = self.state, body.data
        messages = data["messages"]
        assert isinstance(messages, list)
        prompt_tokens = _prompt_tokens(state, messages, data.get("tools"))
        if prompt_tokens > served_model_context(model_name, state):
            return openai_error(
                400,
                "context_length_exceeded",
                context=served_model_context(model_name, state),
                tokens=prompt_tokens,
            )
        source, user_turn = _source(messages)
        forced, forbidden = _tool_choice(data.get("tool_choice"))
        plans = plan_tool_calls(
            source if user_turn else "",
            _tool_schemas(data.get("tools")),
            forced=forced,
            forbidden=forbidden,
        )
        completion = compose(
            source,
            words=exchange.reply_words,
            max_tokens=limit,
            stop=strings(data.get("stop")),
            counter=state.count_tokens,
        )
        n = data.get("n")
        return ChatAnswer(
            exchange,
            served_model,
            prompt_tokens,
            completion,
            plans,
            n if isinstance(n, int) else 1,
            state,
            _with_reasoning(read_marker(body.raw), data, model_name, state),
        )

    def _validate(
        self, data: Mapping[str, object], model: str
    ) -> ErrorAnswer | tuple[str, int | None]:
        if not model:
            return openai_error(400, "invalid_request_error", "You must provide a model parameter.")
        messages = data.get("messages")
        if messages is None:
            return missing_parameter("messages")
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
        problem = _option_problem(data, served)
        if problem is not None:
            return problem
        limit = _output_limit(data, served)
        if isinstance(limit, ErrorAnswer):
            return limit
        n = data.get("n")
        if n is not None and (not isinstance(n, int) or not 1 <= n <= 128):
            return openai_error(
                400, "invalid_value", f"Invalid 'n': expected 1..128, got {n}.", param="n"
            )
        return served.id, limit


def _option_problem(data: Mapping[str, object], served: TextModel) -> ErrorAnswer | None:
    """A `reasoning_effort` the model does not take, or `stream_options` without a stream."""
    effort = data.get("reasoning_effort")
    if effort is not None and not served.reasoning:
        return openai_error(
            400,
            "invalid_value",
            "Unsupported parameter: 'reasoning_effort' is not supported with this model.",
            param="reasoning_effort",
        )
    if effort is not None and effort not in EFFORTS:
        return unsupported_value(effort, EFFORTS, "reasoning_effort", sep=", ")
    if data.get("stream_options") is not None and data.get("stream") is not True:
        return openai_error(
            400,
            "invalid_request_error",
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            param="stream_options",
        )
    return None


def _output_limit(data: Mapping[str, object], served: TextModel) -> ErrorAnswer | int | None:
    """`max_completion_tokens` (else `max_tokens`) when given and valid for the model."""
    limit = data.get("max_completion_tokens")
    name = "max_completion_tokens"
    if limit is None:
        limit, name = data.get("max_tokens"), "max_tokens"
    if limit is None:
        return None
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
    return limit


def _with_reasoning(
    marker: UsageMarker, data: Mapping[str, object], model: str, state: FakeState
) -> UsageMarker:
    """A reasoning model reasons: its tokens by effort, unless the marker names a count."""
    served = text_model(OPENAI_CHAT_MODELS, model, any_model=state.config.any_model)
    if marker.reasoning or served is None or not served.reasoning:
        return marker
    effort = data.get("reasoning_effort")
    tokens = REASONING_TOKENS.get(effort if isinstance(effort, str) else "medium", 0)
    return replace(marker, reasoning=tokens)


def served_model_context(model: str, state: FakeState) -> int:
    served = text_model(OPENAI_CHAT_MODELS, model, any_model=state.config.any_model)
    return served.context_window if served is not None else 0
