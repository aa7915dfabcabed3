"""OneFlow's own API from the product description: `POST /api/v1/request` and
`POST /api/v1/estimate`.

A request: one prompt, a routing strategy and a modality in; the output, the model and provider
that answered, the usage and the credits charged out. An estimate: what a request would cost on
every eligible model, and the model the strategy would pick. Errors use the OpenAI error shape.
"""

from __future__ import annotations

import base64
from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from oneflow_ai.api.calls import gateway_caller, new_call
from oneflow_ai.api.deps import get_services
from oneflow_ai.api.estimates import MODALITIES, EstimateContext, estimate_answer
from oneflow_ai.api.responses import call_response, json_response, route_view
from oneflow_ai.api.schemas import (
    EstimateRequest,
    EstimateResponse,
    GatewayRequest,
    GatewayResponse,
    request_body,
)
from oneflow_ai.api.validation import Fields, parse_object
from oneflow_ai.auth.principal import Principal
from oneflow_ai.domain.chat import ChatRequest, Message, TextPart
from oneflow_ai.domain.media import ImageRequest, SpeechRequest
from oneflow_ai.gateway.call import Call, Operation
from oneflow_ai.gateway.planning import DEFAULT_STRATEGY, STRATEGIES

__all__ = ["router"]

router = APIRouter(tags=["OneFlow"])

CALLER = Depends(gateway_caller)

DEFAULT_VOICE = "alloy"
REQUEST_FIELDS = frozenset(GatewayRequest.model_fields)  # the documented ones, no others


@router.post(
    "/api/v1/request",
    summary="Answer a prompt with the model a strategy picks (text, image or audio)",
    response_model=GatewayResponse,
    openapi_extra=request_body(GatewayRequest),
)
async def process_request(request: Request, principal: Principal = CALLER) -> Response:
    fields = Fields(parse_object(await request.body()))
    fields.only(REQUEST_FIELDS)
    prompt = fields.req_str("prompt")
    strategy_name = fields.opt_str("strategy", choices=STRATEGIES) or DEFAULT_STRATEGY
    modality = fields.opt_str("modality", choices=MODALITIES) or "text"
    max_tokens = fields.opt_int("max_tokens", minimum=1)
    model = fields.opt_str("model") or strategy_name
    voice = fields.opt_str("voice") or DEFAULT_VOICE
    pipeline = get_services(request).pipeline

    def new(operation: Operation, payload: ChatRequest | ImageRequest | SpeechRequest) -> Call:
        return new_call(
            request,
            principal,
            operation,
            payload,
            model=model,
            strategy=strategy_name,
            strategy_field="strategy",
        )

    output: str
    if modality == "text":
        chat = ChatRequest(model, [Message("user", [TextPart(prompt)])], max_tokens=max_tokens)
        call = new("chat", chat)
        output = (await pipeline.chat(call)).text
    elif modality == "image":
        image = ImageRequest(model=model, prompt=prompt)
        call = new("image", image)
        generated = (await pipeline.generate_image(call)).images[0]
        output = generated.url or f"data:image/png;base64,{generated.b64_json}"
    else:
        speech = SpeechRequest(model=model, input=prompt, voice=voice)
        call = new("speech", speech)
        audio = await pipeline.synthesize_speech(call)
        output = f"data:{audio.content_type};base64,{base64.b64encode(audio.audio).decode()}"
    assert call.route is not None and call.usage is not None and call.cost is not None
    usage = call.usage
    body: dict[str, Any] = {
        "request_id": call.request_id,
        "model": call.route.model,
        "provider": call.route.provider_name,
        "modality": modality,
        "strategy": call.strategy,
        "output": output,
        "usage": {
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "images": usage.images,
            "characters": usage.characters,
            "estimated": usage.estimated,
        },
        "credits": str(call.cost.credits),
        "cost_usd": str(call.cost.usd),
        "route": route_view(call),
    }
    return call_response(body, call)


@router.post(
    "/api/v1/estimate",
    summary="What a request would cost on every eligible model, and the model a strategy picks",
    response_model=EstimateResponse,
    openapi_extra=request_body(EstimateRequest),
)
async def estimate(request: Request, principal: Principal = CALLER) -> Response:
    services = get_services(request)
    context = EstimateContext(
        services.estimates,
        services.router,
        lambda modality: {entry.id for entry in services.registry.available(modality)},
    )
    body = parse_object(await request.body())
    if body.get("prompt") is not None or body.get("messages") is not None:
        # Counted on every eligible text model: encodings not built yet are built in a thread.
        await services.estimates.counter.prepare(
            entry.tokenizer for entry in services.registry.available("text")
        )
    return json_response(estimate_answer(body, context, allowed_models=principal.allowed_models))
