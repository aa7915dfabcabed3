"""OneFlow's own API from the product description: `POST /api/v1/request` and
`POST /api/v1/estimate`.

A request: one prompt, a routing strategy and a modality in; the output, the model and provider
that answered, the usage and the credits charged out. An estimate: what a request would cost on
every eligible model, and the model the strategy would pick. Errors use the OpenAI error shape.
"""

from __future__ import annotations

import base64
from typing import Any, cast

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from oneflow_ai.api.calls import gateway_caller, new_call
from oneflow_ai.api.deps import get_services
from oneflow_ai.api.responses import gateway_headers, json_response
from oneflow_ai.api.schemas import (
    EstimateRequest,
    EstimateResponse,
    GatewayRequest,
    GatewayResponse,
    request_body,
)
from oneflow_ai.api.validation import Fields, invalid, parse_object
from oneflow_ai.auth.principal import Principal
from oneflow_ai.catalog import Modality
from oneflow_ai.domain.chat import ChatRequest, Message, TextPart
from oneflow_ai.domain.media import ImageRequest, SpeechRequest
from oneflow_ai.gateway.call import Call, Operation
from oneflow_ai.gateway.planning import DEFAULT_STRATEGY, STRATEGIES

__all__ = ["router"]

router = APIRouter(tags=["OneFlow"])

CALLER = Depends(gateway_caller)

DEFAULT_VOICE = "alloy"
MODALITIES = ("text", "image", "audio")
ESTIMATE_FIELDS = frozenset(
    {
        "model",
        "strategy",
        "modality",
        "input_tokens",
        "output_tokens",
        "max_tokens",
        "prompt",
        "messages",
        "images",
        "size",
        "quality",
        "characters",
    }
)


@router.post(
    "/api/v1/request",
    summary="Answer a prompt with the model a strategy picks (text, image or audio)",
    response_model=GatewayResponse,
    openapi_extra=request_body(GatewayRequest),
)
async def process_request(request: Request, principal: Principal = CALLER) -> Response:
    fields = Fields(parse_object(await request.body()))
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
    }
    return json_response(body, headers=gateway_headers(call))


@router.post(
    "/api/v1/estimate",
    summary="What a request would cost on every eligible model, and the model a strategy picks",
    response_model=EstimateResponse,
    openapi_extra=request_body(EstimateRequest),
)
async def estimate(request: Request, principal: Principal = CALLER) -> Response:
    fields = Fields(parse_object(await request.body()))
    fields.only(ESTIMATE_FIELDS)
    strategy = fields.opt_str("strategy", choices=STRATEGIES) or DEFAULT_STRATEGY
    modality = cast(Modality, fields.opt_str("modality", choices=MODALITIES) or "text")
    input_tokens = fields.opt_int("input_tokens", minimum=0)
    output_tokens = fields.opt_int("output_tokens", minimum=0)
    if output_tokens is None:  # the name /api/v1/request and the chat APIs use
        output_tokens = fields.opt_int("max_tokens", minimum=0)
    prompt = fields.opt_str("prompt")
    messages = fields.opt_list("messages")
    images = fields.opt_int("images", minimum=1, maximum=10) or 1
    size = fields.opt_str("size")
    quality = fields.opt_str("quality")
    characters = fields.opt_int("characters", minimum=0)
    model = fields.opt_str("model")  # one model instead of every eligible one
    services = get_services(request)
    estimates = services.estimates.estimate(
        modality=modality,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        prompt=prompt,
        messages=messages,
        images=images,
        image_size=size,
        image_quality=quality,
        characters=characters,
        models=None if model is None else [model],
    )
    if model is not None and not estimates:
        raise invalid("model", f"{model!r} is not a {modality} model")
    ranked = sorted(estimates, key=lambda e: (not e.fits, e.cost.micro_credits, e.model))
    available = {entry.id for entry in services.registry.available(modality)}
    allowed = [
        e.model
        for e in ranked
        if e.fits
        and e.model in available
        and (principal.allowed_models is None or e.model in principal.allowed_models)
    ]
    routing: dict[str, object] | None = None
    if allowed:
        decision = services.router.route(
            input_tokens=max((e.input_tokens for e in ranked), default=0),
            output_tokens=max((e.output_tokens for e in ranked), default=0),
            strategy=strategy,
            modality=modality,
            allowed_models=allowed,
            images=images,
            image_size=size,
            image_quality=quality,
            characters=characters if characters is not None else len(prompt or ""),
        )
        pick = next(e for e in ranked if e.model == decision.primary_model)
        routing = {
            "primary_model": decision.primary_model,
            "provider": decision.primary_provider,
            "estimated_credits": str(pick.cost.credits),
            "cost_usd": str(pick.cost.usd),
            "fallback_chain": decision.fallback_chain,
            "reason": decision.reason,
            "scores": [score.as_dict() for score in decision.scores],
        }
    body = {
        "strategy": strategy,
        "modality": modality,
        "routing": routing,
        "estimates": [
            {
                "model": e.model,
                "provider": e.provider,
                "input_tokens": e.input_tokens,
                "output_tokens": e.output_tokens,
                "tokens_exact": e.tokens_exact,
                "fits": e.fits,
                "available": e.model in available,
                "credits": str(e.cost.credits),
                "cost_usd": str(e.cost.usd),
            }
            for e in ranked
        ],
    }
    return json_response(body)
