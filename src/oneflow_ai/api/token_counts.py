"""Counting a chat request's input tokens before sending it, in both dialects.

`POST /v1/messages/count_tokens` is Anthropic's endpoint (what the `anthropic` SDK's
`messages.count_tokens` calls): a Messages body without `max_tokens`, answered
`{"input_tokens": N}`. `POST /v1/chat/completions/count_tokens` is OneFlow's own for the
OpenAI dialect: a Chat Completions body, answered
`{"object": "chat.completion.input_tokens", "model": ..., "input_tokens": N}`. Either works for
every text model, whichever dialect the model speaks.

The count is the one the gateway reserves credits and counts rate limits with (billing's
`TokenCounter` on the model's tokenizer, after the request is put in OpenAI's chat format):
exact for OpenAI's encodings and published message framing, OneFlow's documented estimate for
Claude (`claude_approx`). How far to trust it is in the answer's `oneflow` field
(`exact`, `tokenizer`, `model`) and the `X-OneFlow-Tokens-Exact` header.

A count calls no provider and is not billed; it needs a key that may call models, and counts
as one request against the caller's rate limits (no tokens). A routing name (`auto`, a
strategy) is refused: the count depends on the model's tokenizer.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from oneflow_ai.api.anthropic_messages import parse_messages_request
from oneflow_ai.api.calls import gateway_caller
from oneflow_ai.api.deps import admit, get_services
from oneflow_ai.api.openai_chat import parse_chat_request
from oneflow_ai.api.responses import MODEL_HEADER, json_response
from oneflow_ai.api.schemas import (
    ChatCompletionRequest,
    InputTokens,
    MessagesTokenCount,
    MessagesTokenCountRequest,
    request_body,
)
from oneflow_ai.api.validation import parse_object
from oneflow_ai.auth.permissions import ensure_model_allowed
from oneflow_ai.auth.principal import Principal
from oneflow_ai.billing.tokenizer import TokenCount
from oneflow_ai.domain.chat import ChatRequest
from oneflow_ai.errors import BadRequestError
from oneflow_ai.gateway.planning import AUTO, STRATEGIES

__all__ = ["EXACT_HEADER", "router"]

router = APIRouter(tags=["Token counting"])

#: `true` when the count follows the model's own encoding exactly, `false` for an estimate.
EXACT_HEADER = "X-OneFlow-Tokens-Exact"


@router.post(
    "/v1/messages/count_tokens",
    summary="Input tokens of a Messages request on any text model (Anthropic dialect)",
    response_model=MessagesTokenCount,
    openapi_extra=request_body(MessagesTokenCountRequest),
)
async def count_message_tokens(request: Request) -> Response:
    principal = await gateway_caller(request)
    chat = parse_messages_request(parse_object(await request.body()), counting=True)
    model, count = await _count(request, principal, chat)
    body = {"input_tokens": count.tokens, "oneflow": _trust(model, count)}
    return json_response(body, headers=_headers(model, count))


@router.post(
    "/v1/chat/completions/count_tokens",
    summary="Input tokens of a Chat Completions request on any text model (OpenAI dialect)",
    response_model=InputTokens,
    openapi_extra=request_body(ChatCompletionRequest),
)
async def count_chat_tokens(request: Request) -> Response:
    principal = await gateway_caller(request)
    chat, _ = parse_chat_request(parse_object(await request.body()))
    model, count = await _count(request, principal, chat)
    body = {
        "object": "chat.completion.input_tokens",
        "model": model,
        "input_tokens": count.tokens,
        "oneflow": _trust(model, count),
    }
    return json_response(body, headers=_headers(model, count))


async def _count(
    request: Request, principal: Principal, chat: ChatRequest
) -> tuple[str, TokenCount]:
    if chat.model == AUTO or chat.model in STRATEGIES:
        raise BadRequestError(
            f"'{chat.model}' chooses a model per request; token counts depend on the model's "
            "tokenizer: name a model",
            param="model",
        )
    services = get_services(request)
    entry = services.registry.resolve(chat.model).entry
    ensure_model_allowed(principal, entry.id)
    if entry.modality != "text":
        raise BadRequestError(
            f"The model '{entry.id}' is a {entry.modality} model; only text models count "
            "chat tokens",
            param="model",
        )
    await admit(request, principal)
    counter = services.estimates.counter
    await counter.prepare([entry.tokenizer])  # a first count builds its encoding in a thread
    count = counter.count_chat(entry.id, chat)
    return entry.id, count


def _trust(model: str, count: TokenCount) -> dict[str, object]:
    return {"model": model, "tokenizer": count.tokenizer, "exact": count.exact}


def _headers(model: str, count: TokenCount) -> dict[str, str]:
    return {MODEL_HEADER: model, EXACT_HEADER: "true" if count.exact else "false"}
