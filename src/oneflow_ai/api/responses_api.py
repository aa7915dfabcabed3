"""OpenAI's Responses API (`/v1/responses`) for every text model.

`POST /v1/responses` reads the body (`api/responses_input.py`), adds the conversation of
`previous_response_id` from OneFlow's store, and runs the call through the same pipeline as
chat (limits, routing, the ledger, the usage record and the request log). An OpenAI model
gets the body on OpenAI's own `/responses` (the earlier conversation written out as input
items, `store: false`: OneFlow keeps the response); any other model is bridged through the
canonical chat types, and what it cannot honour is refused with a 400 naming the field. The
answer is written by `api/responses_output.py`, plain or as typed server-sent events.

OneFlow stores every response asked to be stored (`store: true`, the default), whichever
model answered, per project, for `RESPONSES_RETENTION_DAYS`: `previous_response_id` works
across models, and `GET`/`DELETE /v1/responses/{id}` and `GET .../input_items` read it.
Another project's id is not found; an expired one is named as expired.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import structlog
from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from starlette.responses import Response

from oneflow_ai.api.calls import gateway_caller, new_call
from oneflow_ai.api.deps import get_services
from oneflow_ai.api.fallbacks import take_models
from oneflow_ai.api.responses import (
    EventStreamResponse,
    call_response,
    gateway_headers,
    json_response,
)
from oneflow_ai.api.responses_input import ResponsesInput, messages_of, parse_responses_request
from oneflow_ai.api.responses_output import ResponseShape, created_now, new_id, render_response
from oneflow_ai.api.responses_stream import ResponsesEncoder
from oneflow_ai.api.schemas import ResponsesRequestBody, request_body
from oneflow_ai.api.validation import parse_object
from oneflow_ai.auth.principal import Principal
from oneflow_ai.domain.chat import Message, TextPart
from oneflow_ai.domain.usage import Usage
from oneflow_ai.errors import (
    BadRequestError,
    GatewayError,
    NotFoundError,
    ServiceUnavailableError,
)
from oneflow_ai.gateway.call import Call
from oneflow_ai.gateway.services import Services
from oneflow_ai.gateway.stream import ChatStream
from oneflow_ai.storage.stored_responses import (
    StoredRow,
    delete_response,
    load_chain,
    load_response,
    purge_expired,
    save_response,
)
from oneflow_ai.storage.tables import utcnow

__all__ = ["router"]

log = structlog.get_logger("oneflow.api")

router = APIRouter(tags=["Responses"])

CALLER = Depends(gateway_caller)
#: How many responses back `previous_response_id` follows at most.
MAX_CHAIN = 1000
#: Expired responses are deleted a day after they expired (until then they are named so).
PURGE_AFTER = timedelta(days=1)


@router.post(
    "/v1/responses",
    summary="A model response in OpenAI's Responses API format, for any text model",
    openapi_extra=request_body(ResponsesRequestBody),
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def create_response(request: Request, principal: Principal = CALLER) -> Response:
    body = parse_object(await request.body())
    fallbacks = take_models(body)  # OneFlow's fallback list, as in chat (api/fallbacks.py)
    parsed = parse_responses_request(body)
    services = get_services(request)
    chat = parsed.chat
    history = await _history(services.engine, principal.project_id, parsed.previous_response_id)
    history_native: list[str] = []
    earlier = messages_of(history, history_native)
    instructions = (
        [Message(role="system", content=[TextPart(parsed.instructions)])]
        if parsed.instructions
        else []
    )
    chat.messages = [*instructions, *earlier, *chat.messages]
    chat.raw = _native_body(parsed, history)
    chat.dialect_only = (*parsed.native_only, *history_native)  # what a bridged model refuses
    call = new_call(
        request, principal, "chat", chat, model=chat.model, stream=chat.stream, fallbacks=fallbacks
    )
    _refuse_unsupported(call, services, parsed.native_only, history_native)
    if not parsed.items and not history:
        raise BadRequestError("The input has no items", param="input")
    shape = ResponseShape(
        id=new_id("resp"),
        model=chat.model,
        created_at=created_now(),
        body=parsed.body,
        previous_response_id=parsed.previous_response_id,
        store=parsed.store,
        reasoning_summary=parsed.reasoning_summary,
    )
    pipeline = services.pipeline
    if chat.stream:
        stream = await pipeline.open_chat_stream(call)
        shape.model = stream.route.model
        return _sse(stream, ResponsesEncoder(shape), services, parsed, principal)
    answer = await pipeline.chat(call)
    assert call.route is not None and call.usage is not None
    shape.model = call.route.model
    body = render_response(shape, answer, call.usage)
    if parsed.store:
        await _store(services, principal, parsed, body)
    return call_response(body, call)


async def _store(
    services: Services, principal: Principal, parsed: ResponsesInput, response: dict[str, Any]
) -> None:
    """Keep the response; a database that cannot take it does not take the answer away from
    its caller (it was made and charged): the failure is logged."""
    try:
        await _save(services, principal, parsed, response)
    except Exception:
        log.exception("response_not_stored", response_id=response["id"])


@router.get("/v1/responses/{response_id}", summary="A stored response")
async def get_response(
    response_id: str, request: Request, principal: Principal = CALLER
) -> Response:
    row = await _find(get_services(request).engine, principal.project_id, response_id)
    return json_response(row.response)


@router.delete("/v1/responses/{response_id}", summary="Delete a stored response")
async def remove_response(
    response_id: str, request: Request, principal: Principal = CALLER
) -> Response:
    engine = get_services(request).engine
    await _find(engine, principal.project_id, response_id)
    async with engine.begin() as connection:
        if not await delete_response(connection, principal.project_id, response_id):
            raise _not_found(response_id, "response_id")
    return json_response({"id": response_id, "object": "response", "deleted": True})


@router.get("/v1/responses/{response_id}/input_items", summary="A stored response's input")
async def list_input_items(
    response_id: str,
    request: Request,
    principal: Principal = CALLER,
    limit: int = Query(default=20, ge=1, le=100),
    order: str = Query(default="desc", pattern="^(asc|desc)$"),
    after: str | None = Query(default=None),
) -> Response:
    row = await _find(get_services(request).engine, principal.project_id, response_id)
    items = row.input if order == "asc" else list(reversed(row.input))
    if after is not None:
        ids = [item.get("id") for item in items]
        if after not in ids:
            raise BadRequestError(f"No input item '{after}' in this response", param="after")
        items = items[ids.index(after) + 1 :]
    page = items[:limit]
    return json_response(
        {
            "object": "list",
            "data": page,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
            "has_more": len(items) > limit,
        }
    )


# ---- the request -------------------------------------------------------------------------


def _native_body(parsed: ResponsesInput, history: list[dict[str, Any]]) -> dict[str, Any]:
    """The body an OpenAI model gets on its own `/responses`: the earlier conversation as
    input items (without reasoning items, which OpenAI reads only from its own store), and
    `store: false`, since OneFlow keeps the response."""
    body = {key: value for key, value in parsed.body.items() if key != "previous_response_id"}
    earlier = [item for item in history if item.get("type") != "reasoning"]
    body["input"] = [*earlier, *parsed.items]
    body["store"] = False
    return body


def _refuse_unsupported(
    call: Call, services: Services, native_only: list[str], history_native: list[str]
) -> None:
    """A 400 naming the first field the model cannot honour (a bridged model: not OpenAI)."""
    if not native_only and not history_native:
        return
    if call.strategy is None:
        route = services.registry.resolve(call.model)
        if getattr(route.provider, "native_responses", False):
            return
        who = f"the model '{route.model}'"
    else:
        who = f"the strategy '{call.model}' (it may choose any model)"
    if native_only:
        field = native_only[0]
        raise BadRequestError(
            f"'{field}' is not supported for {who}: only OpenAI models take it on the Responses "
            "API; other models are bridged through OneFlow and cannot honour it",
            param=field.split(" ", 1)[0],
            code="unsupported_parameter",
        )
    raise BadRequestError(
        f"The conversation of previous_response_id holds items {who} cannot read "
        f"({', '.join(history_native)})",
        param="previous_response_id",
        code="unsupported_parameter",
    )


# ---- the store ---------------------------------------------------------------------------


def _not_found(response_id: str, param: str) -> NotFoundError:
    return NotFoundError(
        f"No response found with id '{response_id}'", param=param, code="response_not_found"
    )


async def _find(engine: AsyncEngine, project_id: str, response_id: str) -> StoredRow:
    return await _load(engine, project_id, response_id, "response_id")


@asynccontextmanager
async def _reading(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection for reading stored responses; a database that is away is a 503."""
    try:
        async with engine.connect() as connection:
            yield connection
    except (SQLAlchemyError, OSError) as exc:
        log.warning("response_store_unreachable", error=type(exc).__name__)
        raise ServiceUnavailableError(
            "Stored responses cannot be read now (the database is unreachable); try again",
            retry_after=1,
        ) from exc


