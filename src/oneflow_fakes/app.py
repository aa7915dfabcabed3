"""The aiohttp application serving all four fake providers on one port."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web

from oneflow_fakes.anthropic_messages import AnthropicMessages
from oneflow_fakes.config import FakeConfig
from oneflow_fakes.control import ControlPlane
from oneflow_fakes.elevenlabs_speech import ElevenLabsSpeech
from oneflow_fakes.errors import anthropic_error, openai_error, stability_error
from oneflow_fakes.exchange import EXCHANGE, Dropped, FakeState
from oneflow_fakes.faults import FaultError
from oneflow_fakes.models import (
    OPENAI_CHAT_MODELS,
    OPENAI_EMBEDDING_MODELS,
    OPENAI_IMAGE_MODELS,
    OPENAI_TRANSCRIPTION_MODELS,
)
from oneflow_fakes.openai_chat import OpenAIChat
from oneflow_fakes.openai_common import check_openai_key, openai_headers
from oneflow_fakes.openai_embeddings import OpenAIEmbeddings
from oneflow_fakes.openai_images import OpenAIImages
from oneflow_fakes.openai_responses import OpenAIResponses
from oneflow_fakes.openai_transcriptions import OpenAITranscriptions
from oneflow_fakes.stability_images import StabilityImages

__all__ = ["STATE", "create_fake_app"]

STATE = web.AppKey("oneflow_fake_state", FakeState)
MAX_BODY = 64 * 1024 * 1024
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def guarded(handler: Handler) -> Handler:
    """Turn a fault's cut connection into a silent end, a bad `x-fake-*` header into a 400,
    and note in the call log when the client went away first."""

    async def run(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except Dropped:
            raise asyncio.CancelledError from None
        except FaultError as exc:
            exchange = request.get(EXCHANGE)
            if exchange is not None:
                exchange.record.status, exchange.record.outcome = 400, "error"
            error = {"message": f"fake providers: {exc}", "type": "fake_fault_error"}
            return web.Response(
                status=400, body=orjson.dumps({"error": error}), content_type="application/json"
            )
        except (asyncio.CancelledError, ConnectionResetError):
            exchange = request.get(EXCHANGE)
            if exchange is not None and exchange.record.outcome == "pending":
                exchange.record.outcome = "client_closed"
            raise asyncio.CancelledError from None

    return run


def create_fake_app(config: FakeConfig | None = None) -> web.Application:
    """All four providers under path prefixes, plus the `/_fake` control plane."""
    state = FakeState(config or FakeConfig())
    app = web.Application(client_max_size=MAX_BODY)
    app[STATE] = state
    router = app.router
    openai_chat = OpenAIChat(state)
    anthropic = AnthropicMessages(state)
    router.add_post("/openai/v1/chat/completions", guarded(openai_chat.completions))
    router.add_post("/openai/v1/responses", guarded(OpenAIResponses(state).create))
    router.add_post(  # Azure OpenAI's deployment-name URL
        "/openai/deployments/{deployment}/chat/completions", guarded(openai_chat.completions)
    )
    router.add_get("/openai/v1/models", guarded(_openai_models(state)))
    router.add_get("/openai/v1/models/{model}", guarded(_openai_models(state)))
    router.add_post("/anthropic/v1/messages", guarded(anthropic.messages))
    images = OpenAIImages(state)
    router.add_post("/openai/v1/images/generations", guarded(images.generations))
    router.add_get("/openai/files/{name}", images.file)
    router.add_post("/openai/v1/embeddings", guarded(OpenAIEmbeddings(state).create))
    router.add_post("/openai/v1/audio/transcriptions", guarded(OpenAITranscriptions(state).create))
    stability = StabilityImages(state)
    router.add_post(
        "/stability/v1/generation/{engine}/text-to-image", guarded(stability.text_to_image)
    )
    router.add_post("/stability/v2beta/stable-image/generate/sd3", guarded(stability.sd3))
    speech = ElevenLabsSpeech(state)
    router.add_post("/elevenlabs/v1/text-to-speech/{voice_id}", guarded(speech.convert))
    router.add_post("/elevenlabs/v1/text-to-speech/{voice_id}/stream", guarded(speech.stream))
    ControlPlane(state).add_routes(router)
    router.add_route("*", "/openai/{tail:.*}", _openai_not_found)
    router.add_route("*", "/anthropic/{tail:.*}", _anthropic_not_found)
    router.add_route("*", "/stability/{tail:.*}", _stability_not_found)
    router.add_route("*", "/elevenlabs/{tail:.*}", _elevenlabs_not_found)
    return app


def _openai_models(state: FakeState) -> Handler:
    async def models(request: web.Request) -> web.StreamResponse:
        wanted = request.match_info.get("model")
        refused = check_openai_key(request, state.config.api_key)
        if refused is None and wanted is not None and not _known_openai(wanted):
            refused = openai_error(404, "model_not_found", model=wanted)
        if refused is not None:
            return web.Response(
                status=refused.status,
                body=orjson.dumps(refused.body),
                content_type="application/json",
            )
        entries = [
            {"id": name, "object": "model", "created": model.created, "owned_by": "system"}
            for name, model in OPENAI_CHAT_MODELS.items()
        ] + [
            {"id": name, "object": "model", "created": 1_698_785_189, "owned_by": "system"}
            for name in OPENAI_IMAGE_MODELS
        ]
        headers = openai_headers()
        if wanted is not None:
            entry = next(e for e in entries if e["id"] == wanted)
            return web.Response(
                body=orjson.dumps(entry), content_type="application/json", headers=headers
            )
        body = {"object": "list", "data": entries}
        return web.Response(
            body=orjson.dumps(body), content_type="application/json", headers=headers
        )

    return models


def _known_openai(model: str) -> bool:
    return any(
        model in table
        for table in (
            OPENAI_CHAT_MODELS,
            OPENAI_IMAGE_MODELS,
            OPENAI_EMBEDDING_MODELS,
            OPENAI_TRANSCRIPTION_MODELS,
        )
    )


async def _openai_not_found(request: web.Request) -> web.Response:
    path = request.path.removeprefix("/openai")
    answer = openai_error(404, "invalid_request_error", f"Invalid URL ({request.method} {path})")
    return web.Response(status=404, body=orjson.dumps(answer.body), content_type="application/json")


async def _anthropic_not_found(request: web.Request) -> web.Response:
    answer = anthropic_error(404, "not_found_error", "Not Found")
    return web.Response(status=404, body=orjson.dumps(answer.body), content_type="application/json")


async def _stability_not_found(request: web.Request) -> web.Response:
    answer = stability_error(
        404,
        "not_found",
        f"{request.method} {request.path} was not found",
        v2=False,
        error_id=uuid.uuid4().hex,
    )
    return web.Response(status=404, body=orjson.dumps(answer.body), content_type="application/json")


async def _elevenlabs_not_found(request: web.Request) -> web.Response:
    return web.Response(status=404, body=b'{"detail":"Not Found"}', content_type="application/json")
