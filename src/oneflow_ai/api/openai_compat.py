"""The OpenAI-compatible API: what the official `openai` SDK talks to with OneFlow's base URL.

Chat Completions for every text model in the catalog (Claude included, translated both ways,
streaming included), images for DALL·E and Stability models, speech for ElevenLabs, embeddings
(`openai_embeddings.py`) and speech to text (`openai_transcriptions.py`) for OpenAI's models,
and the model list. Errors leave in OpenAI's error shape (`api/errors.py`).
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from oneflow_ai.api.calls import gateway_caller, new_call
from oneflow_ai.api.deps import get_services, require
from oneflow_ai.api.fallbacks import take_models
from oneflow_ai.api.model_views import ROUTING_NAMES, model_object, routing_object
from oneflow_ai.api.openai_chat import render_chat_completion
from oneflow_ai.api.openai_chat_request import parse_chat_request
from oneflow_ai.api.openai_embeddings import (
    EMBEDDING_REQUEST,
    parse_embedding_request,
    render_embeddings,
)
from oneflow_ai.api.openai_media import parse_image_request, parse_speech_request, render_images
from oneflow_ai.api.openai_transcriptions import (
    read_transcription_request,
    render_transcription,
)
from oneflow_ai.api.passthrough import openai_encoder
from oneflow_ai.api.request_body import read_body
from oneflow_ai.api.responses import (
    ChatStreamResponse,
    call_response,
    gateway_headers,
    json_response,
)
from oneflow_ai.api.schemas import (
    ImageGenerationRequest,
    ImagesResponse,
    ModelList,
    SpeechRequestBody,
    TranscriptionForm,
    request_body,
)
from oneflow_ai.api.validation import parse_object
from oneflow_ai.auth.permissions import Permission
from oneflow_ai.auth.principal import Principal
from oneflow_ai.catalog import UnknownModelError

__all__ = ["chat_completions", "router"]

router = APIRouter(tags=["OpenAI-compatible"])

CALLER = Depends(gateway_caller)


async def chat_completions(request: Request) -> Response:
    """`POST /v1/chat/completions`, served by `api/direct_routes.py` (which documents it)."""
    principal = await gateway_caller(request)  # not a dependency: FastAPI's solving costs more
    body = parse_object(await read_body(request))
    fallbacks = take_models(body)
    chat, include_usage = parse_chat_request(body)
    call = new_call(
        request, principal, "chat", chat, model=chat.model, stream=chat.stream, fallbacks=fallbacks
    )
    pipeline = get_services(request).pipeline
    if chat.stream:
        stream = await pipeline.open_chat_stream(call)
        encoder = openai_encoder(stream, created=int(time.time()), include_usage=include_usage)
        return ChatStreamResponse(stream, encoder)
    response = await pipeline.chat(call)
    assert call.route is not None and call.usage is not None
    body = render_chat_completion(response, call.usage, int(time.time()))
    return call_response(body, call)


@router.post(
    "/v1/images/generations",
    summary="Images from DALL·E or Stability AI models (OpenAI dialect)",
    response_model=ImagesResponse,
    openapi_extra=request_body(ImageGenerationRequest),
)
async def images_generations(request: Request, principal: Principal = CALLER) -> Response:
    image = parse_image_request(parse_object(await request.body()))
    call = new_call(request, principal, "image", image, model=image.model)
    response = await get_services(request).pipeline.generate_image(call)
    assert call.route is not None
    return json_response(render_images(response), headers=gateway_headers(call))


@router.post(
    "/v1/audio/speech",
    summary="Speech from ElevenLabs voices (OpenAI dialect): audio bytes",
    openapi_extra=request_body(SpeechRequestBody),
    response_class=Response,
    responses={200: {"content": {"audio/mpeg": {}, "audio/opus": {}, "audio/wav": {}}}},
)
async def audio_speech(request: Request, principal: Principal = CALLER) -> Response:
    speech = parse_speech_request(parse_object(await request.body()))
    call = new_call(request, principal, "speech", speech, model=speech.model)
    response = await get_services(request).pipeline.synthesize_speech(call)
    assert call.route is not None
    headers = gateway_headers(call)
    return Response(response.audio, media_type=response.content_type, headers=headers)


@router.post(
    "/v1/embeddings",
    summary="Embeddings of texts or token arrays (OpenAI dialect)",
    openapi_extra=request_body(EMBEDDING_REQUEST),
)
async def embeddings(request: Request, principal: Principal = CALLER) -> Response:
    embedding = parse_embedding_request(parse_object(await request.body()))
    call = new_call(request, principal, "embedding", embedding, model=embedding.model)
    response = await get_services(request).pipeline.embed(call)
    assert call.route is not None and call.usage is not None
    body = render_embeddings(response, embedding, response.model or call.route.model, call.usage)
    return call_response(body, call)


@router.post(
    "/v1/audio/transcriptions",
    summary="Text of an uploaded recording (OpenAI dialect, multipart upload)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"multipart/form-data": {"schema": TranscriptionForm.model_json_schema()}},
        }
    },
    response_class=Response,
    responses={200: {"content": {"application/json": {}, "text/plain": {}, "text/vtt": {}}}},
)
async def audio_transcriptions(request: Request, principal: Principal = CALLER) -> Response:
    transcription = await read_transcription_request(request)
    call = new_call(request, principal, "transcription", transcription, model=transcription.model)
    response = await get_services(request).pipeline.transcribe(call)
    assert call.route is not None
    return render_transcription(response, transcription, gateway_headers(call))


@router.get("/v1/models", summary="The models this gateway serves", response_model=ModelList)
async def list_models(
    request: Request, principal: Principal = Depends(require(Permission.MODELS_READ))
) -> Response:
    registry = get_services(request).registry
    catalog = registry.catalog
    data = [model_object(entry, catalog) for entry in registry.available()]
    data.extend(routing_object(name, catalog) for name in ROUTING_NAMES)
    return json_response({"object": "list", "data": data})


@router.get(
    "/v1/models/{model:path}",
    summary="One model, by id or alias (OpenAI's models.retrieve)",
    response_model=dict[str, Any],
)
async def retrieve_model(
    model: str,
    request: Request,
    principal: Principal = Depends(require(Permission.MODELS_READ)),
) -> Response:
    registry = get_services(request).registry
    catalog = registry.catalog
    if model in ROUTING_NAMES:
        return json_response(routing_object(model, catalog))
    entry = catalog.find(model)
    if entry is None or not registry.is_available(entry):
        raise UnknownModelError(model)
    return json_response(model_object(entry, catalog, model))
