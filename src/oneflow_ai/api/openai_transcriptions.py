"""OpenAI's speech-to-text dialect at the edge (`POST /v1/audio/transcriptions`).

The request is a `multipart/form-data` upload, as the official SDKs send it: `file` (the
recording: WAV, MP3, FLAC, Ogg, MP4/M4A or WebM, recognised by its bytes, not its name),
`model`, and optionally `response_format` (`json`, `text`, `srt`, `verbose_json`, `vtt`),
`language` (ISO-639-1), `prompt` and `temperature`. The whole body is within the gateway's
request-size limit (413 over it). Anything that is not one of these fields, or a file that is
not audio, is a 400 naming the field.

The answer is in the format asked for: `json` and `verbose_json` are the provider's own body
(its `usage` included); `text` is the text and a newline; `srt` and `vtt` are subtitles
written from the timed segments.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import orjson
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from oneflow_ai.api.validation import invalid
from oneflow_ai.domain.audio import audio_format, wav_duration, worst_case_seconds
from oneflow_ai.domain.transcription import (
    TRANSCRIPTION_FORMATS,
    Segment,
    TranscriptionRequest,
    TranscriptionResponse,
)
from oneflow_ai.errors import BadRequestError

__all__ = ["TRANSCRIPTION_FIELDS", "read_transcription_request", "render_transcription"]

TRANSCRIPTION_FIELDS = frozenset(
    {"file", "model", "response_format", "language", "prompt", "temperature"}
)
_LANGUAGE = re.compile(r"^[a-z]{2,3}$")
_MEDIA_TYPES: dict[str, str] = {
    "text": "text/plain; charset=utf-8",
    "srt": "text/plain; charset=utf-8",
    "vtt": "text/vtt; charset=utf-8",
}


async def read_transcription_request(request: Request) -> TranscriptionRequest:
    """The upload as a canonical request (400 naming the field that is wrong)."""
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        raise BadRequestError(
            "Invalid request: send the audio as multipart/form-data with a 'file' field",
            param="file",
        )
    try:
        form = await request.form(max_files=1, max_fields=20)
    except HTTPException as exc:  # a malformed multipart body, or more than one file
        if exc.status_code == 413:  # over the request-size limit: the edge answers it
            raise
        raise BadRequestError(
            f"Invalid request: the multipart body cannot be read ({exc.detail})"
        ) from None
    try:
        return await _parse(form)
    finally:
        await form.close()


async def _parse(form: FormData) -> TranscriptionRequest:
    for key in form:
        if key not in TRANSCRIPTION_FIELDS:
            raise invalid(key, "unknown field; known: " + ", ".join(sorted(TRANSCRIPTION_FIELDS)))
    upload = form.get("file")
    if upload is None:
        raise invalid("file", "field required")
    if not isinstance(upload, UploadFile):
        raise invalid("file", "must be a file upload, not a text field")
    data = await upload.read()
    if not data:
        raise invalid("file", "the file is empty")
    kind = audio_format(data)
    if kind is None:
        raise invalid(
            "file",
            "not an audio file OneFlow recognises (flac, m4a, mp3, mp4, mpeg, mpga, ogg, wav, "
            "webm)",
        )
    duration: Decimal | None = None
    if kind == "wav":
        duration = wav_duration(data)
        if duration is None:
            raise invalid("file", "a WAV file whose header cannot be read")
    response_format = _text(form, "response_format") or "json"
    if response_format not in TRANSCRIPTION_FORMATS:
        raise invalid("response_format", "must be one of " + ", ".join(TRANSCRIPTION_FORMATS))
    language = _text(form, "language")
    if language is not None and not _LANGUAGE.match(language):
        raise invalid("language", "must be an ISO-639-1 code such as 'en'")
    model = _text(form, "model")
    if not model:
        raise invalid("model", "field required")
    return TranscriptionRequest(
        model=model,
        audio=data,
        filename=upload.filename or f"audio.{kind}",
        audio_format=kind,
        response_format=response_format,
        language=language,
        prompt=_text(form, "prompt"),
        temperature=_temperature(form),
        duration=duration,
        max_seconds=worst_case_seconds(data, duration),
    )


def _text(form: FormData, key: str) -> str | None:
    value = form.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise invalid(key, "must be a text field, not a file")
    return value


def _temperature(form: FormData) -> float | None:
    value = _text(form, "temperature")
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        raise invalid("temperature", "must be a number") from None
    if not 0 <= number <= 1:
        raise invalid("temperature", "must be between 0 and 1")
    return number


def render_transcription(
    response: TranscriptionResponse, request: TranscriptionRequest, headers: dict[str, str]
) -> Response:
    """The answer in the caller's `response_format`."""
    wanted = request.response_format
    if wanted in ("json", "verbose_json"):
        body: dict[str, Any] = dict(response.raw) if response.raw is not None else {}
        body.setdefault("text", response.text)
        if wanted == "json":
            for name in ("segments", "words", "task", "language", "duration"):
                body.pop(name, None)  # asked for verbose_json upstream only to time subtitles
        return Response(orjson.dumps(body), media_type="application/json", headers=headers)
    if wanted == "text":
        content = response.text + "\n"
    else:
        content = _subtitles(response.segments or _whole(response), vtt=wanted == "vtt")
    return Response(content, media_type=_MEDIA_TYPES[wanted], headers=headers)


def _whole(response: TranscriptionResponse) -> list[Segment]:
    end = float(response.duration) if response.duration is not None else 0.0
    return [Segment(0.0, end, response.text)]


def _subtitles(segments: list[Segment], *, vtt: bool) -> str:
    lines = ["WEBVTT", ""] if vtt else []
    for number, segment in enumerate(segments, start=1):
        if not vtt:
            lines.append(str(number))
        start, end = _stamp(segment.start, vtt), _stamp(segment.end, vtt)
        lines.extend([f"{start} --> {end}", segment.text.strip(), ""])
    return "\n".join(lines) + "\n"


def _stamp(seconds: float, vtt: bool) -> str:
    millis = max(0, round(seconds * 1000))
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    whole, millis = divmod(rest, 1000)
    separator = "." if vtt else ","
    return f"{hours:02d}:{minutes:02d}:{whole:02d}{separator}{millis:03d}"
