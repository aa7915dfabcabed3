"""The media files the fakes send are valid files of the promised size and length."""

from __future__ import annotations

import struct

import pytest

from oneflow_fakes import media
from tests.fakes.formats import jpeg_size, mp3_frames, png_size


@pytest.mark.parametrize("size", [(1024, 1024), (1792, 1024), (256, 256), (1344, 768), (8, 8)])
def test_png_and_jpeg_have_the_requested_size(size: tuple[int, int]) -> None:
    assert png_size(media.png(*size, (10, 200, 30))) == size
    assert jpeg_size(media.jpeg(*size, (10, 200, 30))) == size


def test_images_are_small_and_coloured_by_prompt() -> None:
    assert len(media.png(1024, 1024, (1, 2, 3))) < 1024
    assert len(media.jpeg(1024, 1024, (1, 2, 3))) < 32 * 1024
    assert media.colour_for("otter") == media.colour_for("otter")
    assert media.colour_for("otter") != media.colour_for("lighthouse")


def test_mp3_lasts_as_long_as_the_text_read_aloud() -> None:
    ten_seconds = media.audio("x" * 150, "mp3_44100_128")
    frames = mp3_frames(ten_seconds)
    assert frames * 1152 / 44100 == pytest.approx(10, abs=0.05)
    assert mp3_frames(media.audio("x" * 300, "mp3_44100_128")) == pytest.approx(2 * frames, abs=1)


def test_other_formats() -> None:
    pcm = media.audio("x" * 15, "pcm_24000")
    assert len(pcm) == 2 * 24000  # one second of 16-bit mono
    wav = media.audio("x" * 15, "wav_16000")
    assert wav[:4] == b"RIFF" and wav[8:12] == b"WAVE"
    assert struct.unpack("<I", wav[24:28])[0] == 16000
    assert len(media.audio("x" * 15, "ulaw_8000")) == 8000
    ogg = media.audio("x" * 15, "opus_48000_64")
    assert ogg[:4] == b"OggS" and b"OpusHead" in ogg[:64]
    with pytest.raises(ValueError, match="unknown output_format"):
        media.audio("x", "aac_44100")


def test_ogg_checksum_is_the_ogg_crc() -> None:
    # CRC-32, polynomial 0x04C11DB7, no reflection, no final xor: the check value.
    assert media._ogg_crc(b"123456789") == 0x89A1897F
