"""ElevenLabs: text to speech (`POST /v1/text-to-speech/{voice_id}`, `xi-api-key`), audio
bytes back.

An OpenAI voice name (alloy, echo, fable, onyx, nova, shimmer, ...) maps to the ElevenLabs voice
configured for it (`ELEVENLABS_VOICES`); anything else is taken as an ElevenLabs voice id.
OpenAI's `response_format` maps to an ElevenLabs `output_format`; `speed` goes into the voice
settings, within the range ElevenLabs accepts. Usage is the input's characters.
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson

from oneflow_ai.domain.media import SpeechRequest, SpeechResponse
from oneflow_ai.domain.usage import Usage
from oneflow_ai.errors import (
    BadRequestError,
    ProviderAuthError,
    ProviderError,
    ProviderRateLimitedError,
    ProviderUnavailableError,
)
from oneflow_ai.providers.errors import error_class, json_object, provider_error
from oneflow_ai.providers.spec import ProviderSpec
from oneflow_ai.providers.upstream import UpstreamClient, UpstreamRequest
from oneflow_ai.settings import Settings

__all__ = ["OUTPUT_FORMATS", "SPEC", "ElevenLabsProvider", "elevenlabs_headers"]

NAME = "elevenlabs"

#: OpenAI response_format -> (ElevenLabs output_format, content type)
OUTPUT_FORMATS: dict[str, tuple[str, str]] = {
    "mp3": ("mp3_44100_128", "audio/mpeg"),
    "opus": ("opus_48000_64", "audio/opus"),
    "wav": ("wav_24000", "audio/wav"),
    "pcm": ("pcm_24000", "audio/pcm"),
}
SPEED_RANGE = (0.7, 1.2)  # what ElevenLabs' voice_settings.speed accepts


def elevenlabs_headers(api_key: str) -> dict[str, str]:
    return {"xi-api-key": api_key, "Content-Type": "application/json", "Accept": "*/*"}


class ElevenLabsProvider:
    """Speech on ElevenLabs (implements `SpeechCapable`)."""

    name: str = NAME

    def __init__(self, client: UpstreamClient, voices: Mapping[str, str]) -> None:
        self._client = client
        self._voices = {name.lower(): voice for name, voice in voices.items()}

    async def aclose(self) -> None:
        await self._client.aclose()

    def voice_id(self, voice: str) -> str:
        """The ElevenLabs voice id for an OpenAI voice name or a voice id."""
        return self._voices.get(voice.lower(), voice)

    async def synthesize_speech(self, request: SpeechRequest, model: str) -> SpeechResponse:
        formats = OUTPUT_FORMATS.get(request.response_format)
        if formats is None:
            raise BadRequestError(
                f"ElevenLabs cannot produce '{request.response_format}' audio; use one of "
                f"{', '.join(OUTPUT_FORMATS)}",
                param="response_format",
            )
        output_format, content_type = formats
        body: dict[str, object] = {"text": request.input, "model_id": model}
        if request.speed is not None:
            low, high = SPEED_RANGE
            body["voice_settings"] = {"speed": min(max(request.speed, low), high)}
        response = await self._client.send(
            UpstreamRequest(
                "POST",
                f"/v1/text-to-speech/{self.voice_id(request.voice)}",
                map_error,
                body=orjson.dumps(body),
                query={"output_format": output_format},
                model=model,
            )
        )
        extra = {}
        cost = response.headers.get("character-cost")
        if cost is not None:
            extra["character-cost"] = cost
        return SpeechResponse(
            audio=response.body,
            content_type=response.headers.get("Content-Type") or content_type,
            usage=Usage(characters=len(request.input)),
            model=model,
            extra_headers=extra,
        )


def map_error(status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
    """`{"detail": {"status", "message"}}`, or a validation `{"detail": [...]}` list."""
    detail = json_object(body).get("detail")
    code: str | None = None
    message = ""
    if isinstance(detail, dict):
        code = str(detail.get("status") or "") or None
        message = str(detail.get("message") or code or "")
    elif isinstance(detail, list) and detail:
        first = detail[0] if isinstance(detail[0], dict) else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        message = f"{where}: {first.get('msg', 'invalid')}" if where else str(first)
    cls = error_class(status)
    if code == "quota_exceeded":
        cls = ProviderAuthError  # our account cannot pay: another provider may
    elif code == "system_busy":
        cls = ProviderUnavailableError
    elif code == "too_many_concurrent_requests":
        cls = ProviderRateLimitedError
    return provider_error(cls, NAME, status, headers, message, code=code)


def _build(client: UpstreamClient, settings: Settings) -> ElevenLabsProvider:
    return ElevenLabsProvider(client, settings.elevenlabs_voices)


SPEC = ProviderSpec(name=NAME, headers=elevenlabs_headers, build=_build)
