"""The Anthropic-compatible API: what the official `anthropic` SDK talks to with OneFlow's
base URL. Messages for every text model in the catalog (GPT included, translated both ways,
streaming included). The key may come as `x-api-key` or `Authorization: Bearer` (current SDKs
send the latter); any `anthropic-version` is accepted. Errors leave in Anthropic's shape.
"""

from __future__ import annotations

from fastapi import Request
from starlette.responses import Response

from oneflow_ai.api.anthropic_messages import render_message
from oneflow_ai.api.anthropic_request import parse_messages_request
from oneflow_ai.api.calls import gateway_caller, new_call
from oneflow_ai.api.deps import get_services
from oneflow_ai.api.fallbacks import take_models
from oneflow_ai.api.passthrough import anthropic_encoder
from oneflow_ai.api.request_body import read_body
from oneflow_ai.api.responses import ChatStreamResponse, call_response
from oneflow_ai.api.validation import parse_object

__all__ = ["messages"]


async def messages(request: Request) -> Response:
    """`POST /v1/messages`, served by `api/direct_routes.py` (which documents it)."""
    principal = await gateway_caller(request)  # not a dependency: FastAPI's solving costs more
    body = parse_object(await read_body(request))
    fallbacks = take_models(body)
    chat = parse_messages_request(body)
    call = new_call(
        request, principal, "chat", chat, model=chat.model, stream=chat.stream, fallbacks=fallbacks
    )
    pipeline = get_services(request).pipeline
    if chat.stream:
        stream = await pipeline.open_chat_stream(call)
        # message_start announces the input tokens: the provider's count when it came with the
        # opening events (Anthropic), else OneFlow's (OpenAI counts them only at the end; the
        # final message_delta carries its count).
        input_tokens = stream.opening_input_tokens
        if input_tokens is None:
            input_tokens = pipeline.prompt_tokens(stream.call)
        encoder = anthropic_encoder(stream, input_tokens=input_tokens)
        return ChatStreamResponse(stream, encoder)
    response = await pipeline.chat(call)
    assert call.route is not None and call.usage is not None
    body = render_message(response, call.usage)
    return call_response(body, call)