async def _load(engine: AsyncEngine, project_id: str, response_id: str, param: str) -> StoredRow:
    async with _reading(engine) as connection:
        row = await load_response(connection, project_id, response_id)
    if row is None:
        raise _not_found(response_id, param)
    _check_expiry(row, param)
    return row


def _check_expiry(row: StoredRow, param: str) -> None:
    if row.expired():
        raise NotFoundError(
            f"The response '{row.id}' expired at {row.expires_at.isoformat()} (responses "
            "are kept for RESPONSES_RETENTION_DAYS)",
            param=param,
            code="response_expired",
        )


async def _history(
    engine: AsyncEngine, project_id: str, response_id: str | None
) -> list[dict[str, Any]]:
    """The conversation up to and including `response_id`: each response's input items and
    output items, oldest first."""
    if response_id is None:
        return []
    async with _reading(engine) as connection:
        chain = await load_chain(connection, project_id, response_id, limit=MAX_CHAIN)
    wanted: str | None = response_id
    for row in chain:  # each link must be there and not expired (the first missing is named)
        if row.id != wanted:
            break
        _check_expiry(row, "previous_response_id")
        wanted = row.previous_response_id
    if wanted is not None and len(chain) < MAX_CHAIN:
        raise _not_found(wanted, "previous_response_id")
    items: list[dict[str, Any]] = []
    for row in reversed(chain):
        items.extend(row.input)
        items.extend(row.response.get("output") or ())
    return items


