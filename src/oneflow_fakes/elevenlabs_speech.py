"""The fake ElevenLabs text-to-speech endpoints (`POST /elevenlabs/v1/text-to-speech/{voice}`
and its `/stream` variant): silent audio as long as the text read aloud, in the requested
`output_format`, with the `character-cost` header. Only premade voice ids exist (OpenAI
voice names such as `alloy` get ElevenLabs' 404 `voice_not_found`).
"""

from __future__ import annotations

import math

from aiohttp import web

from oneflow_fakes.errors import (
    ErrorAnswer,
    elevenlabs_error,
    elevenlabs_validation_error,
)
from oneflow_fakes.exchange import Exchange, FakeState, StreamFailed, random_id, read_json
from oneflow_fakes.media import audio, audio_content_type
from oneflow_fakes.models import ELEVENLABS_MODELS, ELEVENLABS_VOICES

__all__ = ["ElevenLabsSpeech"]

_DEFAULT_MODEL = "eleven_multilingual_v2"
_DEFAULT_FORMAT = "mp3_44100_128"
_STREAM_CHUNK = 4096


def _check_key(request: web.Request, accepted: str | None) -> ErrorAnswer | None:
    key = request.headers.get("xi-api-key", "").strip()
    if not key:
        return elevenlabs_error(
            401,
            "needs_authorization",
            "Neither authorization header nor xi-api-key received, please provide one.",
        )
    if accepted is not None and key != accepted:
        return elevenlabs_error(401, "invalid_api_key")
    return None


class ElevenLabsSpeech:
    def __init__(self, state: FakeState) -> None:
        self.state = state

    async def convert(self, request: web.Request) -> web.StreamResponse:
        return await self._speak(request, streaming=False)

    async def stream(self, request: web.Request) -> web.StreamResponse:
        return await self._speak(request, streaming=True)

    async def _speak(self, request: web.Request, *, streaming: bool) -> web.StreamResponse:
        voice_id = request.match_info["voice_id"]
        body = await read_json(request)
        data = body.data
        model_name = body.string("model_id") or _DEFAULT_MODEL
        text = data.get("text")
        exchange = Exchange(
            self.state,
            request,
            provider="elevenlabs",
            endpoint="speech",
            model=model_name,
            stream=streaming,
            body=body.recorded,
            request_id=random_id("", 20),
        )
        cost = (
            math.ceil(len(text) * ELEVENLABS_MODELS.get(model_name, 1.0))
            if isinstance(text, str)
            else 0
        )
        interfered = await exchange.interfere(
            elevenlabs_error, voice_id=voice_id, model=model_name, cost=cost
        )
        if interfered is not None:
            return interfered
        refused = _check_key(request, self.state.config.api_key)
        if refused is not None:
            return exchange.error(refused)
        if not isinstance(text, str) or not text:
            return exchange.error(elevenlabs_validation_error("text"))
        if voice_id not in ELEVENLABS_VOICES:
            return exchange.error(elevenlabs_error(404, "voice_not_found", voice_id=voice_id))
        if model_name not in ELEVENLABS_MODELS:
            return exchange.error(elevenlabs_error(400, "model_not_found", model=model_name))
        output_format = request.query.get("output_format", _DEFAULT_FORMAT)
        try:
            sound = audio(text, output_format)
        except ValueError:
            return exchange.error(
                elevenlabs_error(
                    400, "invalid_output_format", f"Invalid output format: {output_format}"
                )
            )
        content_type = audio_content_type(output_format)
        headers = {
            "character-cost": str(cost),
            "history-item-id": random_id("", 20),
        }
        if not streaming:
            await exchange.generation_delay(1)
            return exchange.binary(sound, content_type, headers)
        return await _stream(exchange, sound, content_type, headers)


async def _stream(
    exchange: Exchange, sound: bytes, content_type: str, headers: dict[str, str]
) -> web.StreamResponse:
    """The audio in chunks of `_STREAM_CHUNK` bytes (a scripted fault may cut it short)."""
    stream = await exchange.open_stream(content_type, headers)

    def failure() -> bytes:
        return b""

    try:
        for start in range(0, len(sound), _STREAM_CHUNK):
            await stream.content(sound[start : start + _STREAM_CHUNK], failure)
    except StreamFailed:
        return await stream.failed()
    return await stream.finish()
