"""`POST /v1/audio/transcriptions` through the gateway to the fake OpenAI, with the SDK."""

from __future__ import annotations

import math
from decimal import Decimal

import httpx
import openai
import pytest

from oneflow_ai.domain.audio import FLOOR_BYTES_PER_SECOND, worst_case_seconds
from oneflow_fakes.openai_transcriptions import fake_duration, fake_transcript
from tests.integration.conftest import KEY, Gateway
from tests.support.audio import mp3_like, wav


def test_whisper_json_is_billed_by_the_second_of_the_wav(gateway: Gateway) -> None:
    audio = wav(61.5)
    raw = gateway.openai().audio.transcriptions.with_raw_response.create(
        model="whisper-1", file=("talk.wav", audio, "audio/wav"), language="en"
    )
    transcription = raw.parse()
    assert transcription.text == fake_transcript(audio, 61.5)
    assert raw.headers["x-oneflow-model"] == "whisper-1"
    # 62 whole seconds at $0.006 a minute = $0.0062 = 0.62 credits
    assert Decimal(raw.headers["x-oneflow-credits"]) == Decimal("0.62")
    (record,) = gateway.sink.wait_for(1)
    assert record.operation == "transcription" and record.usage.audio_seconds == 62
    assert not record.usage.estimated
    (call,) = gateway.fakes.calls("openai")
    assert call.path == "/openai/v1/audio/transcriptions"
    assert call.headers["content-type"].startswith("multipart/form-data")
    assert isinstance(call.body, dict)
    assert call.body["model"] == "whisper-1" and call.body["language"] == "en"
    assert call.body["file"] == {"filename": "talk.wav", "bytes": len(audio)}


def test_text_srt_vtt_and_verbose_json(gateway: Gateway) -> None:
    client = gateway.openai()
    audio = wav(12)
    words = fake_transcript(audio, 12)
    text = client.audio.transcriptions.create(
        model="whisper-1", file=("a.wav", audio), response_format="text"
    )
    assert text.strip() == words
    srt = client.audio.transcriptions.create(
        model="whisper-1", file=("a.wav", audio), response_format="srt"
    )
    blocks = srt.strip().split("\n\n")
    assert blocks[0].splitlines()[0] == "1"
    assert blocks[0].splitlines()[1].startswith("00:00:00,000 --> 00:00:0")
    assert " ".join(b.splitlines()[2] for b in blocks) == words
    vtt = client.audio.transcriptions.create(
        model="whisper-1", file=("a.wav", audio), response_format="vtt"
    )
    assert vtt.startswith("WEBVTT\n\n00:00:00.000 --> ")
    verbose = client.audio.transcriptions.create(
        model="whisper-1", file=("a.wav", audio), response_format="verbose_json"
    )
    assert verbose.text == words and verbose.duration == pytest.approx(12)
    assert verbose.segments is not None and verbose.segments[-1].end == pytest.approx(12)
    calls = gateway.fakes.calls("openai")
    asked = [c.body["response_format"] for c in calls if isinstance(c.body, dict)]
    assert asked == ["json", "verbose_json", "verbose_json", "verbose_json"]
    records = gateway.sink.wait_for(4)
    assert [r.usage.audio_seconds for r in records] == [12] * 4


def test_a_compressed_file_is_billed_by_the_providers_duration(gateway: Gateway) -> None:
    audio = mp3_like(100_000)  # the fake hears 6.25 s
    raw = gateway.openai().audio.transcriptions.with_raw_response.create(
        model="gpt-4o-mini-transcribe", file=("note.mp3", audio, "audio/mpeg")
    )
    assert raw.parse().text == fake_transcript(audio, fake_duration(audio))
    # 7 whole seconds at $0.003 a minute = $0.00035 = 0.035 credits
    assert Decimal(raw.headers["x-oneflow-credits"]) == Decimal("0.035")
    (record,) = gateway.sink.wait_for(1)
    assert record.usage.audio_seconds == math.ceil(fake_duration(audio)) == 7


def _form(
    gateway: Gateway, files: dict[str, tuple[str, bytes]] | None, **fields: str
) -> httpx.Response:
    return httpx.post(
        f"{gateway.url}/v1/audio/transcriptions",
        data=fields,
        files=files,
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=30,
    )


AUDIO = {"file": ("a.wav", wav(1))}


@pytest.mark.parametrize(
    ("files", "fields", "param"),
    [
        ({"file": ("notes.txt", b"these are not sounds")}, {"model": "whisper-1"}, "file"),
        ({"file": ("x.png", b"\x89PNG\r\n\x1a\n" + b"0" * 64)}, {"model": "whisper-1"}, "file"),
        ({"file": ("empty.wav", b"")}, {"model": "whisper-1"}, "file"),
        ({"file": ("cut.wav", wav(1)[:30])}, {"model": "whisper-1"}, "file"),
        (None, {"model": "whisper-1"}, "file"),
        (AUDIO, {}, "model"),
        (AUDIO, {"model": "whisper-1", "response_format": "docx"}, "response_format"),
        (AUDIO, {"model": "whisper-1", "language": "English"}, "language"),
        (AUDIO, {"model": "whisper-1", "temperature": "hot"}, "temperature"),
        (AUDIO, {"model": "whisper-1", "temperature": "1.5"}, "temperature"),
        (AUDIO, {"model": "whisper-1", "stream": "true"}, "stream"),
        (AUDIO, {"model": "gpt-4o"}, "model"),
        (AUDIO, {"model": "text-embedding-3-small"}, "model"),
    ],
)
def test_bad_uploads_are_a_400_naming_the_field(
    gateway: Gateway,
    files: dict[str, tuple[str, bytes]] | None,
    fields: dict[str, str],
    param: str,
) -> None:
    answer = _form(gateway, files, **fields)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error"
    assert gateway.fakes.calls("openai") == []


def test_a_json_body_is_refused_naming_file(gateway: Gateway) -> None:
    answer = gateway.post("/v1/audio/transcriptions", {"model": "whisper-1", "file": "x"})
    assert answer.status_code == 400 and answer.json()["error"]["param"] == "file"


def test_a_format_the_model_cannot_write_is_the_providers_400(gateway: Gateway) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        gateway.openai().audio.transcriptions.create(
            model="gpt-4o-transcribe", file=("a.wav", wav(2)), response_format="srt"
        )
    assert refused.value.body["param"] == "response_format"  # type: ignore[index]
    (record,) = gateway.sink.wait_for(1)
    assert record.outcome == "error" and record.cost.micro_credits == 0


def test_the_reservation_of_a_compressed_file_assumes_the_floor_bitrate() -> None:
    assert worst_case_seconds(mp3_like(100_000), None) == 100_000 // FLOOR_BYTES_PER_SECOND
    assert worst_case_seconds(wav(3.2), Decimal("3.2")) == 4
