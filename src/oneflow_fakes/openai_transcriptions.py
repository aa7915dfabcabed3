"""The fake OpenAI speech-to-text endpoint (`POST /openai/v1/audio/transcriptions`).

A multipart upload as OpenAI takes it (`file`, `model`, `response_format`, `language`,
`prompt`, `temperature`). The text is derived from the audio's bytes alone (words chosen by
SHA-256 of the file), about two words per second of audio, so the same recording always reads
the same. The duration is read from a WAV file's header; any other container is taken to be
128 kbit/s (16,000 bytes a second). `json` answers `{"text", "usage": {"type": "duration",
"seconds"}}` as whisper-1 does; `verbose_json` adds the task, language, duration and timed
segments (five words each); `text`, `srt` and `vtt` answer plain text. gpt-4o models take
`json` and `text` only, as OpenAI's do.
"""

from __future__ import annotations

import hashlib
import struct

from aiohttp import web

from oneflow_fakes.errors import ErrorAnswer, openai_error
from oneflow_fakes.exchange import Exchange, FakeState, random_id
from oneflow_fakes.models import OPENAI_TRANSCRIPTION_MODELS
from oneflow_fakes.openai_common import check_openai_key, missing_parameter, openai_headers

__all__ = ["OpenAITranscriptions", "fake_duration", "fake_transcript"]

_WORDS = (
    "the", "river", "carries", "light", "over", "stones", "while", "people", "talk", "about",
    "weather", "music", "trains", "gardens", "letters", "and", "small", "boats", "on", "sunday",
    "morning", "with", "coffee", "near", "old", "bridges", "in", "quiet", "towns", "today",
)  # fmt: skip
_BYTES_PER_SECOND = 16_000
_SIGNATURES = (b"RIFF", b"ID3", b"fLaC", b"OggS", b"\x1a\x45\xdf\xa3")
_FORMATS = "['flac', 'm4a', 'mp3', 'mp4', 'mpeg', 'mpga', 'oga', 'ogg', 'wav', 'webm']"


def fake_duration(data: bytes) -> float:
    """Seconds of audio: from a WAV header, else the size at 128 kbit/s."""
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        offset, byte_rate = 12, 0
        while offset + 8 <= len(data):
            chunk, size = struct.unpack_from("<4sI", data, offset)
            if chunk == b"fmt " and offset + 20 <= len(data):
                byte_rate = struct.unpack_from("<I", data, offset + 16)[0]
            elif chunk == b"data" and byte_rate:
                return float(min(size, len(data) - offset - 8) / byte_rate)
            offset += 8 + size + (size & 1)
    return len(data) / _BYTES_PER_SECOND


def fake_transcript(data: bytes, duration: float) -> str:
    """The words the fake hears in `data`."""
    count = max(3, min(400, round(duration * 2)))
    digest = b""
    block = 0
    while len(digest) < count:
        digest += hashlib.sha256(data + block.to_bytes(4, "little")).digest()
        block += 1
    words = [_WORDS[byte % len(_WORDS)] for byte in digest[:count]]
    return " ".join(words).capitalize() + "."


def _is_audio(data: bytes) -> bool:
    return (
        data.startswith(_SIGNATURES)
        or (len(data) >= 2 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0)
        or data[4:8] == b"ftyp"
    )


class OpenAITranscriptions:
    def __init__(self, state: FakeState) -> None:
        self.state = state

    async def create(self, request: web.Request) -> web.StreamResponse:
        fields: dict[str, str] = {}
        upload: bytes | None = None
        filename = ""
        if request.content_type == "multipart/form-data":
            form = await request.post()
            for name, value in form.items():
                if isinstance(value, web.FileField):
                    if name == "file":
                        upload, filename = value.file.read(), value.filename
                else:
                    fields[name] = str(value)
        model = fields.get("model", "")
        recorded = {**fields, "file": {"filename": filename, "bytes": len(upload or b"")}}
        exchange = Exchange(
            self.state,
            request,
            provider="openai",
            endpoint="transcriptions",
            model=model,
            stream=False,
            body=recorded,
            request_id=random_id("req_", 32),
        )
        interfered = await exchange.interfere(openai_error, model=model)
        if interfered is not None:
            return interfered
        refused = check_openai_key(request, self.state.config.api_key)
        if refused is None:
            refused = _validate(fields, model, upload)
        if refused is not None:
            return exchange.error(refused)
        assert upload is not None
        duration = fake_duration(upload)
        text = fake_transcript(upload, duration)
        wanted = fields.get("response_format") or "json"
        if wanted == "json":
            usage = {"type": "duration", "seconds": round(duration, 3)}
            return exchange.json({"text": text, "usage": usage}, openai_headers())
        segments = _segments(text, duration)
        if wanted == "verbose_json":
            body = {
                "task": "transcribe",
                "language": _LANGUAGES.get(fields.get("language", "en"), "english"),
                "duration": round(duration, 3),
                "text": text,
                "segments": segments,
                "usage": {"type": "duration", "seconds": round(duration, 3)},
            }
            return exchange.json(body, openai_headers())
        plain = text + "\n" if wanted == "text" else _subtitles(segments, vtt=wanted == "vtt")
        exchange.record.status, exchange.record.outcome = 200, "ok"
        return web.Response(
            body=plain.encode(),
            content_type="text/vtt" if wanted == "vtt" else "text/plain",
            charset="utf-8",
            headers=openai_headers(),
        )


_LANGUAGES = {"en": "english", "de": "german", "fr": "french", "es": "spanish", "ru": "russian"}


def _validate(fields: dict[str, str], model: str, upload: bytes | None) -> ErrorAnswer | None:
    if upload is None:
        return missing_parameter("file")
    if not model:
        return missing_parameter("model")
    formats = OPENAI_TRANSCRIPTION_MODELS.get(model)
    if formats is None:
        return openai_error(404, "model_not_found", model=model)
    if not _is_audio(upload):
        return openai_error(
            400,
            "invalid_value",
            f"Invalid file format. Supported formats: {_FORMATS}",
            param="file",
        )
    wanted = fields.get("response_format") or "json"
    if wanted not in formats:
        return openai_error(
            400,
            "unsupported_value",
            f"response_format '{wanted}' is not compatible with model '{model}'. "
            f"Use {' or '.join(formats)}.",
            param="response_format",
        )
    return None


def _segments(text: str, duration: float) -> list[dict[str, object]]:
    words = text.split()
    chunks = [words[i : i + 5] for i in range(0, len(words), 5)]
    step = duration / len(chunks) if chunks else duration
    return [
        {
            "id": index,
            "seek": 0,
            "start": round(index * step, 2),
            "end": round((index + 1) * step, 2),
            "text": " " + " ".join(chunk),
            "tokens": [],
            "temperature": 0.0,
            "avg_logprob": -0.25,
            "compression_ratio": 1.2,
            "no_speech_prob": 0.01,
        }
        for index, chunk in enumerate(chunks)
    ]


def _subtitles(segments: list[dict[str, object]], *, vtt: bool) -> str:
    lines = ["WEBVTT", ""] if vtt else []
    for segment in segments:
        index = int(str(segment["id"]))
        if not vtt:
            lines.append(str(index + 1))
        start = _stamp(float(str(segment["start"])), vtt)
        end = _stamp(float(str(segment["end"])), vtt)
        lines.extend([f"{start} --> {end}", str(segment["text"]).strip(), ""])
    return "\n".join(lines) + "\n"


def _stamp(seconds: float, vtt: bool) -> str:
    millis = round(seconds * 1000)
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    whole, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{whole:02d}{'.' if vtt else ','}{millis:03d}"
