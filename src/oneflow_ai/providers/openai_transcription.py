"""OpenAI's speech to text (`POST /audio/transcriptions`: whisper-1, gpt-4o-transcribe,
gpt-4o-mini-transcribe), a multipart upload.

The provider is asked for `verbose_json` when the caller wants timed output (`srt`, `vtt`,
`verbose_json`: the segments and the audio's duration come with it) and for `json` otherwise
(its `usage` says the duration for whisper-1: `{"type": "duration", "seconds": N}`). The edge
writes the caller's format from the canonical answer; `raw` keeps the provider's JSON body.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import TypedDict

import orjson

from oneflow_ai.domain.transcription import Segment, TranscriptionRequest, TranscriptionResponse
from oneflow_ai.domain.usage import Usage
from oneflow_ai.providers.engine import read_answer
from oneflow_ai.providers.upstream import ErrorMapper, UpstreamClient, UpstreamRequest

__all__ = ["TranscriptionMixin", "multipart_upload"]

_TIMED = ("srt", "vtt", "verbose_json")


class _Segment(TypedDict):
    start: float
    end: float
    text: str


class _TranscriptionAnswer(TypedDict, total=False):
    text: str
    language: str
    duration: float
    segments: list[_Segment]
    usage: dict[str, object]


def multipart_upload(
    fields: Mapping[str, str], *, file_field: str, filename: str, data: bytes
) -> tuple[bytes, str]:
    """A `multipart/form-data` body of text fields and one file, and its content type."""
    boundary = uuid.uuid4().hex
    safe_name = filename.replace('"', "").replace("\r", "").replace("\n", "") or "audio"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
        + value.encode()
        + b"\r\n"
        for name, value in fields.items()
    ]
    parts.append(
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{file_field}"; '
            f'filename="{safe_name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
        ).encode()
        + data
        + b"\r\n"
    )
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def _fields(request: TranscriptionRequest, model: str) -> dict[str, str]:
    fields = {
        "model": model,
        "response_format": "verbose_json" if request.response_format in _TIMED else "json",
    }
    if request.language is not None:
        fields["language"] = request.language
    if request.prompt is not None:
        fields["prompt"] = request.prompt
    if request.temperature is not None:
        fields["temperature"] = repr(request.temperature)
    return fields


def _duration(answer: _TranscriptionAnswer) -> Decimal | None:
    value: object = answer.get("duration")
    usage = answer.get("usage")
    if value is None and isinstance(usage, dict) and usage.get("type") == "duration":
        value = usage.get("seconds")
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        seconds = Decimal(str(value))
    except InvalidOperation:
        return None
    return seconds if seconds.is_finite() and seconds >= 0 else None


def _parse(body: bytes, model: str) -> TranscriptionResponse:
    answer: _TranscriptionAnswer = orjson.loads(body)
    text = answer["text"]
    if not isinstance(text, str):
        raise TypeError("text is not a string")
    segments = [
        Segment(float(s["start"]), float(s["end"]), str(s["text"]))
        for s in answer.get("segments") or ()
    ]
    language = answer.get("language")
    return TranscriptionResponse(
        text=text,
        usage=Usage(),  # the pipeline bills the audio's length (see `Pipeline.transcribe`)
        model=model,
        language=language if isinstance(language, str) else None,
        duration=_duration(answer),
        segments=segments,
        raw=dict(answer),
    )


class TranscriptionMixin:
    """`transcribe` (a `TranscriptionCapable`) for an adapter with OpenAI's upstream client."""

    name: str
    _client: UpstreamClient
    _map_error: ErrorMapper

    async def transcribe(self, request: TranscriptionRequest, model: str) -> TranscriptionResponse:
        body, content_type = multipart_upload(
            _fields(request, model),
            file_field="file",
            filename=request.filename,
            data=request.audio,
        )
        response = await self._client.send(
            UpstreamRequest(
                "POST",
                "/audio/transcriptions",
                self._map_error,
                body=body,
                headers={"Content-Type": content_type},
                model=model,
            )
        )
        return read_answer(self.name, model, response.body, lambda b: _parse(b, model))
