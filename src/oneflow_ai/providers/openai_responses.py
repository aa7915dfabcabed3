"""OpenAI's Responses API (`POST /responses`), spoken natively to OpenAI.

A request that arrived at OneFlow's `/v1/responses` and is answered by an OpenAI model is sent
to OpenAI's own `/responses` as the edge prepared it (`ChatRequest.raw`: the caller's body with
the conversation of `previous_response_id` already written out as input items, `store: false`,
since OneFlow keeps the responses). The answer's body is handed back in `ChatResponse.raw`
(dialect `responses`) together with its canonical reading, which is what billing and the
usage record need; a stream's typed events become canonical events.

Wire format as OpenAI's API reference documents it (the `openai` SDK's
`types/responses/`: `Response`, `ResponseOutputMessage`, `ResponseFunctionToolCall`,
`ResponseUsage` and the `response.*` stream events).
"""

from __future__ import annotations

from typing import Any

import orjson

from oneflow_ai.domain.chat import (
    ChatRequest,
    ChatResponse,
    FinishReason,
    StreamEvent,
    StreamFinish,
    StreamStart,
    StreamUsage,
    TextDelta,
    ThinkingDelta,
    ToolCall,
    ToolCallDelta,
    WireEvent,
)
from oneflow_ai.domain.usage import Usage
from oneflow_ai.errors import (
    ProviderAuthError,
    ProviderBadRequestError,
    ProviderError,
    ProviderRateLimitedError,
    ProviderUnavailableError,
)
from oneflow_ai.providers.errors import stream_failure
from oneflow_ai.providers.sse import SSEEvent

__all__ = ["ResponsesStream", "is_native", "parse_response", "responses_body"]

PATH = "/responses"

#: The error codes of a `response.failed` event or an `error` event.
_ERROR_CLASSES: dict[str, type[ProviderError]] = {
    "invalid_request_error": ProviderBadRequestError,
    "invalid_prompt": ProviderBadRequestError,
    "rate_limit_exceeded": ProviderRateLimitedError,
    "rate_limit_error": ProviderRateLimitedError,
    "server_error": ProviderUnavailableError,
    "insufficient_quota": ProviderAuthError,
}


def is_native(request: ChatRequest) -> bool:
    """Whether `request` came in the Responses dialect (and so goes to `/responses`)."""
    return request.raw is not None and request.raw_dialect == "responses"


def responses_body(request: ChatRequest, model: str, *, stream: bool) -> dict[str, object]:
    """The body sent to OpenAI's `/responses`: the prepared body, `model` and `stream` set."""
    assert request.raw is not None
    body: dict[str, object] = {**request.raw, "model": model}
    if stream:
        body["stream"] = True
    else:
        body.pop("stream", None)
        body.pop("stream_options", None)
    return body


def _finish(status: object, incomplete: object, calls: bool) -> FinishReason:
    if status == "incomplete":
        reason = incomplete.get("reason") if isinstance(incomplete, dict) else None
        return "content_filter" if reason == "content_filter" else "length"
    return "tool_calls" if calls else "stop"


def _usage(value: object) -> Usage | None:
    if not isinstance(value, dict):
        return None
    return Usage(
        input_tokens=int(value.get("input_tokens") or 0),
        output_tokens=int(value.get("output_tokens") or 0),
    )


def parse_response(body: dict[str, Any], model: str) -> ChatResponse:
    """The canonical reading of a `response` object (kept whole in `raw`)."""
    text: list[str] = []
    reasoning: list[str] = []
    calls: list[ToolCall] = []
    for item in body["output"]:
        kind = item.get("type")
        if kind == "message":
            for part in item.get("content") or ():
                if part.get("type") == "output_text":
                    text.append(part.get("text") or "")
        elif kind == "function_call":
            calls.append(ToolCall(item["call_id"], item["name"], item.get("arguments") or ""))
        elif kind == "reasoning":
            reasoning.extend(s.get("text") or "" for s in item.get("summary") or ())
    return ChatResponse(
        id=str(body.get("id") or ""),
        model=body.get("model") or model,
        text="".join(text),
        finish_reason=_finish(body.get("status"), body.get("incomplete_details"), bool(calls)),
        usage=_usage(body.get("usage")),
        tool_calls=calls,
        raw=body,
        raw_dialect="responses",
        reasoning="\n\n".join(reasoning),
    )


class ResponsesStream:
    """A streamed response's typed events as canonical events (a `StreamDecoder`): the
    answer is whole at `response.completed` (or `response.incomplete`)."""

    __slots__ = ("_calls", "_model", "_name", "stopped")

    def __init__(self, name: str, model: str) -> None:
        self._name = name
        self._model = model
        self._calls: dict[int, int] = {}  # output index -> tool call index
        self.stopped = False

    @property
    def complete(self) -> bool:
        return self.stopped

    def decode(self, event: SSEEvent, out: list[StreamEvent]) -> bool:
        data: dict[str, Any] = orjson.loads(event.data)
        kind = data.get("type") or event.event
        if kind not in ("error", "response.failed"):  # those end the stream as OneFlow's error
            out.append(WireEvent("responses", data))  # for the caller, as it came
        if kind == "response.output_text.delta":
            if data["delta"]:
                out.append(TextDelta(data["delta"]))
        elif kind == "response.function_call_arguments.delta":
            index = self._calls.get(int(data["output_index"]))
            if index is not None and data["delta"]:
                out.append(ToolCallDelta(index, data["delta"]))
        elif kind == "response.output_item.added":
            item = data["item"]
            if item.get("type") == "function_call":
                index = self._calls[int(data["output_index"])] = len(self._calls)
                out.append(ToolCallDelta(index, "", item["call_id"], item["name"]))
        elif kind == "response.reasoning_summary_text.delta":
            if data["delta"]:
                out.append(ThinkingDelta(data["delta"]))
        elif kind == "response.created":
            response = data["response"]
            out.append(StreamStart(str(response.get("id") or ""), response.get("model") or ""))
        elif kind in ("response.completed", "response.incomplete"):
            response = data["response"]
            out.append(
                StreamFinish(
                    _finish(response.get("status"), response.get("incomplete_details"), False)
                    if kind == "response.incomplete" or not self._calls
                    else "tool_calls"
                )
            )
            usage = _usage(response.get("usage"))
            if usage is not None:
                out.append(StreamUsage(usage.input_tokens, usage.output_tokens))
            self.stopped = True
            return True
        elif kind == "response.failed":
            error = data["response"].get("error")
            raise stream_failure(self._name, self._model, _error(error), _ERROR_CLASSES)
        elif kind == "error":
            raise stream_failure(self._name, self._model, _error(data), _ERROR_CLASSES)
        return False


def _error(error: object) -> dict[str, object]:
    """An error object with its `code` as the type the taxonomy is chosen by."""
    if not isinstance(error, dict):
        return {"message": "the response failed"}
    return {**error, "type": error.get("code") or error.get("type")}