def _stored_items(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Input items as `input_items` lists them: each with an id, text content as parts."""
    prefixes = {"message": "msg", "function_call": "fc", "function_call_output": "fco"}
    stored: list[dict[str, Any]] = []
    for item in items:
        copy = dict(item)
        kind = copy.setdefault("type", "message")
        copy.setdefault("id", new_id(prefixes.get(kind, "item")))
        if kind == "message" and isinstance(copy.get("content"), str):
            part = "output_text" if copy.get("role") == "assistant" else "input_text"
            copy["content"] = [{"type": part, "text": copy["content"]}]
        if kind in ("message", "function_call_output"):
            copy.setdefault("status", "completed")
        stored.append(copy)
    return stored


async def _save(
    services: Services, principal: Principal, parsed: ResponsesInput, response: dict[str, Any]
) -> None:
    now = utcnow()
    row = StoredRow(
        id=response["id"],
        project_id=principal.project_id,
        created_at=now,
        expires_at=now + timedelta(days=services.settings.responses_retention_days),
        previous_response_id=parsed.previous_response_id,
        model=str(response.get("model") or parsed.chat.model),
        input=_stored_items(parsed.items),
        response=response,
    )
    async with services.engine.begin() as connection:
        await save_response(connection, row)
        await purge_expired(connection, now=now - PURGE_AFTER)


def _sse(
    stream: ChatStream,
    encoder: ResponsesEncoder,
    services: Services,
    parsed: ResponsesInput,
    principal: Principal,
) -> EventStreamResponse:
    """The stream as typed server-sent events; a completed response is stored at its end."""

    async def body() -> AsyncIterator[bytes]:
        batches = stream.batches()
        try:
            async for batch in batches:
                data = b"".join([encoder.event(event) for event in batch])
                if data:
                    yield data
        except GatewayError as exc:
            yield encoder.error(exc, stream.usage, stream.cost)
            return
        finally:
            await batches.aclose()
        end = encoder.end(stream.usage or Usage(estimated=True), stream.cost)
        if parsed.store and encoder.final is not None:
            await _store(services, principal, parsed, encoder.final)
        yield end

    headers = gateway_headers(stream.call)
    headers["Cache-Control"] = "no-cache"
    headers["X-Accel-Buffering"] = "no"
    return EventStreamResponse(body(), headers)
