"""Reading what an upload is and how long it plays, from its bytes alone."""

from __future__ import annotations

import struct
from decimal import Decimal

import pytest
from tests.support.audio import mp3_like, wav

from oneflow_ai.domain.audio import audio_format, wav_duration, whole_seconds, worst_case_seconds
from oneflow_ai.domain.embeddings import Vector


def _wav_with(chunks: list[tuple[bytes, bytes]]) -> bytes:
    body = b"".join(
        name + struct.pack("<I", len(data)) + data + b"\0" * (len(data) & 1)
        for name, data in chunks
    )
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WAVE" + body


FMT = struct.pack("<HHIIHH", 1, 2, 44_100, 44_100 * 4, 4, 16)  # stereo 16-bit 44.1 kHz


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (wav(0.1), "wav"),
        (mp3_like(100), "mp3"),
        (b"\xff\xfb\x90\x00" + b"\0" * 20, "mp3"),
        (b"fLaC\0\0\0\x22", "flac"),
        (b"OggS\0\x02" + b"\0" * 20, "ogg"),
        (b"\0\0\0\x20ftypM4A " + b"\0" * 20, "mp4"),
        (b"\x1a\x45\xdf\xa3" + b"\0" * 20, "webm"),
        (b"%PDF-1.7", None),
        (b"\x89PNG\r\n\x1a\n", None),
        (b"hello, world", None),
        (b"", None),
    ],
)
def test_audio_format(data: bytes, kind: str | None) -> None:
    assert audio_format(data) == kind


def test_wav_duration_is_exact() -> None:
    assert wav_duration(wav(61.5)) == Decimal("61.5")
    one_second = b"\0" * 44_100 * 4
    # An odd-sized chunk before `data` is padded; a LIST chunk before `fmt ` is skipped.
    data = _wav_with([(b"LIST", b"abc"), (b"fmt ", FMT), (b"data", one_second)])
    assert wav_duration(data) == Decimal(1)
    # A streamed WAV declares no size: its data runs to the end of the file.
    streamed = _wav_with([(b"fmt ", FMT), (b"data", b"")])[:-4] + struct.pack("<I", 0xFFFFFFFF)
    assert wav_duration(streamed + one_second[: 44_100 * 2]) == Decimal("0.5")


@pytest.mark.parametrize(
    "data",
    [
        _wav_with([(b"data", b"\0" * 100)]),  # no fmt before data
        _wav_with([(b"fmt ", FMT[:8])]),  # a short fmt
        _wav_with([(b"fmt ", struct.pack("<HHIIHH", 1, 1, 8000, 0, 2, 16)), (b"data", b"\0")]),
        wav(1)[:20],
        mp3_like(100),
    ],
)
def test_wav_duration_refuses_what_it_cannot_read(data: bytes) -> None:
    assert wav_duration(data) is None


def test_seconds_billed_and_reserved() -> None:
    assert whole_seconds(Decimal("61.5")) == 62
    assert whole_seconds(Decimal(60)) == 60
    assert worst_case_seconds(b"x" * 10, Decimal("0.2")) == 1
    assert worst_case_seconds(b"x" * 4_001, None) == 3  # 2,000 bytes a second, rounded up


def test_vectors_round_trip_through_base64_and_floats() -> None:
    vector = Vector.of_floats([0.5, -0.25, 1.0])
    assert len(vector) == 3 and vector.floats() == [0.5, -0.25, 1.0]
    assert Vector.of_base64(vector.base64()) == vector
    assert vector.base64() == "AAAAPwAAgL4AAIA/"  # little-endian float32, as OpenAI writes it
    with pytest.raises(ValueError):
        Vector.of_base64("AAAAAAA=")  # 5 bytes: not whole float32 values
