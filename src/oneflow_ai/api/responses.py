"""Responses of the gateway's edges: JSON encoded once with orjson, the `X-OneFlow-*` headers,
and server-sent event streams that end cleanly.

The headers of a model call's answer: which model and provider answered (`X-OneFlow-Model`,
`X-OneFlow-Provider`), how many candidates fell through before it (`X-OneFlow-Fallbacks`), why
that model (`X-OneFlow-Route`: the routing's reason, e.g. `cost_optimized: cheapest of 7
eligible`), the caller's parameters that model could not honour (`X-OneFlow-Ignored-Params`,
only when there are any: docs/dialects.md) and, once known, the credits charged
(`X-OneFlow-Credits`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Protocol

import orjson
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from oneflow_ai.api.headers import wire_name
from oneflow_ai.billing.cost import Cost
from oneflow_ai.domain.chat import StreamEvent
from oneflow_ai.domain.usage import Usage
from oneflow_ai.errors import GatewayError
from oneflow_ai.gateway.call import Call
from oneflow_ai.gateway.stream import ChatStream

__all__ = [
    "ChatStreamResponse",
    "EventStreamResponse",
    "StreamEncoder",
    "call_response",
    "gateway_headers",
    "json_response",
    "route_view",
]

MODEL_HEADER = "X-OneFlow-Model"
PROVIDER_HEADER = "X-OneFlow-Provider"
CREDITS_HEADER = "X-OneFlow-Credits"
FALLBACKS_HEADER = "X-OneFlow-Fallbacks"
ROUTE_HEADER = "X-OneFlow-Route"
IGNORED_PARAMS_HEADER = "X-OneFlow-Ignored-Params"


def json_response(
    body: object, status_code: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    return Response(
        orjson.dumps(body), status_code=status_code, headers=headers, media_type="application/json"
    )


def call_response(body: object, call: Call) -> Response:
    """`json_response(body, headers=gateway_headers(call))`: a model call's answer."""
    return _CallResponse(orjson.dumps(body), gateway_headers(call))


_JSON_TYPE = (b"content-type", b"application/json")


class _CallResponse(Response):
    """A JSON answer with `gateway_headers`: the headers Starlette's `Response` makes of them,
    in the same order, without encoding each name again for every answer."""

    media_type = "application/json"

    def __init__(self, body: bytes, headers: dict[str, str]) -> None:
        self.status_code = 200
        self.background = None
        self.body = body
        raw = [(wire_name(name), value.encode("latin-1")) for name, value in headers.items()]
        raw += ((b"content-length", str(len(body)).encode("latin-1")), _JSON_TYPE)
        self.raw_headers = raw


def gateway_headers(call: Call) -> dict[str, str]:
    """Which model and provider answered, how many models fell through before it, why that
    model and, once known, the credits charged (see the module docstring)."""
    route = call.route
    assert route is not None
    headers = {
        MODEL_HEADER: route.model,
        PROVIDER_HEADER: route.provider_name,
        FALLBACKS_HEADER: str(call.fallbacks),
    }
    if call.route_reason is not None:
        headers[ROUTE_HEADER] = call.route_reason.text  # printable ASCII, made once per route
    ignored = call.ignored_params
    if ignored:
        headers[IGNORED_PARAMS_HEADER] = ", ".join(ignored)  # printable ASCII field names
    if call.cost is not None:
        headers[CREDITS_HEADER] = str(call.cost.credits)
    return headers


def route_view(call: Call) -> dict[str, object]:
    """How the call was routed: the reason (as `X-OneFlow-Route` says it), the chain of
    candidates (primary first) and every model called, with the kind of error it failed with."""
    return {
        "reason": call.route_reason.text if call.route_reason is not None else None,
        "chain": [route.model for route in call.candidates],
        "fallbacks": call.fallbacks,
        "attempts": [
            {
                "model": attempt.model,
                "provider": attempt.provider,
                "error": attempt.error.kind if attempt.error is not None else None,
            }
            for attempt in call.attempts
        ],
    }


class StreamEncoder(Protocol):
    """Writes a stream's events in one dialect; `end` and `error` close the stream."""

    def event(self, event: StreamEvent) -> bytes: ...

    def end(self, usage: Usage, cost: Cost | None) -> bytes: ...

    def error(self, exc: GatewayError, usage: Usage | None, cost: Cost | None) -> bytes: ...


class EventStreamResponse(Response):
    """`text/event-stream`, one body message per chunk of `content`; a caller that goes away
    cancels the writing (so the stream closes its provider's).

    Starlette's `StreamingResponse` watches for the disconnect in an anyio task group under
    ASGI servers below spec 2.4 (uvicorn's included): its cancel scopes and the task it starts
    cost more per stream than the rest of the edge's streaming. Here the response is written
    from the request's own task, and one plain task waits on `receive` for the disconnect and
    cancels that writing while it runs, never after it: the cancellation it asks for is always
    delivered inside `__call__`, which takes it back and returns as the request ending."""

    media_type = "text/event-stream"

    def __init__(self, content: AsyncIterator[bytes], headers: Mapping[str, str]) -> None:
        self.body_iterator = content
        self.status_code = 200
        self.background = None
        self.init_headers(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        task = asyncio.current_task()
        assert task is not None
        writing = True
        gone = False

        async def watch() -> None:
            nonlocal gone
            try:
                while (await receive())["type"] != "http.disconnect":
                    pass
            except Exception:  # nothing more to learn from `receive`: stop watching
                return
            if writing:
                gone = True
                task.cancel()

        watcher = asyncio.get_running_loop().create_task(watch())
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            await self.write_body(send)
            writing = False
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            if gone and task.uncancel() == 0:
                return  # the caller went away: the request is over
            raise
        finally:
            writing = False
            watcher.cancel()

    async def write_body(self, send: Send) -> None:
        """Send the body, one message per chunk, all with more to come."""
        async for chunk in self.body_iterator:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})


class ChatStreamResponse(EventStreamResponse):
    """A chat stream as `text/event-stream`, written by `encoder` straight from the stream's
    batches (what arrived together leaves in one write, with no generator of its own between
    the stream and the caller). It always ends with usage and credits, or with an error event
    in the dialect; a caller that disconnects closes the stream (and so the upstream request).
    """

    def __init__(self, stream: ChatStream, encoder: StreamEncoder) -> None:
        headers = gateway_headers(stream.call)
        headers["Cache-Control"] = "no-cache"
        headers["X-Accel-Buffering"] = "no"
        self._stream = stream
        self._encoder = encoder
        self.status_code = 200
        self.background = None
        self.init_headers(headers)

    async def write_body(self, send: Send) -> None:
        stream, encoder = self._stream, self._encoder
        event = encoder.event
        batches = stream.batches()
        try:
            async for batch in batches:
                data = b"".join([event(each) for each in batch])
                if data:
                    await send({"type": "http.response.body", "body": data, "more_body": True})
        except GatewayError as exc:
            last = encoder.error(exc, stream.usage, stream.cost)
        else:
            last = encoder.end(stream.usage or Usage(estimated=True), stream.cost)
        finally:
            await batches.aclose()
        await send({"type": "http.response.body", "body": last, "more_body": True})
