"""OpenAI's `response_format` (JSON mode, JSON schema) on Claude, which has no such parameter.

Without tools of the caller's own, the Messages body offers one tool, `json_answer`, whose
input schema is the requested schema (`{"type": "object"}` in JSON mode), and forces Claude to
call it: Anthropic's documented way to get JSON that follows a schema. The call's input is the
answer: `as_json_answer` and `json_events` make it the answer's text (finish reason `stop`)
and drop any prose around it, so the caller sees what OpenAI's JSON mode gives.

With tools of the caller's own (forcing one tool would take them away), a system instruction
asks for a JSON object instead, with the schema when one is given; Claude usually complies,
but nothing enforces it (docs/dialects.md).
"""

from __future__ import annotations

import dataclasses

import orjson

from oneflow_ai.domain.chat import (
    ChatRequest,
    ChatResponse,
    StreamEvent,
    StreamFinish,
    TextDelta,
    ToolCallDelta,
)
from oneflow_ai.providers.anthropic_types import MessagesBody

__all__ = ["JSON_TOOL", "apply_response_format", "as_json_answer", "forces_tool", "json_events"]

JSON_TOOL = "json_answer"
_INSTRUCTION = "Answer with a single JSON object only, without any other text."


def forces_tool(request: ChatRequest) -> bool:
    """Whether the answer comes as the `json_answer` tool's input (see the module docstring)."""
    return (
        request.response_format is not None
        and not request.tools
        # Claude thinks only with a free tool choice
        and (request.reasoning is None or request.reasoning.as_budget() is None)
    )


def apply_response_format(request: ChatRequest, body: MessagesBody) -> None:
    """Ask for the request's response format in `body` (a Messages body built from it)."""
    wanted = request.response_format
    if wanted is None:
        return
    if forces_tool(request):
        about = f" ({wanted.name})" if wanted.name else ""
        body["tools"] = [
            {
                "name": JSON_TOOL,
                "description": f"Give the complete answer as this tool's input{about}.",
                "input_schema": wanted.schema or {"type": "object"},
            }
        ]
        body["tool_choice"] = {"type": "tool", "name": JSON_TOOL}
        return
    instruction = _INSTRUCTION
    if wanted.schema is not None:
        instruction += " It must match this JSON Schema: " + orjson.dumps(wanted.schema).decode()
    system = body.get("system")
    body["system"] = f"{system}\n\n{instruction}" if system else instruction


def as_json_answer(response: ChatResponse) -> ChatResponse:
    """The `json_answer` call's input as the answer's text."""
    calls = [call for call in response.tool_calls if call.name == JSON_TOOL]
    if not calls:
        return response
    finish = "stop" if response.finish_reason == "tool_calls" else response.finish_reason
    return dataclasses.replace(
        response,
        text=calls[0].arguments,
        tool_calls=[],
        finish_reason=finish,
        raw=None,
        raw_dialect=None,
    )


def json_events(events: list[StreamEvent]) -> list[StreamEvent]:
    """A streamed answer's events with the `json_answer` call's input as text (the only tool
    offered, so every tool call piece is it) and prose dropped."""
    out: list[StreamEvent] = []
    for event in events:
        if isinstance(event, TextDelta):
            continue
        if isinstance(event, ToolCallDelta):
            if event.arguments:
                out.append(TextDelta(event.arguments))
        elif isinstance(event, StreamFinish) and event.reason == "tool_calls":
            out.append(StreamFinish("stop"))
        else:
            out.append(event)
    return out
