"""Provider-neutral speech to text: an uploaded recording in, its text out."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

from oneflow_ai.domain.usage import Usage

__all__ = [
    "TRANSCRIPTION_FORMATS",
    "Segment",
    "TranscriptionFormat",
    "TranscriptionRequest",
    "TranscriptionResponse",
]

TranscriptionFormat = Literal["json", "text", "srt", "verbose_json", "vtt"]
TRANSCRIPTION_FORMATS: tuple[TranscriptionFormat, ...] = (
    "json",
    "text",
    "srt",
    "verbose_json",
    "vtt",
)


@dataclass(slots=True)
class TranscriptionRequest:
    """`audio` is the uploaded file (`filename` as the caller named it); `audio_format` is the
    container OneFlow recognised in its bytes (`wav`, `mp3`, ...); `duration` is the length
    OneFlow read from the file itself (WAV), or None when only the provider can tell;
    `max_seconds` is what the reservation assumes (the exact length when known)."""

    model: str
    audio: bytes
    filename: str
    audio_format: str
    response_format: TranscriptionFormat = "json"
    language: str | None = None
    prompt: str | None = None
    temperature: float | None = None
    duration: Decimal | None = None
    max_seconds: int = 0


@dataclass(frozen=True, slots=True)
class Segment:
    start: float
    end: float
    text: str


@dataclass(slots=True)
class TranscriptionResponse:
    """The text, with what the provider said about the audio (language, length, timed
    segments when asked for) and its own body (`raw`, relayed to a caller of the same API).
    `duration` is the audio's length as the provider reported it (None if it did not)."""

    text: str
    usage: Usage  # audio_seconds
    model: str = ""
    language: str | None = None
    duration: Decimal | None = None
    segments: list[Segment] = field(default_factory=list)
    raw: dict[str, object] | None = None
