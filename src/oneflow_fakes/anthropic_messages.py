"""The fake Anthropic Messages endpoint (`POST /anthropic/v1/messages`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import orjson
from aiohttp import web

from oneflow_fakes.anthropic_answer import MessagesAnswer
from oneflow_fakes.errors import ErrorAnswer, anthropic_error
from oneflow_fakes.exchange import Exchange, FakeState, JsonBody, random_id, read_json
from oneflow_fakes.models import ANTHROPIC_MODELS, TextModel, text_model
from oneflow_fakes.openai_common import strings
from oneflow_fakes.text import compose, plan_tool_calls, text_of
from oneflow_fakes.thinking import altered_thinking, thinking_budget, thinking_text
from oneflow_fakes.usage_marker import read_marker

__all__ = ["AnthropicMessages"]

MAX_BODY = 32 * 1024 * 1024
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
        body = await read_json(request)
        model_name = body.string("model")
        request_id = random_id("req_01", 22)
        exchange = Exchange(
            self.state,
            request,
            provider="anthropic",
            endpoint="chat",
            model=model_name,
            stream=body.data.get("stream") is True,
            body=body.recorded,
            request_id=request_id,
        )
        interfered = await exchange.interfere(
            anthropic_error, request_id=request_id, model=model_name or "unknown"
        )
        if interfered is not None:
            return interfered
        served = self._admit(request, body, model_name, request_id)
        if isinstance(served, ErrorAnswer):
            return exchange.error(served)
        answer = self._answer(exchange, body, served, request_id)
        if isinstance(answer, ErrorAnswer):
            return exchange.error(answer)
        if body.data.get("stream") is True:
            return await answer.stream()
        await exchange.generation_delay(len(answer.completion.chunks))
        return exchange.json(answer.body())

    def _admit(
        self, request: web.Request, body: JsonBody, model_name: str, request_id: str
    ) -> TextModel | ErrorAnswer:
        """The model that serves the request, or why it is refused (size, key, body)."""
        if len(body.raw) > MAX_BODY:
            return anthropic_error(413, request_id=request_id)
        refused = check_anthropic_key(request, self.state.config.api_key)
        if refused is None and not body.is_object:
            refused = anthropic_error(
                400, "invalid_request_error", "The request body is not valid JSON."
            )
        served = refused if refused is not None else self._validate(body.data, model_name)
        if isinstance(served, ErrorAnswer):
            served.body["request_id"] = request_id
        return served

    def _answer(
        self, exchange: Exchange, body: JsonBody, served: TextModel, request_id: str
    ) -> MessagesAnswer | ErrorAnswer:
        """The answer to a valid request, or a 400 when the prompt is too long for the model."""
        state, data = self.state, body.data
        input_tokens = _input_tokens(state, data)
        if input_tokens > served.context_window:
            problem = f"prompt is too long: {input_tokens} tokens > {served.context_window} maximum"
            return anthropic_error(400, "invalid_request_error", problem, request_id=request_id)
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
        return MessagesAnswer(
            exchange,
            served.id,
            input_tokens,
            completion,
            plans,
            state,
            read_marker(body.raw),
            thinking,
        )

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
